"""Overlap counts, Dice and IoU of two binary masks with nnU-Net's conventions.

The values equal nnU-Net v2's evaluator (``nnunetv2.evaluation.evaluate_predictions.compute_metrics``,
https://github.com/MIC-DKFZ/nnUNet): ``Dice = 2TP / (2TP + FP + FN)``, ``IoU = TP / (TP + FP + FN)``, both NaN when the
two masks are empty, and voxels outside ``mask`` (nnU-Net: the ignore label) excluded from every count.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

import numpy as np

from medloss.validation import ArrayLike, binarize_image_pair, to_numpy

__all__ = ["overlap_metrics", "dice", "iou"]


def overlap_metrics(
    prediction: ArrayLike, target: ArrayLike, mask: Optional[ArrayLike] = None
) -> Dict[str, Union[int, float]]:
    """Dice, IoU and the confusion counts of one binary prediction against its reference (nnU-Net's evaluator).

    Args:
        prediction: binary mask ``(*spatial)`` (2D/3D; bool or 0/1; values above 0.5 are foreground).
        target: binary reference mask of the same shape.
        mask: optional boolean array of the same shape, the voxels that count (nnU-Net: reference voxels that do not
            carry the ignore label); prediction and target voxels outside it are ignored.

    Returns:
        ``{"Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref"}``: Dice and IoU as floats (NaN when both masks
        are empty inside ``mask``), the counts as ints (``n_pred = TP + FP``, ``n_ref = TP + FN``).

    Raises:
        ValueError: shapes differ, not 2D/3D, NaN/Inf, a target that is not binary.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((4, 4), bool); gt[:2] = True
        >>> pred = np.zeros((4, 4), bool); pred[1:3] = True
        >>> m = overlap_metrics(pred, gt)
        >>> m["Dice"], m["IoU"], m["TP"], m["FP"], m["FN"], m["TN"]
        (0.5, 0.3333333333333333, 4, 4, 4, 4)
    """
    pred, ref = binarize_image_pair(prediction, target)
    if mask is not None:
        keep = to_numpy(mask, "mask")
        if keep.shape != pred.shape:
            raise ValueError(f"mask must have the shape of prediction {pred.shape}, got {keep.shape}.")
        keep = keep.astype(bool, copy=False)
        pred, ref = pred & keep, ref & keep
        n_total = int(np.count_nonzero(keep))
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


def dice(prediction: ArrayLike, target: ArrayLike, mask: Optional[ArrayLike] = None) -> float:
    """Dice ``2TP / (2TP + FP + FN)`` of one binary mask pair, NaN when both are empty (:func:`overlap_metrics`).

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((4, 4), bool); gt[:2] = True
        >>> dice(np.roll(gt, 1, axis=0), gt)
        0.5
    """
    return float(overlap_metrics(prediction, target, mask)["Dice"])


def iou(prediction: ArrayLike, target: ArrayLike, mask: Optional[ArrayLike] = None) -> float:
    """IoU ``TP / (TP + FP + FN)`` of one binary mask pair, NaN when both are empty (:func:`overlap_metrics`).

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((4, 4), bool); gt[:2] = True
        >>> round(iou(np.roll(gt, 1, axis=0), gt), 4)
        0.3333
    """
    return float(overlap_metrics(prediction, target, mask)["IoU"])
