"""Per-case, per-label metrics on binary masks with physical spacing.

Overlap metrics follow nnU-Net's evaluator exactly (``Dice = 2TP/(2TP+FP+FN)``, ``IoU = TP/(TP+FP+FN)``, NaN when
both masks are empty, voxels of the ignore label excluded), so that ``medloss evaluate`` and
``nnUNetv2_evaluate_folder`` agree. Distance metrics use surface voxels (voxels of the mask with a face neighbour
outside it, the image border counting as outside) and exact Euclidean distances in mm. Every distance computation is
restricted to the bounding box of both masks, which is exact for Euclidean distances and bounds the memory.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["overlap_metrics", "surface_metrics", "topology_metrics", "case_metrics", "ALL_METRICS"]

ALL_METRICS = ("Dice", "IoU", "HD95", "NSD", "clDice", "Betti", "BettiMatching")


def overlap_metrics(pred: np.ndarray, ref: np.ndarray, keep: Optional[np.ndarray] = None) -> Dict[str, float]:
    """nnU-Net's overlap metrics and raw counts for two boolean masks (``keep``: voxels to count)."""
    if keep is not None:
        pred, ref = pred & keep, ref & keep
        n_total = int(keep.sum())
    else:
        n_total = pred.size
    tp = int(np.count_nonzero(pred & ref))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    fp, fn = n_pred - tp, n_ref - tp
    tn = n_total - tp - fp - fn
    denom = tp + fp + fn
    return {
        "Dice": 2 * tp / (2 * tp + fp + fn) if denom else math.nan,
        "IoU": tp / denom if denom else math.nan,
        "TP": tp, "FP": fp, "FN": fn, "TN": tn, "n_pred": n_pred, "n_ref": n_ref,
    }


def _bbox(mask: np.ndarray, margin: int = 1) -> Tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, s)) for i, s in zip(idx, mask.shape))


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion, generate_binary_structure

    return mask & ~binary_erosion(mask, generate_binary_structure(mask.ndim, 1), border_value=0)


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                    nsd_tolerance: float = 1.0) -> Dict[str, float]:
    """95th-percentile Hausdorff distance (mm) and normalised surface Dice at ``nsd_tolerance`` mm.

    Conventions: both masks empty → NaN for both; exactly one empty → HD95 = the diagonal of the image in mm (the
    largest possible distance, so means stay finite) and NSD = 0. HD95 is the larger of the two directed 95th
    percentiles (as MONAI's ``compute_hausdorff_distance(percentile=95)``); NSD counts surface voxels of each mask
    within the tolerance of the other surface (Nikolov et al. 2021).
    """
    import edt

    spacing = tuple(float(s) for s in spacing)
    if not pred.any() and not ref.any():
        return {"HD95": math.nan, "NSD": math.nan}
    if not pred.any() or not ref.any():
        diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing))))
        return {"HD95": diagonal, "NSD": 0.0}
    box = _bbox(pred | ref)
    sp, sr = _surface(pred[box]), _surface(ref[box])
    # distance of every voxel to the nearest surface voxel of the other mask
    to_ref = edt.edt(~sr, anisotropy=spacing, black_border=False)
    to_pred = edt.edt(~sp, anisotropy=spacing, black_border=False)
    d_pred, d_ref = to_ref[sp], to_pred[sr]
    hd95 = max(float(np.percentile(d_pred, 95)), float(np.percentile(d_ref, 95)))
    nsd = (np.count_nonzero(d_pred <= nsd_tolerance) + np.count_nonzero(d_ref <= nsd_tolerance)) / (d_pred.size + d_ref.size)
    return {"HD95": hd95, "NSD": float(nsd)}


def topology_metrics(pred: np.ndarray, ref: np.ndarray, betti: bool = True, matching: bool = True,
                     cldice: bool = True) -> Dict[str, float]:
    """clDice, Betti number errors and Betti matching errors per homology dimension (and their totals).

    Computed on the bounding box of both masks with a one-voxel background margin, which leaves every bar of the
    binary filtrations unchanged. Both empty → clDice NaN and zero topological errors.
    """
    out: Dict[str, float] = {}
    ndim = pred.ndim
    if not pred.any() and not ref.any():
        if cldice:
            out["clDice"] = math.nan
        for d in range(ndim):
            if betti:
                out[f"BNE{d}"] = 0.0
            if matching:
                out[f"BME{d}"] = 0.0
        if betti:
            out["BNE"] = 0.0
        if matching:
            out["BME"] = 0.0
        return out
    box = _bbox(pred | ref)
    p, r = pred[box], ref[box]
    if cldice:
        from medloss.metrics import cldice as _cldice

        out["clDice"] = float(_cldice(p, r))
    if betti:
        from medloss.topology import betti_numbers

        bne = np.abs(betti_numbers(p).astype(np.int64) - betti_numbers(r).astype(np.int64))
        out.update({f"BNE{d}": float(v) for d, v in enumerate(bne)})
        out["BNE"] = float(bne.sum())
    if matching:
        from medloss.topology import betti_matching

        res = betti_matching(p.astype(np.float64), r.astype(np.float64))
        bme = np.asarray(res.num_unmatched_pred) + np.asarray(res.num_unmatched_target)
        out.update({f"BME{d}": float(v) for d, v in enumerate(bme)})
        out["BME"] = float(bme.sum())
    return out


Key = Union[int, Tuple[int, ...]]


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels_or_regions: Sequence[Key],
    ignore_label: Optional[int] = None,
    metrics: Sequence[str] = ALL_METRICS,
    nsd_tolerance: float = 1.0,
) -> Dict[str, Dict[str, float]]:
    """Metrics of one case, keyed like nnU-Net (``"1"`` for a label, ``"(1, 2)"`` for a region)."""
    keep = None if ignore_label is None else ref != ignore_label
    out = {}
    for key in labels_or_regions:
        values = key if isinstance(key, (tuple, list)) else (key,)
        p, r = np.isin(pred, values), np.isin(ref, values)
        if keep is not None:
            # nnU-Net excludes ignored voxels from the counts; distance and topology metrics see them as background
            p, r = p & keep, r & keep
        m = overlap_metrics(p, r, keep)
        if "HD95" in metrics or "NSD" in metrics:
            m.update(surface_metrics(p, r, spacing, nsd_tolerance))
        if {"clDice", "Betti", "BettiMatching"} & set(metrics):
            m.update(topology_metrics(p, r, "Betti" in metrics, "BettiMatching" in metrics, "clDice" in metrics))
        out[str(tuple(key)) if isinstance(key, (tuple, list)) else str(key)] = m
    return out
