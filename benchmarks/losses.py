"""Forward + backward time of every medloss loss against MONAI's DiceLoss on the same input, in one run.

    python benchmarks/losses.py [--shape 2 2 64 64 64] [--repeats 5] [--device cpu|cuda]

A loss's overhead inside a training step is what matters, so each line prints the median time of
``loss(input, target).backward()`` and its ratio to ``monai.losses.DiceLoss(softmax=True, to_onehot_y=True)``
measured in the same process, on the same device. Inputs and targets are made on ``--device``; on CUDA the clock
reads after ``torch.cuda.synchronize()``, so a line is the time of the work, not of launching it.

Lines that say so measure something else than the loss on the whole input: the Betti matching line runs on a 32^3
(32^2) crop, because its persistence kernel runs on the CPU whatever the device (its own benchmark is
``benchmarks/betti_matching.py``); the Skeleton Recall line includes the skeletonization of the target on the CPU,
which a training pipeline does in the data loader (``medloss.transforms.SkeletonizeLabeld``; the line "given
skeleton" is the loss alone). The set distances of PULASki (``SinkhornDistanceLoss``, ``EnergyDistanceLoss``) run on
N = 4 samples and R = 3 rater masks per image; ``PULASkiLoss`` itself adds a network's forward pass to them, and
``IMPACTLoss`` a feature extractor's, so they are not here. ``WeightedSumLoss`` and ``BatchInputsLoss`` only wrap
other losses.
"""

import argparse
import statistics
import time

import torch
from monai.losses import DiceLoss

from medloss import losses
from medloss.data.synthetic import vessel_phantom
from medloss.transforms import skeletonize_label


def timed(fn, repeats, device):
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call (numba compilation, allocator)."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs="+", default=[2, 2, 64, 64, 64],
                    help="B C H W [D]: 2 or 3 spatial sizes, each >= 8; C = 2 (background and vessels)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = ap.parse_args(argv)
    b, c, *spatial = args.shape
    if c != 2 or len(spatial) not in (2, 3):
        ap.error(f"--shape must be B 2 H W [D], got {args.shape}")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    torch.manual_seed(0)
    phantoms = [vessel_phantom(spatial, seed=i) for i in range(b)]
    label = torch.stack([torch.as_tensor(p) for p in phantoms])[:, None].long().to(dev)
    skeleton = torch.stack([torch.as_tensor(skeletonize_label(p[None])) for p in phantoms]).long().to(dev)
    logits = torch.randn(b, c, *spatial, device=dev)
    onehot = torch.cat([1 - label, label], 1).float()
    fg, soft_signed = logits[:, 1:], onehot[:, 1:] * 2 - 1  # SAUNA: signed soft labels of the foreground
    groups = torch.arange(b, device=dev) % 2

    def run(loss, *inputs, **kwargs):
        x = (logits if inputs[0] is None else inputs[0]).clone().requires_grad_(True)

        def step():
            loss(x, *inputs[1:], **kwargs).backward()

        return step

    def dice_type(cls, **kwargs):
        return run(cls(softmax=True, to_onehot_y=True, **kwargs), None, label)

    axes = tuple(range(len(spatial)))
    cases = [
        ("monai DiceLoss (baseline)", dice_type(DiceLoss)),
        ("JaccardMetricLoss", dice_type(losses.JaccardMetricLoss)),
        ("DiceSemimetricLoss", dice_type(losses.DiceSemimetricLoss)),
        ("TverskyMetricLoss", dice_type(losses.TverskyMetricLoss, alpha=0.3, beta=0.7)),
        ("SignedJaccardLoss", run(losses.SignedJaccardLoss(), fg, soft_signed)),
        ("FocalL1Loss", run(losses.FocalL1Loss(), fg, soft_signed)),
        ("SAUNALoss", run(losses.SAUNALoss(), fg, soft_signed)),
        ("FocalTverskyLoss", dice_type(losses.FocalTverskyLoss)),
        (f"MIPLoss ({len(axes)} axes)", dice_type(losses.MIPLoss, axes=axes)),
        ("FairErrorBoundScalingLoss", run(losses.FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True),
                                          None, label, groups)),
        ("ClDiceLoss", dice_type(losses.ClDiceLoss)),
        ("DiceClDiceLoss", dice_type(losses.DiceClDiceLoss)),
        ("SkeletonRecallLoss (skeleton on the CPU)", dice_type(losses.SkeletonRecallLoss)),
        ("SkeletonRecallLoss (given skeleton)", run(losses.SkeletonRecallLoss(softmax=True, to_onehot_y=True),
                                                    None, label, skeleton=skeleton)),
    ]
    crop = (slice(None), slice(None)) + tuple(slice(0, min(32, s)) for s in spatial)
    cases.append((f"BettiMatchingLoss ({'x'.join(str(min(32, s)) for s in spatial)} crop)",
                  run(losses.BettiMatchingLoss(softmax=True, to_onehot_y=True, include_background=False),
                      logits[crop], label[crop])))
    samples = torch.sigmoid(logits[:, None, 1:].repeat(1, 4, *([1] * (len(spatial) + 1)))
                            + torch.randn(b, 4, 1, *spatial, device=dev))
    raters = onehot[:, None, 1:].repeat(1, 3, *([1] * (len(spatial) + 1)))
    cases += [("SinkhornDistanceLoss (N=4, R=3)", run(losses.SinkhornDistanceLoss(), samples, raters)),
              ("EnergyDistanceLoss (N=4, R=3)", run(losses.EnergyDistanceLoss(), samples, raters))]

    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"torch threads {torch.get_num_threads()}"
    print(f"input {tuple(logits.shape)} on {dev} ({where}), median of {args.repeats}", flush=True)
    base = None
    for name, step in cases:
        sec = timed(step, args.repeats, dev)
        base = base or sec
        print(f"{name:42s} {1000 * sec:9.1f} ms   {sec / base:6.2f}x DiceLoss", flush=True)


if __name__ == "__main__":
    main()
