"""Forward + backward time of every medloss loss against MONAI's DiceLoss on the same input, in one run.

    python benchmarks/losses.py [--shape 2 2 64 64 64] [--repeats 5] [--device cpu]

A loss's overhead inside a training step is what matters, so each line prints the median time of
``loss(input, target).backward()`` and its ratio to ``monai.losses.DiceLoss(softmax=True, to_onehot_y=True)``
measured in the same process (the Betti matching line runs on a 32^3 crop and says so: its CPU kernel has its own
benchmark, ``benchmarks/betti_matching.py``).
"""

import argparse
import statistics
import time

import torch
from monai.losses import DiceLoss

from medloss import losses
from medloss.data.synthetic import vessel_phantom


def timed(fn, repeats):
    fn()  # warm-up (numba compilation, allocator)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs="+", default=[2, 2, 64, 64, 64], help="B C H W D (C >= 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    b, c, *spatial = args.shape
    dev = torch.device(args.device)
    torch.manual_seed(0)
    label = torch.stack([torch.as_tensor(vessel_phantom(spatial, seed=i)) for i in range(b)])[:, None].long().to(dev)
    logits = torch.randn(b, c, *spatial, device=dev)
    onehot = torch.cat([1 - label, label], 1).float() if c == 2 else None
    soft_signed = onehot[:, 1:] * 2 - 1 if onehot is not None else None
    groups = torch.arange(b, device=dev) % 2

    def run(loss, *inputs):
        x = logits.clone().requires_grad_(True) if inputs[0] is None else inputs[0].clone().requires_grad_(True)

        def step():
            loss(x, *inputs[1:]).backward()

        return step

    fg = logits[:, 1:]
    cases = [
        ("monai DiceLoss (baseline)", run(DiceLoss(softmax=True, to_onehot_y=True), None, label)),
        ("JaccardMetricLoss", run(losses.JaccardMetricLoss(softmax=True, to_onehot_y=True), None, label)),
        ("DiceSemimetricLoss", run(losses.DiceSemimetricLoss(softmax=True, to_onehot_y=True), None, label)),
        ("SAUNALoss", run(losses.SAUNALoss(), fg, soft_signed)),
        ("FocalTverskyLoss", run(losses.FocalTverskyLoss(softmax=True, to_onehot_y=True), None, label)),
        ("MIPLoss (3 axes)", run(losses.MIPLoss(softmax=True, to_onehot_y=True, axes=(0, 1, 2)), None, label)),
        ("FairErrorBoundScalingLoss", run(losses.FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True),
                                          None, label, groups)),
    ]
    crop = tuple(slice(0, min(32, s)) for s in spatial)
    cases.append((f"BettiMatchingLoss ({'x'.join(str(min(32, s)) for s in spatial)} crop)",
                  run(losses.BettiMatchingLoss(softmax=True, to_onehot_y=True, include_background=False),
                      logits[(slice(None), slice(None)) + crop], label[(slice(None), slice(None)) + crop])))
    samples = torch.sigmoid(logits[:, None, 1:].repeat(1, 4, 1, 1, 1, 1) + torch.randn(b, 4, 1, *spatial, device=dev))
    raters = onehot[:, None, 1:].repeat(1, 3, 1, 1, 1, 1)
    cases += [("SinkhornDistanceLoss (N=4, R=3)", run(losses.SinkhornDistanceLoss(), samples, raters)),
              ("EnergyDistanceLoss (N=4, R=3)", run(losses.EnergyDistanceLoss(), samples, raters))]

    print(f"input {tuple(logits.shape)} on {dev}, median of {args.repeats}, torch threads {torch.get_num_threads()}")
    base = None
    for name, step in cases:
        sec = timed(step, args.repeats)
        base = base or sec
        print(f"{name:40s} {1000 * sec:9.1f} ms   {sec / base:6.2f}x DiceLoss")


if __name__ == "__main__":
    main()
