"""TopoMortar benchmark: train a 2D U-Net with each loss, score the 50 in-distribution test images like the paper.

    python benchmarks/topomortar.py --data TOPOMORTAR --protocol {smoke,quick,paper} --output DIR
        [--labels accurate|noisy|pseudo] [--train-set large|small] [--seeds 1 2 ...] [--losses cedice cldice ...]
        [--device cpu|cuda] [--debug]

TopoMortar (Valverde, Koga, Otsuka, Dahl, "TopoMortar: A dataset to evaluate image segmentation methods focused on
topology accuracy", BMVC 2025, https://arxiv.org/abs/2503.03365; data and per-run results in
https://github.com/jmlipman/TopoMortar, MIT licence) holds 512x512 photographs of brick walls with mortar labels.
``--data`` is a clone of that repository (``dataset/{train,val,test}/{images,accurate,noisy,pseudo}/NNN.png``,
``dataset/splits.yaml``, ``dataset/splits_small.yaml``, ``dataset/dataset_types.txt``, ``results/``); nothing is
downloaded, and anything missing or unreadable there is reported in one line naming it.

Every loss trains a MONAI ``DynUNet`` on the chosen training set (``--labels``, ``--train-set``) and is scored on
the in-distribution test images (the test ids of group ``indistr`` in ``dataset_types.txt``: 071-120) with
``medloss.metrics`` in the paper's conventions (:func:`topomortar_metrics`): Dice, HD95 (an empty prediction scores
the image diagonal between pixel centres, 722.66 at 512^2, as the paper's tables), Betti0/Betti1 errors with
8-connected foreground (``connectivity=2``), the same errors on the 4x4 grid of 128-pixel windows, clDice, and
medloss's Betti matching error. Rows (``--losses``; the composition of the paper's rows is reproduced):

* ``cedice``: CE + Dice with background (the paper's baseline; MONAI ``DiceCELoss(include_background=True)``).
* ``cldice``: 0.5 Dice (with background) + 0.5 clDice (foreground), no CE (the paper's clDice row).
* ``skelrecall``: CE + Skeleton Recall, no Dice (the paper's SkelRecall row).
* ``cedice_skelrecall``: CE + Dice + Skeleton Recall, the official recipe (MIC-DKFZ/Skeleton-Recall).
* ``bettimatching``: CE + Dice + 0.5 Betti matching on one random 48-pixel window per image (relative homology,
  superlevel, as TopoMortar's ``DiceBettiMatchingLoss``; 8-connected foreground), fine-tuned from the ``cedice``
  model of the same seed at a tenth of the learning rate.
* ``sauna``: SAUNA signed soft labels and ``SAUNALoss`` on one ``tanh`` channel.
* ``jaccard``: CE + ``JaccardMetricLoss``; ``focaltversky``: CE + ``FocalTverskyLoss`` (foreground).

Protocols: ``paper`` is the paper's (DynUNet with 8 levels, whole 512^2 images, batch 10, 12 000 iterations of SGD
with poly decay, deep supervision with the heads upsampled, nnU-Net-like augmentation; for a GPU); ``quick`` a small
DynUNet on random 128-pixel crops with flips and rotations by 90 degrees (one seed: under an hour on 2 CPU cores);
``smoke`` a few iterations on a few images (the test suite runs it). The estimated total time is printed first.

Output (``--output``, written together at the end): ``table.md`` (the paper's rows recomputed from its result CSVs
as mean ± sample std over runs x images, and this run's rows), ``cost.md`` (seconds per iteration and the ratio to
CE + Dice, loss-only milliseconds, peak memory), ``predictions.png`` (test images with each loss's prediction and
its topological errors), ``results.json`` (every per-image number, the configuration and the versions).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

#: the paper's baseline (study case 1 = supervised, accurate labels, large training set: results/supervised/accurate/
#: large); a loss is compared with the paper's rows of the same label variant and training-set size
PAPER_RESULTS = "results/supervised/{labels}/{size}"
#: the paper's per-image result columns -> this benchmark's metric names
PAPER_COLUMNS = {
    "Betti0Error_mortar": "Betti0",
    "Betti1Error_mortar": "Betti1",
    "Dice_mortar": "Dice",
    "HD95_mortar": "HD95",
    "Betti0ErrorLocal_mortar": "Betti0 local",
    "Betti1ErrorLocal_mortar": "Betti1 local",
    "clDice_mortar": "clDice",
}
#: medpy's HD95 of an empty prediction in the paper's CSVs, replaced by the 512^2 diagonal when tabulated
PAPER_EMPTY_HD95 = 9999999
PAPER_NAMES = {"CEDiceLoss": "CE+Dice", "clDiceLoss": "clDice", "CESkeletonRecallLoss": "SkelRecall (CE + recall)",
               "RegionWiseLoss": "RWLoss", "TopoLoss": "TopoLoss", "MSETopoWinLoss": "TOPO",
               "WarpingLoss": "Warping", "cbDiceLoss": "cbDice"}
METRICS = ("Betti0", "Betti1", "Dice", "HD95", "Betti0 local", "Betti1 local", "clDice", "BME")
HIGHER_IS_BETTER = ("Dice", "clDice")
GRID = 4  # the local Betti errors: 4x4 non-overlapping windows (128 pixels at 512^2)


class Protocol(NamedTuple):
    filters: Tuple[int, ...]  # DynUNet filters per level (strides 1, 2, 2, ...)
    crop: Optional[int]  # training crop side; None: whole images
    batch: int
    iterations: int
    finetune_iterations: int  # Betti matching, from the CE+Dice model
    deep_supr_num: int  # 0: no deep supervision
    augmentation: str  # "light" (crops, flips, rot90, intensity scale) or "paper"
    max_train: Optional[int]  # first n training images only
    max_test: Optional[int]  # first n in-distribution test images only
    lr: float = 0.01
    betti_window: int = 48


PROTOCOLS = {
    "smoke": Protocol((8, 16, 32), 32, 2, 4, 2, 1, "light", 4, 3),
    # calibrated on 2 CPU cores: 0.35-0.41 s per iteration for every loss (two threads), so 7 x 900 + 200
    # iterations and the scoring of 8 x 50 whole images take about 45 minutes
    "quick": Protocol((16, 32, 64, 128, 256), 128, 8, 900, 200, 0, "light", None, None),
    "paper": Protocol((32, 64, 128, 256, 512, 512, 512, 512), None, 10, 12000, 1200, 6, "paper", None, None),
}


# ----------------------------------------------------------------------------------------------------------- data
class Checkout(NamedTuple):
    train_ids: List[str]
    train_images: np.ndarray  # (N, 3, H, W) float32, per-image per-channel z-score
    train_labels: np.ndarray  # (N, H, W) uint8 0/1
    test_ids: List[str]
    test_images: np.ndarray
    test_labels: np.ndarray
    test_rgb: np.ndarray  # (N, H, W, 3) uint8, for the picture
    results: Optional[Path]  # the paper's results folder of this setting, None if the paper has none


def _read_png(path: Path, what: str, rgb: bool) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise ValueError(f"--data: missing {what} {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im.convert("RGB") if rgb and mode in ("RGB", "RGBA", "P") else im)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"--data: cannot read the {what} {path} as a PNG ({err})") from None
    if rgb and arr.ndim != 3:
        raise ValueError(f"--data: the {what} {path} is not an RGB image (mode {mode})")
    if not rgb and arr.ndim != 2:
        raise ValueError(f"--data: the {what} {path} is not a single-channel label (mode {mode})")
    return arr


def _zscore(rgb: np.ndarray) -> np.ndarray:
    """MONAI ``NormalizeIntensity(channel_wise=True)`` of raw 0-255 values: ``(H, W, 3) -> (3, H, W)`` float32."""
    x = rgb.astype(np.float32).transpose(2, 0, 1)
    mean, std = x.mean(axis=(1, 2), keepdims=True), x.std(axis=(1, 2), keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1.0)


def _read_splits(path: Path) -> Dict[str, List[str]]:
    try:
        import yaml
    except ImportError:
        raise ValueError("reading the TopoMortar splits needs PyYAML (pip install pyyaml)") from None
    if not path.is_file():
        raise ValueError(f"--data: missing splits file {path}")
    try:
        content = yaml.safe_load(path.read_text())
        fold = content.get(1, content.get("1"))
        splits = {k: [str(p) for p in fold[k]] for k in ("train", "test")}
    except (yaml.YAMLError, AttributeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"--data: malformed splits file {path}: expected fold 1 with lists 'train' and 'test' "
                         f"({type(err).__name__})") from None
    if not splits["train"] or not splits["test"]:
        raise ValueError(f"--data: the splits file {path} has an empty train or test list")
    return splits


def _read_groups(path: Path) -> Dict[int, str]:
    if not path.is_file():
        raise ValueError(f"--data: missing {path}")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {int(r["ID"]): r["group"].strip() for r in rows}
    except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError, csv.Error):
        raise ValueError(f"--data: malformed {path}: expected a CSV with columns ID,group") from None


def load_checkout(data: Path, labels: str = "accurate", train_set: str = "large", max_train: Optional[int] = None,
                  max_test: Optional[int] = None) -> Checkout:
    """Read and check the parts of a TopoMortar checkout the benchmark uses.

    Raises:
        ValueError: naming the first missing or malformed file (``--data`` missing, a splits file, an image or
            label, ``dataset_types.txt``, the ``results`` folder).
    """
    data = Path(data)
    if not data.is_dir():
        raise ValueError(f"--data: {data} is not a folder (expected a TopoMortar checkout)")
    splits = _read_splits(data / "dataset" / ("splits.yaml" if train_set == "large" else "splits_small.yaml"))
    groups = _read_groups(data / "dataset" / "dataset_types.txt")
    if not (data / "results").is_dir():
        raise ValueError(f"--data: missing folder {data / 'results'} (the paper's per-run result CSVs)")

    def image_id(rel: str) -> int:
        try:
            return int(Path(rel).stem)
        except ValueError:
            raise ValueError(f"--data: unexpected image path {rel!r} in the splits (expected .../NNN.png)") from None

    def read(rel_paths: Sequence[str], kind: str):
        images, labs, rgbs = [], [], []
        for rel in rel_paths:
            rgb = _read_png(data / rel, "image", rgb=True)
            lab = _read_png(data / rel.replace("/images/", f"/{kind}/"), f"{kind} label", rgb=False)
            if lab.shape != rgb.shape[:2]:
                raise ValueError(f"--data: the label of {data / rel} is {lab.shape}, the image {rgb.shape[:2]}")
            # 255 is the mortar; any other value (a few pixels of 8 in one OOD label) is background, as the paper
            images.append(_zscore(rgb)), labs.append((lab == 255).astype(np.uint8)), rgbs.append(rgb)
        return np.stack(images), np.stack(labs), np.stack(rgbs)

    train_paths = splits["train"][:max_train]
    for rel in splits["test"]:
        if image_id(rel) not in groups:
            raise ValueError(f"--data: test image {rel} is not listed in {data / 'dataset' / 'dataset_types.txt'}")
    test_paths = [rel for rel in splits["test"] if groups[image_id(rel)] == "indistr"][:max_test]
    if not test_paths:
        raise ValueError(f"--data: no in-distribution ('indistr') test image in the splits of {data}")
    train_x, train_y, _ = read(train_paths, labels)
    test_x, test_y, test_rgb = read(test_paths, "accurate")
    results = data / PAPER_RESULTS.format(labels=labels, size=train_set)
    return Checkout([f"{image_id(p):03d}" for p in train_paths], train_x, train_y,
                    [f"{image_id(p):03d}" for p in test_paths], test_x, test_y, test_rgb,
                    results if results.is_dir() else None)


# ------------------------------------------------------------------------------------------------ the paper's rows
def paper_rows(results: Path, id_images: Sequence[int]) -> Dict[str, dict]:
    """The paper's rows, recomputed from its per-run CSVs like its ``results/compute_tables.py``.

    Every ``<Loss>/<run>.csv`` of ``results`` is read; the rows of the in-distribution test images are pooled over
    runs and images, medpy's empty-prediction HD95 (9999999) is replaced by the 512^2 diagonal (511 sqrt 2), and
    each metric is the mean and sample standard deviation (ddof 1) of the pooled values (NaN skipped: the clDice of
    an empty prediction).

    Returns:
        ``{loss class name: {"runs": n, "values": n pooled images, metric: (mean, std), ...}}`` in name order.

    Raises:
        ValueError: a CSV without the paper's columns or with values that are not numbers.
    """
    rows = {}
    wanted = set(int(i) for i in id_images)
    order = list(PAPER_NAMES)  # the baseline and the rows comparable to medloss's first
    folders = sorted((p for p in Path(results).iterdir() if p.is_dir()),
                     key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))
    for folder in folders:
        files = sorted(folder.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
        if not files:
            continue
        pooled: Dict[str, List[float]] = {m: [] for m in PAPER_COLUMNS.values()}
        for path in files:
            try:
                with open(path, newline="") as f:
                    table = list(csv.DictReader(f))
                for r in table:
                    if int(r["ID"]) not in wanted:
                        continue
                    for col, name in PAPER_COLUMNS.items():
                        v = float(r[col]) if r[col] not in ("", None) else math.nan
                        pooled[name].append(511 * math.sqrt(2) if name == "HD95" and v == PAPER_EMPTY_HD95 else v)
            except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error):
                raise ValueError(f"--data: malformed result file {path}: expected the columns ID,"
                                 f"{','.join(PAPER_COLUMNS)} with numbers") from None
        row: dict = {"runs": len(files), "values": len(pooled["Dice"])}
        for name, values in pooled.items():
            row[name] = _mean_std(values)
        rows[folder.name] = row
    return rows


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


# ---------------------------------------------------------------------------------------------------- the metrics
def topomortar_metrics(prediction: np.ndarray, target: np.ndarray) -> Dict[str, float]:
    """The paper's per-image metrics of a binary 2D prediction, computed by ``medloss.metrics``.

    * ``Dice``, ``HD95``, ``clDice``: :func:`medloss.metrics.binary_metrics`; an empty prediction has the HD95 of
      the paper's tables, the image diagonal between pixel centres (``511 sqrt 2`` at 512^2). medloss's HD95 is
      the larger of the two directed 95th percentiles (MONAI, nnU-Net); medpy's, used by the paper, is the 95th
      percentile of both directions pooled. clDice of an empty prediction is 0 (the paper: NaN, left out).
    * ``Betti0``, ``Betti1``: :func:`medloss.metrics.betti_number_error` with ``connectivity=2`` (8-connected
      foreground, 4-connected holes: gudhi's ``top_dimensional_cells``, as the paper). gudhi counts the
      background's essential class as one component of an empty mask; medloss counts 0, so ``Betti0`` is one less
      when exactly one mask is empty.
    * ``Betti0 local``, ``Betti1 local``: the same errors on the 4x4 grid of non-overlapping windows (128 pixels
      at 512^2), averaged.
    * ``BME``: :func:`medloss.metrics.betti_matching_error` with ``connectivity=2`` (not in the paper), ``BME0``,
      ``BME1`` per dimension.
    """
    from medloss.metrics import betti_matching_error, betti_number_error, binary_metrics

    pred, gt = np.asarray(prediction, bool), np.asarray(target, bool)

    def betti_errors(p: np.ndarray, g: np.ndarray) -> np.ndarray:
        err = betti_number_error(p, g, connectivity=2).per_dim.astype(np.float64)
        if p.any() != g.any():  # gudhi: an empty mask has beta_0 = 1, not 0
            err[0] -= 1
        return err

    m = binary_metrics(pred, gt, metrics=("Dice", "HD95", "clDice"))
    out = {"Dice": float(m["Dice"]), "HD95": float(m["HD95"]), "clDice": float(m["clDice"])}
    if not pred.any():
        out["HD95"] = float(np.sqrt(sum((n - 1) ** 2 for n in pred.shape)))
    out["Betti0"], out["Betti1"] = (float(v) for v in betti_errors(pred, gt))
    h, w = pred.shape[0] // GRID, pred.shape[1] // GRID
    local = np.mean([betti_errors(pred[i:i + h, j:j + w], gt[i:i + h, j:j + w])
                     for i in range(0, GRID * h, h) for j in range(0, GRID * w, w)], axis=0)
    out["Betti0 local"], out["Betti1 local"] = float(local[0]), float(local[1])
    bme = betti_matching_error(pred, gt, connectivity=2).per_dim
    out.update({"BME0": float(bme[0]), "BME1": float(bme[1]), "BME": float(bme.sum())})
    return out


# ----------------------------------------------------------------------------------------------------- the losses
class Row:
    """One benchmark row: how its model is trained (output channels, loss on one output) and decoded."""

    title = ""
    out_channels = 2
    needs_skeleton = False
    needs_soft = False
    finetune_from: Optional[str] = None

    def loss(self, logits: torch.Tensor, batch: Dict[str, torch.Tensor], top: bool) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` logits -> ``(B, H, W)`` bool mask: argmax of the softmax (ties to background)."""
        return logits.argmax(1) == 1


def _dice_ce(include_background: bool = True):
    from monai.losses import DiceCELoss

    # the paper's CE - Dice, up to a constant: Dice per image and channel, smooth 1e-5 (background per argument)
    return DiceCELoss(include_background=include_background, softmax=True, to_onehot_y=True,
                      smooth_nr=1e-5, smooth_dr=1e-5)


class CEDice(Row):
    title = "CE+Dice"

    def __init__(self, protocol: Protocol) -> None:
        self.dice_ce = _dice_ce()

    def loss(self, logits, batch, top):
        return self.dice_ce(logits, batch["label"])


class ClDice(Row):
    title = "clDice (0.5 Dice + 0.5 clDice, no CE)"

    def __init__(self, protocol: Protocol) -> None:
        from medloss.losses import DiceClDiceLoss

        self.fn = DiceClDiceLoss(iter_=3, alpha=0.5, include_background=True, cldice_include_background=False,
                                 softmax=True, to_onehot_y=True)

    def loss(self, logits, batch, top):
        return self.fn(logits, batch["label"])


class SkelRecall(Row):
    title = "SkelRecall (CE + recall, no Dice)"
    needs_skeleton = True

    def __init__(self, protocol: Protocol) -> None:
        from medloss.losses import SkeletonRecallLoss

        self.recall = SkeletonRecallLoss(include_background=False, to_onehot_y=True, softmax=True)

    def loss(self, logits, batch, top):
        ce = torch.nn.functional.cross_entropy(logits, batch["label"][:, 0])
        return ce + self.recall(logits, batch["label"], skeleton=batch["skeleton"])


class CEDiceSkelRecall(SkelRecall):
    title = "CE+Dice+SkelRecall (official recipe)"

    def __init__(self, protocol: Protocol) -> None:
        super().__init__(protocol)
        self.dice_ce = _dice_ce(include_background=False)  # nnU-Net's Dice: foreground only

    def loss(self, logits, batch, top):
        return self.dice_ce(logits, batch["label"]) + self.recall(logits, batch["label"], skeleton=batch["skeleton"])


class BettiMatching(Row):
    title = "CE+Dice+Betti matching (fine-tuned from CE+Dice)"
    finetune_from = "cedice"

    def __init__(self, protocol: Protocol) -> None:
        from medloss.losses import BettiMatchingLoss

        self.dice_ce = _dice_ce()
        # TopoMortar's DiceBettiMatchingLoss: superlevel, relative, 48-pixel windows, weight 0.5, top output only;
        # 8-connected foreground (its kernel: 4-connected), the connectivity of the Betti errors it is scored with
        self.betti = BettiMatchingLoss(include_background=False, to_onehot_y=True, softmax=True,
                                       filtration="superlevel", relative=True, subpatch_size=protocol.betti_window,
                                       connectivity=2)

    def loss(self, logits, batch, top):
        base = self.dice_ce(logits, batch["label"])
        return base + 0.5 * self.betti(logits, batch["label"]) if top else base


class Sauna(Row):
    title = "SAUNA (soft labels, SAUNALoss)"
    out_channels = 1
    needs_soft = True

    def __init__(self, protocol: Protocol) -> None:
        from medloss.losses import SAUNALoss

        self.fn = SAUNALoss()

    def loss(self, logits, batch, top):
        return self.fn(logits, batch["soft"])

    def predict(self, logits):
        from medloss.transforms import sauna_to_label

        return sauna_to_label(logits, channel_dim=1)[:, 0] == 1


class CEPlus(Row):
    """CE + a region loss of medloss, built by :meth:`region_loss`."""

    def __init__(self, protocol: Protocol) -> None:
        self.fn = self.region_loss()

    @staticmethod
    def region_loss() -> torch.nn.Module:
        raise NotImplementedError

    def loss(self, logits, batch, top):
        return torch.nn.functional.cross_entropy(logits, batch["label"][:, 0]) + self.fn(logits, batch["label"])


class Jaccard(CEPlus):
    title = "CE+Jaccard (JaccardMetricLoss)"

    @staticmethod
    def region_loss():
        from medloss.losses import JaccardMetricLoss

        return JaccardMetricLoss(include_background=True, to_onehot_y=True, softmax=True)


class FocalTversky(CEPlus):
    title = "CE+FocalTversky"

    @staticmethod
    def region_loss():
        from medloss.losses import FocalTverskyLoss

        return FocalTverskyLoss(include_background=False, to_onehot_y=True, softmax=True)


LOSSES: Dict[str, Callable[[Protocol], Row]] = {
    "cedice": CEDice, "cldice": ClDice, "skelrecall": SkelRecall, "cedice_skelrecall": CEDiceSkelRecall,
    "bettimatching": BettiMatching, "sauna": Sauna, "jaccard": Jaccard, "focaltversky": FocalTversky,
}
SHORT_NAMES = {"cedice": "CE+Dice", "cldice": "clDice", "skelrecall": "SkelRecall", "cedice_skelrecall":
               "CE+Dice+SkelRecall", "bettimatching": "Betti matching (ft)", "sauna": "SAUNA", "jaccard": "CE+Jaccard",
               "focaltversky": "CE+FocalTversky"}
#: this benchmark's row -> the paper's row of the same composition
PAPER_ROW = {"cedice": "CEDiceLoss", "cldice": "clDiceLoss", "skelrecall": "CESkeletonRecallLoss"}


# ------------------------------------------------------------------------------------------------------- training
class TrainingSet(torch.utils.data.Dataset):
    """Augmented training samples; item ``i`` is drawn from its own seed, so workers do not change the result."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, soft: Optional[np.ndarray], protocol: Protocol,
                 seed: int, length: int) -> None:
        self.images, self.labels, self.soft = images, labels, soft
        self.protocol, self.seed, self.length = protocol, seed, length
        self.paper_aug = _paper_augmentation(soft is not None) if protocol.augmentation == "paper" else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, i))
        k = int(rng.integers(len(self.images)))
        image, label = self.images[k], self.labels[k][None].astype(np.float32)
        soft = self.soft[k] if self.soft is not None else None
        if self.paper_aug is not None:
            d = {"image": image, "label": label, **({"soft": soft} if soft is not None else {})}
            self.paper_aug.set_random_state(seed=int(rng.integers(2**31)))
            d = self.paper_aug(d)
            image, label, soft = (np.asarray(d[key]) if key in d else None for key in ("image", "label", "soft"))
        else:
            image, label, soft = _light_augmentation(rng, self.protocol.crop, image, label, soft)
        out = {"image": torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32),
               "label": torch.as_tensor(np.ascontiguousarray(label)).round().long()}
        if soft is not None:
            out["soft"] = torch.as_tensor(np.ascontiguousarray(soft), dtype=torch.float32)
        return out


def _light_augmentation(rng, crop, image, label, soft):
    """A random crop, random flips and rotation by a multiple of 90 degrees, intensity scaling with p 0.15."""
    arrays = [a for a in (image, label, soft) if a is not None]
    h, w = image.shape[1:]
    if crop is not None and crop < min(h, w):
        y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        arrays = [a[:, y:y + crop, x:x + crop] for a in arrays]
    k = int(rng.integers(4))
    flips = [ax for ax in (1, 2) if rng.random() < 0.5]
    arrays = [np.rot90(np.flip(a, flips) if flips else a, k, axes=(1, 2)) for a in arrays]
    if rng.random() < 0.15:
        arrays[0] = arrays[0] * (1 + rng.uniform(-0.25, 0.25))
    return (arrays[0], arrays[1], arrays[2] if soft is not None else None)


def _paper_augmentation(with_soft: bool):
    """TopoMortar's MONAI augmentation (a clone of nnU-Net's), in its order, after normalisation."""
    from monai import transforms as T

    spatial = ["image", "label"] + (["soft"] if with_soft else [])
    rot_modes = ["bilinear", "nearest"] + (["bilinear"] if with_soft else [])
    zoom_modes = ["bilinear", "nearest-exact"] + (["bilinear"] if with_soft else [])
    return T.Compose([
        T.RandRotated(spatial, range_x=3.1415, prob=0.2, keep_size=True, mode=rot_modes),
        T.RandZoomd(spatial, prob=0.2, min_zoom=0.7, max_zoom=1.4, mode=zoom_modes, keep_size=True,
                    padding_mode="edge"),
        T.RandGaussianNoised("image", prob=0.1, mean=0.0, std=0.1),
        T.RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), prob=0.2),
        T.RandScaleIntensityd("image", factors=0.25, prob=0.15),
        T.RandScaleIntensityFixedMeand("image", factors=0.25, prob=0.15, preserve_range=True),
        T.RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.5, 1.0), downsample_mode="bilinear",
                                     upsample_mode="nearest"),
        T.RandAdjustContrastd("image", prob=0.1, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
        T.RandAdjustContrastd("image", prob=0.1, gamma=(0.7, 1.5), invert_image=False, retain_stats=True),
        T.RandAxisFlipd(spatial, prob=0.5),
    ])


def build_net(protocol: Protocol, out_channels: int) -> torch.nn.Module:
    from monai.networks.nets import DynUNet

    n = len(protocol.filters)
    return DynUNet(2, 3, out_channels, kernel_size=[3] * n, strides=[1] + [2] * (n - 1),
                   upsample_kernel_size=[2] * (n - 1), filters=list(protocol.filters),
                   deep_supervision=protocol.deep_supr_num > 0, deep_supr_num=max(protocol.deep_supr_num, 1))


def _add_skeleton(batch: Dict[str, torch.Tensor]) -> None:
    from medloss.transforms import skeletonize_label

    labels = batch["label"].cpu().numpy()
    batch["skeleton"] = torch.as_tensor(np.stack([skeletonize_label(lab) for lab in labels])).to(batch["label"])


def _total_loss(row: Row, out: torch.Tensor, batch, deep_supr_num: int) -> torch.Tensor:
    """TopoMortar's deep supervision: ``[L(out0) + sum_i w_i L(out_i)] / K`` with ``w_i = 2^-i / sum_j 2^-j``."""
    if deep_supr_num == 0:
        return row.loss(out, batch, True)
    heads = out.unbind(1)  # DynUNet (training): (B, K, C, H, W), the heads already upsampled (nearest)
    norm = sum(2.0 ** -j for j in range(len(heads)))
    total = row.loss(heads[0], batch, True)
    for i, head in enumerate(heads[1:], start=1):
        total = total + (2.0 ** -i / norm) * row.loss(head, batch, False)
    return total / len(heads)


class TrainResult(NamedTuple):
    net: torch.nn.Module
    seconds_per_iteration: float
    loss_ms: float
    peak_memory_gib: float
    last_loss: float


def train(row: Row, net: torch.nn.Module, data: Checkout, soft: Optional[np.ndarray], protocol: Protocol,
          iterations: int, lr: float, seed: int, device: torch.device, desc: str) -> TrainResult:
    """SGD (momentum 0.99, Nesterov, weight decay 3e-5) with poly decay ``(1 - it / iterations)^0.9``, gradient
    norm clipped at 12, mixed precision on CUDA (the paper's optimisation)."""
    from tqdm.auto import tqdm

    workers = min(4, (os.cpu_count() or 1) - 1) if device.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(
        TrainingSet(data.train_images, data.train_labels, soft, protocol, seed, iterations * protocol.batch),
        batch_size=protocol.batch, num_workers=workers, persistent_workers=False)
    net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.99, nesterov=True, weight_decay=3e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: max(0.0, 1 - it / iterations) ** 0.9)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, value, batch = [], math.nan, None
    bar = tqdm(loader, total=iterations, desc=desc, leave=False, mininterval=2.0)
    for batch in bar:
        t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if row.needs_skeleton:
            _add_skeleton(batch)  # the CPU side of Skeleton Recall, counted in its iteration time
        with torch.autocast(device.type, enabled=amp):
            out = net(batch["image"])
        loss = _total_loss(row, out.float(), batch, protocol.deep_supr_num)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ValueError(f"{desc}: the loss became {value} at iteration {len(times)}")
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    bar.close()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    loss_ms = _loss_ms(row, net, batch, protocol, device)
    steady = times[1:] or times  # the first iteration includes warm-up (allocator, numba compilation)
    return TrainResult(net, statistics.median(steady), loss_ms, peak, value)


def _loss_ms(row: Row, net, batch, protocol: Protocol, device, repeats: int = 3) -> float:
    """Milliseconds of the loss alone (forward + backward, all deep-supervision heads) on the last batch."""
    with torch.no_grad():
        out = net(batch["image"]).float()
    out.requires_grad_(True)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        _total_loss(row, out, batch, protocol.deep_supr_num).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[1:])


@torch.no_grad()
def predict(row: Row, net: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Whole-image inference (MONAI SimpleInferer, eval mode: main output only) -> ``(N, H, W)`` bool."""
    net.eval()
    out = []
    for image in images:
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = net(torch.as_tensor(image[None], device=device)).float()
        out.append(row.predict(logits)[0].cpu().numpy())
    return np.stack(out)


# -------------------------------------------------------------------------------------------------------- outputs
def _fmt(ms: Tuple[float, float], metric: str) -> str:
    mean, std = ms
    if math.isnan(mean):
        return "–"
    digits = 3 if metric in HIGHER_IS_BETTER else 2
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not math.isnan(std) else f"{mean:.{digits}f}"


def main_table(paper: Optional[Dict[str, dict]], ours: Dict[str, dict], caption: str) -> str:
    head = "| Loss | n | " + " | ".join(f"{m} {'↑' if m in HIGHER_IS_BETTER else '↓'}" for m in METRICS) + " |"
    lines = [caption, "", head, "|" + "---|" * (len(METRICS) + 2)]
    for name, row in (paper or {}).items():
        cells = [_fmt(row[m], m) if m in row else "–" for m in METRICS]
        lines.append(f"| paper: {PAPER_NAMES.get(name, name)} | {row['runs']}×{row['values'] // max(row['runs'], 1)}"
                     f" | " + " | ".join(cells) + " |")
    for key, row in ours.items():
        cells = [_fmt(row[m], m) for m in METRICS]
        lines.append(f"| medloss: {row['title']} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost_table(costs: Dict[str, dict], device: torch.device, caption: str) -> str:
    base = costs.get("cedice", {}).get("s_per_it")
    lines = [caption, "",
             "| Loss | s / iteration | × CE+Dice | loss only (ms) | peak memory |", "|---|---|---|---|---|"]
    for key, c in costs.items():
        ratio = f"{c['s_per_it'] / base:.2f}" if base else "–"
        mem = f"{c['gpu_gib']:.2f} GiB (GPU)" if device.type == "cuda" else f"{c['rss_mib']:.0f} MiB (process RSS)"
        lines.append(f"| {c['title']} | {c['s_per_it']:.3f} | {ratio} | {c['loss_ms']:.1f} | {mem} |")
    return "\n".join(lines) + "\n"


def error_overlay(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """RGB picture of a prediction with its topological errors (8-connected components, 4-connected holes).

    White: predicted mortar. Red: predicted components that are extra (touching no ground-truth component) or
    broken off (not the largest piece over their ground-truth component). Yellow: predicted holes (bricks) without a
    ground-truth hole of IoU > 0.5 (spurious holes, bricks merged through a gap). Cyan: ground-truth holes without
    such a predicted hole.
    """
    from scipy import ndimage

    def contingency(la, na, lb, nb):
        return np.bincount((la.astype(np.int64) * (nb + 1) + lb).ravel(),
                           minlength=(na + 1) * (nb + 1)).reshape(na + 1, nb + 1)

    def holes(mask):
        lab, n = ndimage.label(~mask)  # 4-connected background
        inner = np.ones(n + 1, bool)
        inner[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = False
        inner[0] = False
        return np.where(inner[lab], lab, 0), n

    def unmatched_holes(la, na, lb, nb):
        inter = contingency(la, na, lb, nb)
        sa, sb = inter.sum(1), inter.sum(0)
        iou = inter[1:, 1:] / np.maximum(sa[1:, None] + sb[None, 1:] - inter[1:, 1:], 1)
        return np.r_[False, ~(iou > 0.5).any(1) & (sa[1:] > 0)][la]

    pc, npc = ndimage.label(pred, structure=np.ones((3, 3), bool))
    gc, ngc = ndimage.label(gt, structure=np.ones((3, 3), bool))
    inter = contingency(pc, npc, gc, ngc)[1:, 1:]  # (pred component, gt component) overlaps
    bad = np.zeros(npc + 1, bool)
    if npc:
        best = inter.argmax(1)
        overlap = inter[np.arange(npc), best]
        bad[1:] = overlap == 0
        for g in np.unique(best[overlap > 0]):
            pieces = np.flatnonzero((best == g) & (overlap > 0))
            bad[1 + pieces[pieces != pieces[overlap[pieces].argmax()]]] = True
    img = np.where(pred[..., None], 1.0, 0.15) * np.ones(3)
    (ph, nph), (gh, ngh) = holes(pred), holes(gt)
    img[unmatched_holes(ph, nph, gh, ngh)] = (1.0, 0.85, 0.0)
    img[unmatched_holes(gh, ngh, ph, nph)] = (0.0, 0.8, 0.9)
    img[bad[pc]] = (1.0, 0.1, 0.1)
    return img


def picture(path: Path, data: Checkout, predictions: Dict[str, np.ndarray], titles: Dict[str, str],
            n_images: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = list(range(min(n_images, len(data.test_ids))))
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(len(idx), cols, figsize=(2.4 * cols, 2.5 * len(idx)), squeeze=False)
    for r, i in enumerate(idx):
        gt = data.test_labels[i] > 0
        panels = [(f"image {data.test_ids[i]}", data.test_rgb[i]), ("ground truth", error_overlay(gt, gt))]
        panels += [(titles[k], error_overlay(p[i], gt)) for k, p in predictions.items()]
        for c, (title, im) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im, interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle("white: predicted mortar; red: extra or broken-off components; yellow: spurious or merged holes; "
                 "cyan: ground-truth holes not reproduced", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions(device: torch.device) -> Dict[str, str]:
    import monai
    import skimage

    import medloss

    out = {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
           "medloss": getattr(medloss, "__version__", "?"), "numpy": np.__version__,
           "scikit-image": skimage.__version__,
           "platform": platform.platform(), "torch threads": str(torch.get_num_threads())}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


# ------------------------------------------------------------------------------------------------------------ main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="a TopoMortar checkout (clone of jmlipman/TopoMortar)")
    ap.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    ap.add_argument("--output", required=True, type=Path, help="folder for table.md, cost.md, predictions.png, "
                                                                 "results.json")
    ap.add_argument("--labels", default="accurate", choices=("accurate", "noisy", "pseudo"))
    ap.add_argument("--train-set", default="large", choices=("large", "small"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES), metavar="LOSS",
                    help=f"rows to train, of {', '.join(LOSSES)} (default: all)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from medloss.data.outputs import check_output_folder, staged_folder

    protocol = PROTOCOLS[args.protocol]
    check_output_folder(args.output, "output folder (--output)")
    if "bettimatching" in args.losses and "cedice" not in args.losses:
        raise ValueError("--losses: bettimatching is fine-tuned from the cedice model; add cedice")
    if any(s < 0 for s in args.seeds):
        raise ValueError(f"--seeds must be non-negative integers, got {args.seeds}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device: unknown device {args.device!r} (cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    t_load = time.perf_counter()
    data = load_checkout(args.data, args.labels, args.train_set, protocol.max_train, protocol.max_test)
    paper = paper_rows(data.results, [int(i) for i in data.test_ids]) if data.results is not None else None
    # fine-tuned rows after the rows they start from
    order = sorted(dict.fromkeys(args.losses), key=lambda k: (LOSSES[k].finetune_from is not None,
                                                             list(LOSSES).index(k)))
    rows = {k: LOSSES[k](protocol) for k in order}  # every loss is built before any training
    print(f"TopoMortar: {len(data.train_ids)} training images ({args.labels}, {args.train_set}), "
          f"{len(data.test_ids)} in-distribution test images, read in {time.perf_counter() - t_load:.1f} s")
    soft = None
    if any(r.needs_soft for r in rows.values()):
        from medloss.transforms import SAUNATransform

        # SAUNA's soft label is global to the image: computed on the whole label before cropping
        soft = np.stack([SAUNATransform()(lab[None]) for lab in data.train_labels]).astype(np.float32)

    estimate(rows, data, soft, protocol, device, len(args.seeds))
    ours: Dict[str, dict] = {}
    per_image: Dict[str, dict] = {}
    costs: Dict[str, dict] = {}
    predictions: Dict[str, np.ndarray] = {}
    t_start = time.perf_counter()
    for seed in args.seeds:
        nets: Dict[str, torch.nn.Module] = {}
        for key, row in rows.items():
            from monai.utils import set_determinism

            set_determinism(seed)
            net = build_net(protocol, row.out_channels)
            iterations, lr = protocol.iterations, protocol.lr
            if row.finetune_from is not None:
                net.load_state_dict(nets[row.finetune_from].state_dict())
                iterations, lr = protocol.finetune_iterations, protocol.lr / 10
            result = train(row, net, data, soft, protocol, iterations, lr, seed, device, f"{key} seed {seed}")
            nets[key] = result.net
            preds = predict(row, result.net, data.test_images, device)
            from tqdm.auto import tqdm

            scores = {i: topomortar_metrics(p, g) for i, p, g in
                      tqdm(list(zip(data.test_ids, preds, data.test_labels > 0)), desc=f"scoring {key}", leave=False)}
            per_image.setdefault(key, {})[str(seed)] = scores
            if seed == args.seeds[0]:
                predictions[key] = preds[:3]
                costs[key] = {"title": row.title, "s_per_it": result.seconds_per_iteration, "loss_ms": result.loss_ms,
                              "gpu_gib": result.peak_memory_gib,
                              "rss_mib": _peak_rss_mib(),
                              "iterations": iterations}
            print(f"{key} seed {seed}: {iterations} it, {result.seconds_per_iteration:.3f} s/it, last loss "
                  f"{result.last_loss:.4f}; Dice {np.mean([s['Dice'] for s in scores.values()]):.3f}, Betti0 "
                  f"{np.mean([s['Betti0'] for s in scores.values()]):.2f}, Betti1 "
                  f"{np.mean([s['Betti1'] for s in scores.values()]):.2f} "
                  f"({(time.perf_counter() - t_start) / 60:.1f} min so far)", flush=True)
    for key, row in rows.items():
        pooled = [s for seed_scores in per_image[key].values() for s in seed_scores.values()]
        ours[key] = {"title": row.title, "n": f"{len(args.seeds)}×{len(data.test_ids)}",
                     **{m: _mean_std([s[m] for s in pooled]) for m in METRICS}}

    setting = f"{args.labels} labels, {args.train_set} training set"
    p = protocol
    protocol_text = (f"protocol `{args.protocol}`: DynUNet filters {list(p.filters)}, "
                     f"{'whole images' if p.crop is None else f'{p.crop}-pixel crops'}, batch {p.batch}, "
                     f"{p.iterations} iterations (Betti matching: +{p.finetune_iterations} from CE+Dice), "
                     f"{f'deep supervision ({p.deep_supr_num} extra heads), ' if p.deep_supr_num else ''}"
                     f"{p.augmentation} augmentation, seeds {args.seeds}, {device.type}")
    caption = (f"**TopoMortar, in-distribution test set ({len(data.test_ids)} images), {setting}.** "
               f"Mean ± sample std over runs × images (n). Paper rows: recomputed from the paper's per-image CSVs "
               f"({PAPER_RESULTS.format(labels=args.labels, size=args.train_set)}; DynUNet, whole images, 12 000 "
               f"iterations). medloss rows: {protocol_text}. "
               "Betti errors with 8-connected foreground; local = 4×4 windows; BME = medloss's Betti matching "
               "error (not in the paper). HD95: medloss's (max of the two directed 95th percentiles; the paper: "
               "medpy's pooled percentile). Compare with care: the paper's protocol is not this run's."
               + ("" if paper is not None else f" The paper has no results for this setting."))
    cost_caption = (f"**Cost per loss** ({protocol_text}). s / iteration: median wall time of a training step "
                    "(Skeleton Recall includes its CPU skeletonisation), its ratio to CE+Dice of the same run; "
                    "loss only: forward + backward of the loss on one batch of network outputs. "
                    + ("Peak GPU memory allocated by torch." if device.type == "cuda" else
                       "Memory: the process's peak RSS so far (grows monotonically over the run)."))
    record = {"protocol": args.protocol, "protocol_settings": p._asdict(), "labels": args.labels,
              "train_set": args.train_set, "seeds": args.seeds, "device": str(device), "versions": versions(device),
              "train_ids": data.train_ids, "test_ids": data.test_ids, "paper_rows": paper, "rows": ours,
              "costs": costs, "per_image": per_image}
    with staged_folder(args.output) as tmp:
        (tmp / "table.md").write_text(main_table(paper, ours, caption))
        (tmp / "cost.md").write_text(cost_table(costs, device, cost_caption))
        (tmp / "results.json").write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False))
        picture(tmp / "predictions.png", data, predictions, {k: SHORT_NAMES[k] for k in rows})
    print(f"wrote table.md, cost.md, predictions.png, results.json to {args.output} "
          f"({(time.perf_counter() - t_start) / 60:.1f} min)")


def estimate(rows: Dict[str, Row], data: Checkout, soft, protocol: Protocol, device, n_seeds: int) -> float:
    """Time three iterations of every loss and the scoring of one image; print the estimated total."""
    total, parts = 0.0, []
    probe = protocol._replace(iterations=3)
    for key, row in rows.items():
        torch.manual_seed(0)
        result = train(row, build_net(protocol, row.out_channels), data, soft, probe, 3, protocol.lr, 0, device,
                       f"timing {key}")
        n = protocol.finetune_iterations if row.finetune_from else protocol.iterations
        parts.append(f"{key} {result.seconds_per_iteration:.2f} s/it × {n}")
        total += result.seconds_per_iteration * n
    from scipy.ndimage import binary_erosion

    t0 = time.perf_counter()
    gt = data.test_labels[0] > 0
    topomortar_metrics(binary_erosion(gt), gt)
    scoring = (time.perf_counter() - t0) * len(data.test_ids) * len(rows)
    total = (total + scoring) * n_seeds
    print(f"estimated total: {total / 60:.1f} min ({'; '.join(parts)}; scoring {scoring / 60:.1f} min; "
          f"× {n_seeds} seed(s))", flush=True)
    return total


def _peak_rss_mib() -> float:
    """The process's peak resident memory in MiB (NaN where the ``resource`` module is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return math.nan
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def main(argv: Optional[Sequence[str]] = None) -> int:
    from medloss.cli import ERROR_STATUS, error_message  # the one-line form of medloss's commands

    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"topomortar.py: error: {error_message(err)}", file=sys.stderr)
        return ERROR_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
