"""``medloss example``: every loss and transform once, on a generated vessel phantom, with a printed table.

This is the newcomer's first run: no download, a few seconds on a laptop CPU. For each method it prints the
loss for a good and for a poor prediction (the good one must score lower), the time of forward+backward and
whether the gradient is finite. The options are checked before anything runs; a mistake is a :class:`ValueError`
naming the option, which ``medloss`` prints as one line. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, List, Tuple

#: Smallest ``--size``: the edge below which :func:`medloss.data.synthetic.vessel_phantom` refuses a shape.
MIN_SIZE = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=32,
                        help=f"edge length of the 3D phantom patch, >= {MIN_SIZE} (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps (default cpu)")


def check_args(args: argparse.Namespace) -> None:
    """Check ``--size``, ``--seed`` and ``--device`` before anything runs.

    Raises:
        ValueError: the option, its value and what is expected.
    """
    from medloss.apps.demo import check_device

    if args.size < MIN_SIZE:
        raise ValueError(f"--size must be an integer >= {MIN_SIZE} (the smallest vessel phantom), got {args.size}.")
    if not 0 <= args.seed < 2**63:  # torch.manual_seed's range
        raise ValueError(f"--seed must be an integer in [0, 2**63), got {args.seed}.")
    check_device(args.device)


def _cases(size: int, seed: int, device: str) -> List[Tuple[str, Callable, tuple, tuple]]:
    """(name, loss, inputs of a good prediction, inputs of a poor prediction)."""
    import numpy as np
    import torch

    from medloss import losses
    from medloss.data.synthetic import rater_masks, vessel_image, vessel_phantom
    from medloss.transforms import LabelMIPd, SAUNATransform

    gen = torch.Generator().manual_seed(seed)
    label_np = vessel_phantom((size,) * 3, seed=seed)
    label = torch.as_tensor(label_np, dtype=torch.float32)[None, None]  # (1, 1, H, W, D)

    def logits(quality: float) -> torch.Tensor:
        """Logits that agree with the label more as ``quality`` grows; thin parts are the first to break."""
        noise = torch.randn(label.shape, generator=gen)
        return (quality * (2 * label - 1) + 1.5 * noise).to(device)

    good, poor = logits(4.0), logits(0.7)
    two_ch = lambda z: torch.cat([-z, z], 1)  # noqa: E731  softmax over [bg, fg] == sigmoid(z)
    target1 = label.to(device)
    target_map = label.long().to(device)

    signed_np = SAUNATransform()(label_np[None])  # (1, H, W, D) in [-1, 1]
    assert np.array_equal(signed_np[0] > 0, label_np > 0)
    print(f"SAUNA soft label: range [{signed_np.min():.3f}, {signed_np.max():.3f}], foreground mean "
          f"{signed_np[0][label_np > 0].mean():.3f}, its sign recovers the mask exactly")
    signed = torch.as_tensor(signed_np)[None].to(device)  # (1, 1, H, W, D)
    mip = LabelMIPd(keys="label")({"label": label_np[None]})["label_mip"]
    print(f"label MIP (LabelMIPd): {tuple(mip.shape)}, whole-volume projection broadcast back along the axis")

    raters = torch.as_tensor(rater_masks(label_np, 3, seed), dtype=torch.float32)[None, :, None].to(device)
    samples = lambda z: torch.sigmoid(torch.stack([z + 0.3 * torch.randn(z.shape, generator=gen).to(device)  # noqa: E731
                                                   for _ in range(4)], 1))
    groups = torch.tensor([0, 1], device=device)

    # IMPACT needs a frozen feature extractor; a real one is a TorchScript file of a pretrained network, here two
    # random 3D convolutions stand in (the loss only requires a module returning a list of feature maps)
    torch.manual_seed(seed)
    conv1, conv2 = torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Conv3d(4, 8, 3, padding=1, stride=2)

    class Extractor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = conv1, conv2

        def forward(self, x):
            f1 = torch.relu(self.conv1(x))
            return [f1, torch.relu(self.conv2(f1))]

    image = torch.as_tensor(vessel_image(label_np, seed=seed))[None, None].to(device)
    degraded = lambda sigma: image + sigma * torch.randn(image.shape, generator=gen).to(device)  # noqa: E731
    impact = losses.IMPACTLoss(Extractor(), weights=(1.0, 1.0), spatial_dims=3).to(device)

    return [
        ("JaccardMetricLoss (soft labels)", losses.JaccardMetricLoss(softmax=True, to_onehot_y=True),
         (two_ch(good), target_map), (two_ch(poor), target_map)),
        ("DiceSemimetricLoss (soft labels)", losses.DiceSemimetricLoss(softmax=True, to_onehot_y=True),
         (two_ch(good), target_map), (two_ch(poor), target_map)),
        ("SAUNALoss (signed soft labels)", losses.SAUNALoss(), (good, signed), (poor, signed)),
        ("MIPLoss (SPOCKMIP)", losses.MIPLoss(sigmoid=True), (good, target1), (poor, target1)),
        ("BettiMatchingLoss", losses.BettiMatchingLoss(sigmoid=True), (good, target1), (poor, target1)),
        ("FairErrorBoundScalingLoss", losses.FairErrorBoundScalingLoss(sigmoid=True),
         (good.repeat(2, 1, 1, 1, 1), target1.repeat(2, 1, 1, 1, 1), groups),
         (poor.repeat(2, 1, 1, 1, 1), target1.repeat(2, 1, 1, 1, 1), groups)),
        ("SinkhornDistanceLoss (PULASki)", losses.SinkhornDistanceLoss(), (samples(good), raters),
         (samples(poor), raters)),
        ("EnergyDistanceLoss (PULASki)", losses.EnergyDistanceLoss(), (samples(good), raters),
         (samples(poor), raters)),
        ("IMPACTLoss (image synthesis)", impact, (degraded(0.05), image), (degraded(0.5), image)),
    ]


def main(args: argparse.Namespace) -> int:
    """Run every loss once and print the table; 1 if a loss misranks or gives a non-finite gradient."""
    check_args(args)  # before the heavy imports: a mistake is reported at once
    import torch

    from medloss import __version__

    torch.manual_seed(args.seed)
    print(f"medloss {__version__} example: {args.size}^3 vessel phantom, device {args.device}\n")
    rows = []
    for name, loss, good, poor in _cases(args.size, args.seed, args.device):
        values = []
        for inputs in (good, poor):
            x = inputs[0].detach().requires_grad_(True)
            t0 = time.perf_counter()
            value = loss(x, *inputs[1:])
            value.backward()
            dt = time.perf_counter() - t0
            values.append((float(value.detach()), dt, bool(torch.isfinite(x.grad).all())))
        ok = values[0][0] < values[1][0] and values[0][2] and values[1][2]
        # the faster of the two calls: the first one also pays one-off costs (lazy imports, kernel compilation)
        rows.append((name, values[0][0], values[1][0], 1000 * min(v[1] for v in values), "yes" if ok else "NO"))
    width = max(len(r[0]) for r in rows)
    print(f"{'loss':<{width}}  {'good pred':>10}  {'poor pred':>10}  {'ms (fwd+bwd)':>12}  good<poor & finite grad")
    for name, g, p, ms, ok in rows:
        print(f"{name:<{width}}  {g:10.4f}  {p:10.4f}  {ms:12.1f}  {ok}")
    failed = [r[0] for r in rows if r[4] != "yes"]
    if failed:
        print("\nunexpected results for: " + ", ".join(failed))
        return 1
    print("\nevery loss ranks the good prediction better and back-propagates finite gradients.")
    return 0
