"""Time of one nnU-Net training iteration with Dice+CE alone against Dice+CE + Betti matching, in one run.

    python benchmarks/training_step.py [--device cpu] [--shapes 64^3 96^3 128^3 512^2] [--repeats 3]
                                       [--threads N] [--base-features 32] [--quick]

One iteration is what nnU-Net's ``train_step`` does: network forward, loss, backward, gradient clipping (norm 12)
and an SGD step (lr 1e-2, momentum 0.99, Nesterov, weight decay 3e-5; autocast and a gradient scaler on CUDA). The
network is nnU-Net's own ``PlainConvUNet`` (``dynamic_network_architectures``) configured as nnU-Net's default
plans configure it for the patch size: stages down to a 4-voxel edge (``get_pool_and_conv_props``), 32 features
doubling to 320 (3D) or 512 (2D), two 3x3(x3) convolutions per stage, instance norm, LeakyReLU, one input channel,
two output classes (background + foreground, softmax). Deep supervision is off: the medloss trainer
(``medloss/nnunet/betti.py``) applies the Betti term at full resolution only, and the Dice+CE of the coarser
outputs is a small fraction of the step. ``--base-features`` scales every stage's width (for a machine where the
nnU-Net network does not fit); the output says which network ran.

Rows per patch shape (batch 2 in 3D, 4 in 2D; the network input is ``medloss.data.synthetic.vessel_image`` of a
``vessel_phantom``, the target its binary phantom, so the prediction is the network's own output):

* ``Dice+CE``: nnU-Net's ``DC_and_CE_loss`` as the trainers build it (the baseline of the ratios);
* ``+ 0.5 Betti``: Dice+CE + 0.5 x ``medloss.losses.BettiMatchingLoss(include_background=False, to_onehot_y=True,
  softmax=True)`` on the whole patch, as ``nnUNetTrainerMedlossBettiMatching`` builds it (``num_workers`` default:
  the kernel chooses its threads);
* ``+ 0.5 Betti, num_workers=1``: the same on one matching thread (what the default gains from parallel threads);
* ``+ 0.5 Betti, subpatch S``: the matching on one random S^d sub-patch per instance (``subpatch_size``).

The sub-patch edges (``--subpatch`` overrides them): 32 for 64^3 (1/8 of the voxels), 64 for 96^3 and 128^3 (a
64^3 matching whatever the patch), 256 for 512^2 (1/4 of the pixels).

Each row prints the median wall time and CPU time (``time.process_time``, all threads of the process) of an
iteration (after an untimed Dice+CE iteration; the numba kernels are compiled before any timing), the wall time of
the row's loss alone (forward + backward on a fixed network output) and the ratio of the iteration to the Dice+CE
iteration measured in the same run (rows are interleaved, one iteration of each per repeat, so load from other
processes spreads over all rows). Where the network's step is long and the machine shared, the difference of two
iterations is noise; the last column adds the loss's own extra time to the Dice+CE iteration instead. The Betti
matching always runs on CPU threads (the kernel is numba), also with ``--device cuda``: the loss copies the
probabilities to the host and gathers the critical voxels' values back on the device.

"What the sub-patch gives up" measures, on one network output and over a few random windows per instance, what a
sub-patch's loss sees of the whole patch's: the fraction of the voxels, of the loss value (sum over the window's
bars against the whole patch's bars), of the whole patch's gradient mass that lies in the window (the most a window
can address), the cosine between the sub-patch gradient and the whole patch's (over the patch, and inside the
window only: bars cut by the window border differ there), and the target's Betti numbers in the window against the
whole patch (structures cut by the window border become separate components).

``--quick`` (64^3 and 512^2, 2 repeats) finishes in a minute or two on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

#: the issue's patch shapes: name -> (spatial shape, batch size, sub-patch edge of the sub-patch row)
SHAPES: Dict[str, Tuple[Tuple[int, ...], int, int]] = {
    "64^3": ((64, 64, 64), 2, 32),
    "96^3": ((96, 96, 96), 2, 64),
    "128^3": ((128, 128, 128), 2, 64),
    "512^2": ((512, 512), 4, 256),
}
QUICK_SHAPES = ("64^3", "512^2")
BETTI_WEIGHT = 0.5  # nnUNetTrainerMedlossBettiMatching's default (the original implementation's alpha)


def parse_shape(name: str) -> Tuple[Tuple[int, ...], int, int]:
    """``"64^3"``, ``"512^2"`` or ``"HxW[xD]"`` -> (spatial shape, batch size, sub-patch edge).

    The issue's shapes use their listed batch and sub-patch; any other shape uses batch 2 (3D) / 4 (2D) and half its
    smallest edge as the sub-patch.
    """
    if name in SHAPES:
        return SHAPES[name]
    try:
        if "^" in name:
            edge, ndim = (int(v) for v in name.split("^"))
            spatial = (edge,) * ndim
        else:
            spatial = tuple(int(v) for v in name.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 64^3, 512^2 or 32x32x16, got {name!r}") from None
    if len(spatial) not in (2, 3) or min(spatial) < 8:
        raise argparse.ArgumentTypeError(f"expected a 2D or 3D shape with every edge >= 8, got {name!r}")
    return spatial, 2 if len(spatial) == 3 else 4, max(min(spatial) // 2, 8)


def build_network(spatial: Sequence[int], base_features: int = 32) -> Tuple[torch.nn.Module, str]:
    """nnU-Net's default-plans ``PlainConvUNet`` for an isotropic patch ``spatial``; returns it and a description."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    ndim = len(spatial)
    _, strides, kernels, patch, _ = get_pool_and_conv_props([1.0] * ndim, list(spatial), 4, 999999)
    if tuple(int(p) for p in patch) != tuple(spatial):
        raise ValueError(f"nnU-Net's plans would change the patch {tuple(spatial)} to {tuple(patch)}; use that.")
    n_stages = len(strides)
    max_features = (512 if ndim == 2 else 320) * base_features // 32  # nnU-Net's UNet_max_features_2d/3d
    features = [min(max_features, base_features * 2**i) for i in range(n_stages)]
    conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
    norm = torch.nn.InstanceNorm2d if ndim == 2 else torch.nn.InstanceNorm3d
    net = PlainConvUNet(
        1, n_stages, features, conv, kernels, strides, [2] * n_stages, 2, [2] * (n_stages - 1), conv_bias=True,
        norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
        nonlin_kwargs={"inplace": True}, deep_supervision=False,
    )
    n_params = sum(p.numel() for p in net.parameters())
    note = "nnU-Net default plans" if base_features == 32 else f"base features {base_features}, NOT nnU-Net's 32"
    desc = (f"PlainConvUNet {ndim}D ({note}): {n_stages} stages, features {features[0]}..{features[-1]}, "
            f"{n_params / 1e6:.1f} M parameters, instance norm, LeakyReLU, deep supervision off")
    return net, desc


def dice_ce_loss() -> torch.nn.Module:
    """nnU-Net's Dice+CE, as ``nnUNetTrainer._build_loss`` builds it for label-based training."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    return DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)


def betti_loss(**options) -> torch.nn.Module:
    """The Betti term as ``nnUNetTrainerMedlossBettiMatching`` builds it (label-based activation flags)."""
    from medloss.losses import BettiMatchingLoss

    return BettiMatchingLoss(include_background=False, to_onehot_y=True, softmax=True, **options)


class WithBetti(torch.nn.Module):
    """``base + weight * term`` on the logits and the ``(B, 1, ...)`` label map."""

    def __init__(self, base: torch.nn.Module, term: torch.nn.Module, weight: float = BETTI_WEIGHT):
        super().__init__()
        self.base, self.term, self.weight = base, term, weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base(logits, target) + self.weight * self.term(logits, target)


def make_batch(spatial: Sequence[int], batch: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Network input (vessel image) ``(B, 1, ...)`` and binary target label map ``(B, 1, ...)``, float."""
    from medloss.data.synthetic import vessel_image, vessel_phantom

    labels = [vessel_phantom(spatial, seed=i) for i in range(batch)]
    images = [vessel_image(label, seed=i) for i, label in enumerate(labels)]
    image = torch.from_numpy(np.stack(images)[:, None]).float().to(device)
    target = torch.from_numpy(np.stack(labels)[:, None]).float().to(device)
    return image, target


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of the process) of one call of ``fn``."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


class Trainer:
    """nnU-Net's ``train_step`` on a fixed batch: forward, loss, backward, clip to norm 12, SGD step."""

    def __init__(self, net: torch.nn.Module, device: torch.device):
        self.net = net.to(device).train()
        self.device = device
        self.optimizer = torch.optim.SGD(net.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    def output(self, image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            return self.net(image)

    def step(self, image: torch.Tensor, target: torch.Tensor, loss: torch.nn.Module) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            value = loss(self.net(image), target)
        if self.scaler is not None:
            self.scaler.scale(value).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            value.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12)
            self.optimizer.step()


def loss_only(loss: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """Forward + backward of ``loss`` on a fixed network output (the loss's own share of an iteration)."""

    def run():
        leaf = logits.detach().clone().requires_grad_(True)
        loss(leaf, target).backward()

    return run


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def subpatch_coverage(logits: torch.Tensor, target: torch.Tensor, size: int, draws: int,
                      seed: int = 0) -> Dict[str, Any]:
    """What ``subpatch_size=size`` sees of the whole patch's Betti matching loss, averaged over instances and draws.

    A window is drawn uniformly like ``BettiMatchingLoss`` draws it; the sub-patch loss is the loss of the cropped
    logits and target (what ``subpatch_size`` computes), its gradient embedded in the whole patch.

    Args:
        logits: network output ``(B, 2, *spatial)``.
        target: binary label map ``(B, 1, *spatial)``.
        size: window edge (axes shorter than it are taken whole).
        draws: random windows per instance.
        seed: seed of the window positions.

    Returns:
        ``voxels``, ``loss``, ``grad_mass``, ``cos_patch``, ``cos_window`` (fractions and cosines, see the module
        docstring), ``window`` (its shape as text), ``betti_window`` and ``betti_full`` (mean target Betti numbers).
    """
    from medloss.topology import betti_numbers

    logits = logits.detach().float().cpu()
    target = target.cpu()
    spatial = tuple(logits.shape[2:])
    win = tuple(min(size, n) for n in spatial)
    loss = betti_loss(reduction="sum")
    full_values = []
    full_grads = []
    for b in range(logits.shape[0]):  # one instance at a time: per-instance values and gradients
        leaf = logits[b:b + 1].clone().requires_grad_(True)
        value = loss(leaf, target[b:b + 1])
        value.backward()
        full_values.append(value.item())
        full_grads.append(leaf.grad[0])
    rng = np.random.default_rng(seed)
    rows: Dict[str, List[float]] = {k: [] for k in ("loss", "grad_mass", "cos_patch", "cos_window")}
    betti_window, betti_full = [], []
    for b in range(logits.shape[0]):
        g_full = full_grads[b]
        betti_full.append(betti_numbers(target[b, 0].numpy()))
        for _ in range(draws):
            start = [int(rng.integers(0, n - s + 1)) for n, s in zip(spatial, win)]
            window = (slice(None),) + tuple(slice(a, a + s) for a, s in zip(start, win))
            leaf = logits[b][window].clone().requires_grad_(True)
            value = loss(leaf[None], target[b][window][None])
            value.backward()
            value = value.item()
            g_sub = torch.zeros_like(g_full)
            g_sub[window] = leaf.grad
            rows["loss"].append(value / full_values[b] if full_values[b] > 0 else float("nan"))
            mass = float(g_full.abs().sum())
            rows["grad_mass"].append(float(g_full[window].abs().sum()) / mass if mass > 0 else float("nan"))
            rows["cos_patch"].append(cosine(g_sub, g_full))
            rows["cos_window"].append(cosine(g_sub[window], g_full[window]))
            betti_window.append(betti_numbers(target[b, 0][window[1:]].numpy()))
    out = {k: float(np.nanmean(v)) for k, v in rows.items()}
    out["voxels"] = float(np.prod(win) / np.prod(spatial))
    out["window"] = "x".join(str(s) for s in win)
    out["betti_window"] = np.mean(betti_window, axis=0)
    out["betti_full"] = np.mean(betti_full, axis=0)
    return out


def run_shape(name: str, args, device: torch.device) -> Tuple[List[str], str, List[str]]:
    """Time the rows of one shape; returns (table rows, network description, sub-patch table row)."""
    spatial, batch, sub = parse_shape(name)
    if args.subpatch is not None:
        sub = args.subpatch
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net, desc = build_network(spatial, args.base_features)
    trainer = Trainer(net, device)
    image, target = make_batch(spatial, batch, device)
    base = dice_ce_loss()
    rows = [
        ("Dice+CE", base),
        (f"+ {BETTI_WEIGHT} Betti", WithBetti(base, betti_loss())),
        (f"+ {BETTI_WEIGHT} Betti, num_workers=1", WithBetti(base, betti_loss(num_workers=1))),
        (f"+ {BETTI_WEIGHT} Betti, subpatch {sub}", WithBetti(base, betti_loss(subpatch_size=sub))),
    ]
    for _ in range(args.warmup):  # first-call costs (allocator, oneDNN primitives); numba's are in warm_up_kernel
        trainer.step(image, target, base)
    wall: Dict[str, List[float]] = {r: [] for r, _ in rows}
    cpu: Dict[str, List[float]] = {r: [] for r, _ in rows}
    for _ in range(args.repeats):
        for label, loss in rows:
            w, c = timed(lambda: trainer.step(image, target, loss), device)
            wall[label].append(w)
            cpu[label].append(c)
    with torch.no_grad():
        logits = trainer.output(image).float()
    loss_wall = {}
    for label, loss in rows:
        fn = loss_only(loss, logits, target)
        loss_wall[label] = statistics.median(timed(fn, device)[0] for _ in range(args.repeats))
    base_wall = statistics.median(wall["Dice+CE"])
    shape = f"{'x'.join(map(str, spatial))} (B={batch})"
    table = []
    for label, _ in rows:
        med = statistics.median(wall[label])
        added = (base_wall + loss_wall[label] - loss_wall["Dice+CE"]) / base_wall
        table.append(f"| {shape} | {label} | {med:.3f} | {statistics.median(cpu[label]):.3f} | "
                     f"{loss_wall[label]:.3f} | {med / base_wall:.2f}x | {added:.2f}x |")
    cov = subpatch_coverage(logits, target, sub, args.draws)
    betti = "/".join(f"{v:.1f}" for v in cov["betti_window"]) + " vs " + "/".join(f"{v:.1f}" for v in cov["betti_full"])
    cover = (f"| {shape} | {cov['window']} | {cov['voxels']:.3f} | {cov['loss']:.3f} | {cov['grad_mass']:.3f} | "
             f"{cov['cos_patch']:.3f} | {cov['cos_window']:.3f} | {betti} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    mem = f", CUDA peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else ""
    print("\n".join(table + [cover]) + f"\n  {shape}: done, process peak RSS so far {peak:.1f} GiB{mem}",
          file=sys.stderr, flush=True)  # progress, and the rows survive a later shape running out of memory
    return table, desc, [cover]


def warm_up_kernel() -> None:
    """Compile the numba kernels (2D and 3D) before any timing."""
    loss = betti_loss()
    for spatial in ((16, 16), (8, 8, 8)):
        logits = torch.randn(1, 2, *spatial, requires_grad=True)
        target = (torch.rand(1, 1, *spatial) > 0.5).float()
        loss(logits, target).backward()


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="torch device of the network and Dice+CE (cpu, cuda, cuda:1)")
    ap.add_argument("--shapes", nargs="+", type=str, default=None,
                    help=f"patch shapes: {', '.join(SHAPES)} or HxW[xD] (default: all four; --quick: 64^3 512^2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed iterations per row (default 3; --quick: 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed Dice+CE iterations per shape first (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--base-features", type=int, default=32,
                    help="features of the first stage (nnU-Net: 32); every stage scales with it")
    ap.add_argument("--subpatch", type=int, default=None,
                    help="sub-patch edge of the sub-patch row (default: 32 for 64^3, 64 for 96^3/128^3, 256 for 512^2)")
    ap.add_argument("--draws", type=int, default=None,
                    help="random windows per instance for 'what the sub-patch gives up' (default 4; --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="64^3 and 512^2, 2 repeats, 2 windows per instance")
    args = ap.parse_args(argv)
    for shape in args.shapes or ():
        try:
            parse_shape(shape)
        except argparse.ArgumentTypeError as err:
            ap.error(f"--shapes: {err}")
    args.shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.draws = args.draws or (2 if args.quick else 4)
    if min(args.repeats, args.draws, args.base_features) < 1 or args.warmup < 0:
        ap.error("--repeats, --draws and --base-features must be >= 1, --warmup >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    warm_up_kernel()

    tables, covers, nets = [], [], []
    for name in args.shapes:
        table, desc, cover = run_shape(name, args, device)
        tables += table
        covers += cover
        nets.append(desc)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"device {device}{gpu}; torch {torch.__version__}, {torch.get_num_threads()} torch threads, {cores} cores "
          f"available; median of {args.repeats} iterations per row after {args.warmup} untimed Dice+CE one(s); "
          "the Betti matching runs on CPU threads whatever the device")
    for desc in dict.fromkeys(nets):
        print(f"network: {desc}")
    print("loss: nnU-Net DC_and_CE_loss (batch Dice, no background) [+ 0.5 x BettiMatchingLoss(include_background="
          "False, to_onehot_y=True, softmax=True)]; SGD step, gradient clipping as nnU-Net's train_step")
    print()
    print("| patch (batch) | loss | s/iter (wall) | CPU s/iter | loss fwd+bwd s (wall) | iter / Dice+CE iter | "
          "(Dice+CE iter + loss - Dice+CE loss) / Dice+CE iter |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(tables))
    print()
    print(f"What the sub-patch gives up (Betti matching loss of one network output, {args.draws} random window(s) per "
          "instance, mean): fraction of the voxels, of the whole patch's loss and of its gradient mass in the window; "
          "cosine of the sub-patch gradient with the whole patch's; target Betti numbers in the window vs the patch.")
    print()
    print("| patch (batch) | sub-patch | voxels | loss (window / patch) | gradient mass in window | cosine (patch) | "
          "cosine (in window) | target β window vs patch |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(covers))


if __name__ == "__main__":
    main()
