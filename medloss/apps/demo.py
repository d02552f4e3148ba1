"""``medloss demo``: train a small MONAI U-Net with and without medloss losses on vessel data and compare them.

The default run generates synthetic 3D vessel phantoms (:mod:`medloss.data.synthetic`), trains the same U-Net from the
same seed on the same patch sequence with

* ``baseline``: MONAI ``DiceCELoss`` (softmax, two output channels);
* ``mip``: Dice+CE + ``mip_weight`` x :class:`medloss.losses.MIPLoss` (MIP term only, all three axes);
* ``sauna``: one tanh output channel trained with :class:`medloss.losses.SAUNALoss` on the signed soft labels of
  :class:`medloss.transforms.SAUNATransform`, computed on the whole volume before cropping; a voxel is vessel where
  ``tanh(z) >= 0``;
* ``betti``: Dice+CE + ``betti_weight`` x :class:`medloss.losses.BettiMatchingLoss`, fine-tuned from the baseline's
  weights (and optimiser state and patch stream) for the last ``betti_fraction`` of the iterations, as the Betti
  matching papers do; the total number of iterations equals the other models'.

then scores the test volumes (Dice, clDice, Betti number errors, Betti matching error) and writes ``report.md``,
``metrics.json``, ``mip_<case>.png`` and ``metrics_bar.png`` to ``--output``. Heavy imports (torch, MONAI,
matplotlib) happen inside the functions so that ``medloss --help`` stays fast.

Every option, the device, the output folder and the ``--data`` volumes are checked before training; a mistake is a
:class:`ValueError` naming the option or file, which ``medloss`` prints as one line. The report is written into a
staging folder next to ``--output`` and moved into it only when everything succeeded
(:func:`medloss.data.outputs.staged_folder`), so a failed or interrupted run leaves ``--output`` as it was.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from medloss.data.outputs import check_output_folder, staged_folder

LOSSES = ("baseline", "mip", "sauna", "betti")
MODEL_NAMES = {
    "baseline": "Dice+CE (baseline)",
    "mip": "Dice+CE + MIP",
    "sauna": "SAUNA",
    "betti": "Dice+CE + Betti matching",
}
# (key in the metrics dict, column title, higher is better)
COLUMNS = (
    ("Dice", "Dice ↑", True),
    ("clDice", "clDice ↑", True),
    ("BNE0", "Betti error β0 ↓", False),
    ("BNE1", "Betti error β1 ↓", False),
    ("BNE2", "Betti error β2 ↓", False),
    ("BME", "Betti matching error ↓", False),
)
_EVAL_METRICS = ("Dice", "clDice", "Betti", "BettiMatching")
#: Most phantoms one run generates (medloss.data.write_synthetic_dataset's limit on ``n_cases``).
MAX_PHANTOMS = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="medloss_demo", help="report folder (default ./medloss_demo)")
    parser.add_argument("--losses", default=",".join(LOSSES),
                        help=f"comma-separated models to train, from {','.join(LOSSES)} (default: all)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="your own data instead of phantoms: nnU-Net layout, imagesTr/<case>_0000.nii.gz and "
                             "labelsTr/<case>.nii.gz (label > 0 is vessel); the last --test-cases cases are tested")
    parser.add_argument("--size", type=int, default=48, help="edge of the synthetic volumes (default 48)")
    parser.add_argument("--cases", type=int, default=6, help="synthetic training volumes (default 6)")
    parser.add_argument("--test-cases", type=int, default=4, help="test volumes (default 4)")
    parser.add_argument("--iterations", type=int, default=1200,
                        help="training iterations per model (default 1200: the whole demo takes 2-3 minutes on 2 "
                             "free CPU cores)")
    parser.add_argument("--patch", type=int, default=32, help="edge of the random training patches (default 32)")
    parser.add_argument("--batch-size", type=int, default=2, help="patches per iteration (default 2)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    parser.add_argument("--mip-weight", type=float, default=0.5, help="weight of the MIP term (default 0.5)")
    parser.add_argument("--betti-weight", type=float, default=0.01,
                        help="weight of the Betti matching term (default 0.01)")
    parser.add_argument("--betti-fraction", type=float, default=0.3,
                        help="fraction of the iterations in which the Betti model is fine-tuned from the baseline "
                             "(default 0.3; 1 trains it from scratch)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of data, weights and patches (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads, >= 1 (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------
def _normalise(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    return (image - image.mean()) / (image.std() + 1e-8)


def write_synthetic_cases(root: Path, n: int, size: int, seed: int) -> Path:
    """Write ``n`` phantoms with their images as a dataset under ``root`` (``phantom_000``, ...); returns ``root``.

    Case ``i`` uses seed ``seed * 1000 + i`` (independent of ``n``): three trees of four bifurcation levels with
    thinner roots than :func:`~medloss.data.synthetic.vessel_phantom`'s defaults, so that a small volume holds many
    1-2 voxel vessels (faint in the noisy image: where the losses differ) and a few loops where trees touch.
    """
    from medloss.data import write_synthetic_dataset

    phantom = {"n_trees": 3, "max_depth": 4, "root_radius": (1.5, 2.5)}
    return write_synthetic_dataset(root, n_cases=n, size=size, seed=seed, phantom=phantom, case_prefix="phantom_")


def load_folder(path: str) -> List[dict]:
    """Cases of a dataset folder (``imagesTr/``, ``labelsTr/``; :mod:`medloss.data.layout`), sorted by name.

    Args:
        path: the folder (``--data``).

    Returns:
        One dict per case: ``name``, ``image`` (float32 ``(H, W, D)``), ``label`` (uint8 ``(H, W, D)``, 1 where the
        label is > 0) and ``spacing``.

    Raises:
        ValueError: what was expected and not found, or a volume that cannot be read (named).
    """
    from medloss.data import list_nnunet_cases

    root = Path(path)
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise ValueError(f"--data {path!r} {problem}; expected a folder with imagesTr/ and labelsTr/.")
    images, labels = root / "imagesTr", root / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise ValueError(f"--data {path!r} must contain imagesTr/ and labelsTr/ (nnU-Net layout), found "
                         f"{sorted(p.name for p in root.iterdir())}.")
    # uncompressed NIfTI where no compressed image is found
    ending = ".nii" if not any(images.glob("*_0000.nii.gz")) and any(images.glob("*_0000.nii")) else ".nii.gz"
    try:
        listed = list_nnunet_cases(root, file_ending=ending)
    except ValueError as err:
        raise ValueError(f"--data {path!r}: {err}") from None
    cases = []
    for item in listed:
        name = item["case"]
        if not isinstance(item["image"], str):
            raise ValueError(f"case {name!r}: {len(item['image'])} image channels; the demo takes one.")
        img_nii, image = _read_nifti(item["image"], np.float32)
        _, label = _read_nifti(item["label"])
        if image.ndim == 4 and image.shape[-1] == 1:
            image = image[..., 0]
        if label.ndim == 4 and label.shape[-1] == 1:
            label = label[..., 0]
        if image.ndim != 3 or image.shape != label.shape:
            raise ValueError(f"case {name!r}: image {image.shape} and label {label.shape} must be 3D volumes of the "
                             "same shape (one channel per image).")
        if not np.isfinite(image).all():
            raise ValueError(f"case {name!r}: the image contains NaN/Inf.")
        cases.append({"name": name, "image": image, "label": (label > 0).astype(np.uint8),
                      "spacing": tuple(float(s) for s in img_nii.header.get_zooms()[:3])})
    if len(cases) < 2:
        raise ValueError(f"--data {path!r}: found {len(cases)} case(s) (imagesTr/<case>_0000.nii.gz with "
                         "labelsTr/<case>.nii.gz); at least 2 are needed (training and test).")
    return cases


def _read_nifti(path: str, dtype=None) -> Tuple[object, np.ndarray]:
    """``(nibabel image, voxel array)`` of one NIfTI file; a corrupt or unreadable file is a ``ValueError`` naming it."""
    import zlib

    import nibabel as nib

    try:
        nii = nib.load(path)
        return nii, np.asarray(nii.dataobj, dtype=dtype)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"--data: cannot read {path} ({reason}); expected a NIfTI volume.") from None


def _pad_to(array: np.ndarray, size: int, value: float) -> np.ndarray:
    pad = [(0, max(size - n, 0)) for n in array.shape]
    return np.pad(array, pad, constant_values=value) if any(p[1] for p in pad) else array


def _prepare_training(cases: Sequence[dict], patch: int, need_soft: bool) -> List[dict]:
    """Normalised images, labels and (for SAUNA) whole-volume soft labels, padded to at least one patch."""
    out = []
    for c in cases:
        image = _pad_to(_normalise(c["image"]), patch, float(_normalise(c["image"]).min()))
        label = _pad_to(c["label"], patch, 0)
        item = {"image": image, "label": label}
        if need_soft:
            from medloss.transforms import SAUNATransform

            # soft labels depend on the thickest vessel of the whole case: computed before cropping
            item["soft"] = SAUNATransform(spacing=c["spacing"])(c["label"][None])[0]
            item["soft"] = _pad_to(item["soft"], patch, -1.0)
        out.append(item)
    return out


class PatchSampler:
    """Seeded stream of random patches (half of them centred on a vessel voxel) with random flips."""

    def __init__(self, cases: List[dict], patch: int, batch_size: int, seed: int):
        self.cases, self.patch, self.batch_size = cases, patch, batch_size
        self.rng = np.random.default_rng(seed)
        self.fg = [np.argwhere(c["label"] > 0) for c in cases]

    def __call__(self) -> Dict[str, np.ndarray]:
        keys = [k for k in ("image", "label", "soft") if k in self.cases[0]]
        batch: Dict[str, list] = {k: [] for k in keys}
        for _ in range(self.batch_size):
            i = int(self.rng.integers(len(self.cases)))
            case, shape = self.cases[i], np.asarray(self.cases[i]["label"].shape)
            if self.rng.random() < 0.5 and len(self.fg[i]):
                centre = self.fg[i][self.rng.integers(len(self.fg[i]))]
                start = np.clip(centre - self.patch // 2, 0, shape - self.patch)
            else:
                start = np.array([self.rng.integers(n - self.patch + 1) for n in shape])
            box = tuple(slice(s, s + self.patch) for s in start)
            flips = tuple(a for a in range(3) if self.rng.random() < 0.5)
            for k in keys:
                batch[k].append(np.flip(case[k][box], flips) if flips else case[k][box])
        return {k: np.stack(v)[:, None].copy() for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------------------------
# models and losses
# ----------------------------------------------------------------------------------------------------------------
def _network(out_channels: int):
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=(8, 16, 32), strides=(2, 2),
                num_res_units=1)


def _criterion(name: str, args: argparse.Namespace):
    """``loss(logits, batch)``, where ``batch`` holds tensors ``label`` and (SAUNA) ``soft``."""
    from monai.losses import DiceCELoss

    from medloss.losses import BettiMatchingLoss, MIPLoss, SAUNALoss

    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    if name == "baseline":
        return lambda z, b: dice_ce(z, b["label"])
    if name == "mip":
        # the MIP term only (voxel_weight=0) next to Dice+CE, on the three axes of the patch; batch-global so that
        # a patch with an empty projection does not dominate
        mip = MIPLoss(include_background=False, to_onehot_y=True, softmax=True, axes=(0, 1, 2),
                      axis_reduction="mean", voxel_weight=0.0, mip_weight=1.0, batch=True)
        return lambda z, b: dice_ce(z, b["label"]) + args.mip_weight * mip(z, b["label"])
    if name == "sauna":
        sauna = SAUNALoss()
        return lambda z, b: sauna(z, b["soft"])
    if name == "betti":
        # num_workers=None: the kernel matches the batch's instances in parallel threads
        betti = BettiMatchingLoss(include_background=False, to_onehot_y=True, softmax=True, num_workers=None)
        return lambda z, b: dice_ce(z, b["label"]) + args.betti_weight * betti(z, b["label"])
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}.")


def _train(name: str, train: List[dict], args: argparse.Namespace, start: int = 0, state: Optional[dict] = None,
           checkpoint_at: Optional[int] = None, progress=None, stop: Optional[int] = None,
           ) -> Tuple[object, Optional[dict], float]:
    """Train one model for iterations ``start..stop`` (default ``args.iterations``); returns ``(net, checkpoint,
    seconds)``.

    ``state`` (from a ``checkpoint_at`` of an earlier run) continues that run: network, optimiser, patch stream and
    torch RNG, so a fine-tuned model sees exactly the patches the run it branches from would have seen.
    """
    import torch

    torch.manual_seed(args.seed)
    net = _network(1 if name == "sauna" else 2).to(args.device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sampler = PatchSampler(train, args.patch, args.batch_size, args.seed)
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sampler.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    loss_fn = _criterion(name, args)
    checkpoint = None
    t0 = time.perf_counter()
    net.train()
    stop = args.iterations if stop is None else stop
    for it in range(start, stop):
        if it == checkpoint_at:
            checkpoint = _snapshot(net, opt, sampler)
        b = sampler()
        batch = {k: torch.as_tensor(v, device=args.device) for k, v in b.items()}
        batch["label"] = batch["label"].float()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(batch["image"]), batch)
        loss.backward()
        opt.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix_str(f"{name} loss {loss.item():.3f}")
    if checkpoint_at == stop:
        checkpoint = _snapshot(net, opt, sampler)
    return net, checkpoint, time.perf_counter() - t0


def _snapshot(net, opt, sampler) -> dict:
    import copy

    import torch

    return {"net": copy.deepcopy(net.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
            "rng": copy.deepcopy(sampler.rng.bit_generator.state), "torch_rng": torch.get_rng_state()}


def _predict(net, name: str, image: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """Binary vessel mask of one whole volume (sliding window of training-patch size)."""
    import torch
    from monai.inferers import sliding_window_inference

    shape = image.shape
    x = _normalise(image)
    x = _pad_to(x, args.patch, float(x.min()))
    net.eval()
    with torch.no_grad():
        z = sliding_window_inference(torch.as_tensor(x)[None, None].to(args.device), (args.patch,) * 3, 4, net,
                                     overlap=0.5, mode="gaussian")
    z = z[0].cpu().numpy()
    mask = z[0] >= 0 if name == "sauna" else z.argmax(0) == 1
    return mask[tuple(slice(0, n) for n in shape)]


# ----------------------------------------------------------------------------------------------------------------
# evaluation and report
# ----------------------------------------------------------------------------------------------------------------
def evaluate(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> Dict[str, float]:
    from medloss.metrics import binary_metrics

    m = binary_metrics(pred.astype(bool), label.astype(bool), spacing, metrics=_EVAL_METRICS)
    return {k: float(v) for k, v in m.items() if k in ("Dice", "clDice", "BNE0", "BNE1", "BNE2", "BNE", "BME0",
                                                       "BME1", "BME2", "BME")}


def _mean(values: List[Dict[str, float]]) -> Dict[str, float]:
    return {k: float(np.nanmean([v[k] for v in values])) for k in values[0]}


def markdown_table(means: Dict[str, Dict[str, float]]) -> str:
    header = "| Model | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    rows = []
    for name, m in means.items():
        best = []
        for key, _, higher in COLUMNS:
            col = [v[key] for v in means.values()]
            target = max(col) if higher else min(col)
            cell = f"{m[key]:.3f}" if key in ("Dice", "clDice") else f"{m[key]:.2f}"
            best.append(f"**{cell}**" if len(means) > 1 and math.isclose(m[key], target) else cell)
        rows.append(f"| {MODEL_NAMES[name]} | " + " | ".join(best) + " |")
    return "\n".join([header, rule] + rows)


def _plot_mips(path: Path, image: np.ndarray, label: np.ndarray, preds: Dict[str, np.ndarray], axis: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the MIP of a noisy volume is dominated by noise maxima: stretch the upper percentiles for display
    img = image.max(axis)
    lo, hi = np.percentile(img, (50, 99.5))
    panels = [("image", np.clip((img - lo) / (hi - lo + 1e-8), 0, 1), "gray"), ("ground truth", label.max(axis), "gray")]
    panels += [(MODEL_NAMES[n], p.max(axis), "gray") for n, p in preds.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (title, mip, cmap) in zip(np.atleast_1d(axes), panels):
        ax.imshow(mip.T, cmap=cmap, origin="lower", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{path.stem[4:]}: maximum intensity projections (axis {axis})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_bars(path: Path, means: Dict[str, Dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (("overlap (higher is better)", ("Dice", "clDice")),
              ("topology errors (lower is better)", ("BNE0", "BNE1", "BNE2", "BME")))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 4]})
    width = 0.8 / len(means)
    for ax, (title, keys) in zip(axes, groups):
        x = np.arange(len(keys))
        for i, (name, m) in enumerate(means.items()):
            ax.bar(x + (i - (len(means) - 1) / 2) * width, [m[k] for k in keys], width, label=MODEL_NAMES[name])
        ax.set_xticks(x, keys)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse_losses(text: str) -> List[str]:
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in LOSSES]
    if not names or bad:
        raise ValueError(f"--losses must be a comma-separated subset of {','.join(LOSSES)}, got {text!r}.")
    return list(dict.fromkeys(names))


def check_device(device: str, option: str = "--device") -> str:
    """Refuse a torch device that is malformed or not available on this machine, before any work.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        option: how the message names the option.

    Returns:
        ``device`` unchanged.

    Raises:
        ValueError: another device string, or CUDA (device ``N``) or MPS not available.

    Example:
        >>> check_device("cpu")
        'cpu'
        >>> check_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: --device 'gpu': expected cpu, cuda, cuda:N (N = 0, 1, ...) or mps.
    """
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ValueError(f"{option} {device!r}: expected cpu, cuda, cuda:N (N = 0, 1, ...) or mps.")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return device
    import torch  # only here: the checks of a CPU run stay fast

    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {device!r}: CUDA is not available on this machine (no GPU, no driver, or a "
                             "torch built without CUDA); use --device cpu.")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise ValueError(f"{option} {device!r}: this machine has {count} CUDA device(s), cuda:0 to "
                             f"cuda:{count - 1}.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {device!r}: MPS (Apple GPU) is not available on this machine; use --device cpu.")
    return device


def _check_args(args: argparse.Namespace) -> List[str]:
    """Check every option, the device and the output folder before any work; returns the models to train.

    Raises:
        ValueError: the option, its value and what is expected.
    """
    losses = _parse_losses(args.losses)
    for key, low in (("size", 16), ("cases", 1), ("test_cases", 1), ("iterations", 1), ("patch", 16),
                     ("batch_size", 1), ("seed", 0)):
        if getattr(args, key) < low:
            raise ValueError(f"--{key.replace('_', '-')} must be an integer >= {low}, got {getattr(args, key)}.")
    if args.seed >= 2**63:  # torch.manual_seed's range
        raise ValueError(f"--seed must be < 2**63, got {args.seed}.")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be an integer >= 1 (or left out for torch's choice), got {args.threads}.")
    if args.patch % 4:
        raise ValueError(f"--patch must be a multiple of 4 (two stride-2 levels), got {args.patch}.")
    if not args.data and args.patch > args.size:
        raise ValueError(f"--patch ({args.patch}) must not exceed --size ({args.size}).")
    if not args.data and args.cases + args.test_cases > MAX_PHANTOMS:
        raise ValueError(f"--cases + --test-cases must be <= {MAX_PHANTOMS} synthetic volumes, got "
                         f"{args.cases} + {args.test_cases}.")
    if not 0 < args.betti_fraction <= 1:
        raise ValueError(f"--betti-fraction must lie in (0, 1], got {args.betti_fraction}.")
    for key in ("mip_weight", "betti_weight", "lr"):
        value = getattr(args, key)
        if not math.isfinite(value) or value < 0 or (key == "lr" and value == 0):
            expected = "a finite number > 0" if key == "lr" else "a finite number >= 0"
            raise ValueError(f"--{key.replace('_', '-')} must be {expected}, got {value}.")
    check_device(args.device)
    check_output_folder(args.output, "output folder (--output)")
    return losses


def run(args: argparse.Namespace) -> dict:
    """The whole demo; returns the content of ``metrics.json``. Raises ``ValueError`` on bad options or data."""
    losses = _check_args(args)  # before the heavy imports: a mistake is reported at once
    from medloss import __version__

    t_start = time.perf_counter()
    if args.data:
        cases = load_folder(args.data)
        n_test = min(args.test_cases, len(cases) - 1)
        train_cases, test_cases = cases[:-n_test], cases[-n_test:]
        source = f"folder {args.data}"
    else:
        # the phantoms go through the same files and loader as a user's folder
        with tempfile.TemporaryDirectory(prefix="medloss_demo_") as tmp:
            cases = load_folder(str(write_synthetic_cases(Path(tmp), args.cases + args.test_cases, args.size,
                                                          args.seed)))
        train_cases, test_cases = cases[:args.cases], cases[args.cases:]
        source = f"synthetic vessel phantoms, {args.size}^3"
    import torch  # after the data were read: a corrupt file is reported at once
    from tqdm import tqdm

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.output)
    print(f"medloss {__version__} demo: {source}, {len(train_cases)} training / {len(test_cases)} test cases, "
          f"{args.iterations} iterations of {args.batch_size}x{args.patch}^3 patches per model, device {args.device}")
    train = _prepare_training(train_cases, args.patch, "sauna" in losses)
    t_data = time.perf_counter() - t_start

    # the Betti model continues the baseline run from this iteration on; same total iterations
    branch = args.iterations - max(1, round(args.betti_fraction * args.iterations)) if "betti" in losses else None
    if branch is not None and branch < 1:
        branch = None  # --betti-fraction 1: from scratch
    order = [n for n in LOSSES if n in losses]
    total = sum(args.iterations for n in order if n != "betti")
    total += (args.iterations - branch) if branch is not None else (args.iterations if "betti" in order else 0)
    if branch is not None and "baseline" not in order:
        total += branch  # the shared first part still has to be trained
    nets, seconds, checkpoint = {}, {}, None
    t_train = time.perf_counter()
    with tqdm(total=total, desc="training", unit="it", disable=args.no_progress, file=sys.stdout,
              dynamic_ncols=True) as bar:
        for name in order:
            if name == "betti" and branch is not None:
                if checkpoint is None:  # baseline not requested: train the shared part without keeping it
                    _, checkpoint, _ = _train("baseline", train, args, checkpoint_at=branch, progress=bar,
                                                   stop=branch)
                nets[name], _, seconds[name] = _train(name, train, args, start=branch, state=checkpoint,
                                                      progress=bar)
            else:
                nets[name], ckpt, seconds[name] = _train(name, train, args, progress=bar,
                                                         checkpoint_at=branch if name == "baseline" else None)
                checkpoint = ckpt if name == "baseline" else checkpoint

    t_eval = time.perf_counter()
    t_train = t_eval - t_train
    # every file of the report is written into a staging folder and moved into --output only at the end
    with staged_folder(out) as stage:
        per_case: Dict[str, Dict[str, Dict[str, float]]] = {n: {} for n in order}
        for case in test_cases:
            preds = {n: _predict(nets[n], n, case["image"], args) for n in order}
            for n, p in preds.items():
                per_case[n][case["name"]] = evaluate(p, case["label"], case["spacing"])
            _plot_mips(stage / f"mip_{case['name']}.png", case["image"], case["label"], preds, axis=2)
        means = {n: _mean(list(per_case[n].values())) for n in order}
        t_eval = time.perf_counter() - t_eval
        wall = time.perf_counter() - t_start

        table = markdown_table(means)
        _plot_bars(stage / "metrics_bar.png", means)
        settings = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "debug")}
        result = {"medloss_version": __version__, "settings": settings, "source": source,
                  "train_cases": [c["name"] for c in train_cases], "test_cases": [c["name"] for c in test_cases],
                  "betti_branch_iteration": branch, "mean": means, "per_case": per_case,
                  "train_seconds": seconds, "train_total_seconds": t_train, "data_seconds": t_data,
                  "eval_seconds": t_eval, "wall_seconds": wall}
        (stage / "metrics.json").write_text(json.dumps(result, indent=2))
        (stage / "report.md").write_text(_report(result, table, order, test_cases))
    print("\n" + table)
    print(f"\nwall time {wall:.0f} s (training {t_train:.0f} s, evaluation {t_eval:.0f} s); "
          f"report: {out / 'report.md'}")
    return result


def _report(result: dict, table: str, order: List[str], test_cases: List[dict]) -> str:
    s = result["settings"]
    lines = [
        "# medloss demo report", "",
        f"medloss {result['medloss_version']}; data: {result['source']}; training cases "
        f"{len(result['train_cases'])}, test cases {', '.join(result['test_cases'])}.", "",
        "## Test metrics (mean over the test cases)", "", table, "",
        "Dice and clDice: higher is better. Betti errors: |β_k(prediction) - β_k(ground truth)| per homology "
        "dimension k (components, loops/tunnels, cavities); Betti matching error: unmatched bars of the induced "
        "matching of the persistence barcodes (topologically faithful errors, not only counts). Foreground is "
        "6-connected. A short run on few test volumes is a demonstration, not a benchmark: small differences may "
        "not hold for another seed; use more --iterations, --cases, --test-cases and several --seed values (or "
        "your own --data) for firmer comparisons.", "",
        "## Models", "",
        f"All models: MONAI `UNet` (channels (8, 16, 32), strides (2, 2), one residual unit), Adam (lr {s['lr']}), "
        f"seed {s['seed']}, {s['iterations']} iterations of {s['batch_size']} random {s['patch']}^3 patches (half "
        "centred on a vessel voxel, random flips), the same patch sequence for every model; inference with a "
        "Gaussian-weighted sliding window.", "",
    ]
    desc = {
        "baseline": "`monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)`, 2 output channels, argmax.",
        "mip": f"Dice+CE + {s['mip_weight']} × `MIPLoss(include_background=False, softmax=True, axes=(0, 1, 2), "
               "axis_reduction='mean', voxel_weight=0, mip_weight=1, batch=True)` (SPOCKMIP's Focal Tversky "
               "between patch MIPs of prediction and label along the three axes).",
        "sauna": "1 output channel, `SAUNALoss()` (Focal-L1 + signed Jaccard on tanh outputs) against "
                 "`SAUNATransform` signed soft labels of the whole volume, cropped with the patch; vessel where "
                 "tanh(z) ≥ 0.",
        "betti": f"Dice+CE + {s['betti_weight']} × `BettiMatchingLoss(include_background=False, softmax=True)`; "
                 + (f"fine-tuned from the baseline run at iteration {result['betti_branch_iteration']} "
                    "(weights, optimiser state and patch stream) to the same total number of iterations."
                    if result["betti_branch_iteration"] else "trained from scratch."),
    }
    lines += [f"- **{MODEL_NAMES[n]}**: {desc[n]} Training {result['train_seconds'][n]:.0f} s"
              + (" (fine-tuning part)." if n == "betti" and result["betti_branch_iteration"] else ".") for n in order]
    lines += ["", f"Wall time {result['wall_seconds']:.0f} s (data {result['data_seconds']:.0f} s, training "
              f"{result['train_total_seconds']:.0f} s, evaluation "
              f"{result['eval_seconds']:.0f} s); torch threads {_threads()}.", "",
              "## Pictures", "", "![metrics](metrics_bar.png)", ""]
    lines += [f"![{c['name']}](mip_{c['name']}.png)" for c in test_cases]
    lines += ["", "## Settings", "", "```json", json.dumps(s, indent=2), "```", ""]
    return "\n".join(lines)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(args: argparse.Namespace) -> int:
    """Run the demo; a user's mistake is raised as ``ValueError`` for :func:`medloss.cli.main` to print."""
    run(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from medloss.cli import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))
