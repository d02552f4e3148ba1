"""Every metric of one binary prediction/reference pair, named as ``medloss evaluate`` reports them.

One place composes the metric functions (:func:`~medloss.metrics.overlap_metrics`,
:func:`~medloss.metrics.surface_metrics`, :func:`~medloss.metrics.cldice`, :func:`~medloss.metrics.betti_number_error`,
:func:`~medloss.metrics.betti_matching_error`) into the per-label values of ``medloss evaluate``, the demo and the
benchmarks, so that each number is computed the same way everywhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from medloss.validation import ArrayLike

__all__ = ["ALL_METRICS", "binary_metrics"]

#: metric groups of :func:`binary_metrics` (and ``medloss evaluate --metrics``; importing them must stay cheap,
#: hence the imports inside the function)
ALL_METRICS = ("Dice", "IoU", "HD95", "NSD", "clDice", "Betti", "BettiMatching")


def binary_metrics(
    prediction: ArrayLike,
    target: ArrayLike,
    spacing: Optional[Sequence[float]] = None,
    metrics: Sequence[str] = ALL_METRICS,
    nsd_tolerance: float = 1.0,
    mask: Optional[ArrayLike] = None,
    connectivity: int = 1,
) -> Dict[str, Union[int, float]]:
    """The metrics of one binary prediction against its reference as a flat ``{name: value}`` dict.

    Args:
        prediction: binary mask ``(*spatial)`` (2D/3D; bool or 0/1).
        target: binary reference mask of the same shape.
        spacing: voxel size in mm per array axis (default 1 mm), for HD95 and NSD.
        metrics: any of :data:`ALL_METRICS`. Dice, IoU and the confusion counts are always computed;
            ``"Betti"`` adds ``BNE0 .. BNE{ndim-1}`` and their sum ``BNE``, ``"BettiMatching"`` adds ``BME0 ..`` and
            ``BME``.
        nsd_tolerance: NSD tolerance in mm.
        mask: optional boolean array, the voxels that count (nnU-Net: not the ignore label). Prediction and target
            are restricted to it first, so the distance and topology metrics see the voxels outside as background.
        connectivity: of the Betti number and Betti matching errors: ``1`` (face neighbours, 4/6-connected
            foreground) or the number of spatial dimensions (full neighbourhood, 8/26-connected; TopoMortar's
            convention), see :func:`~medloss.metrics.betti_number_error`.

    Returns:
        Keys in this order: ``Dice, IoU, TP, FP, FN, TN, n_pred, n_ref`` (:func:`~medloss.metrics.overlap_metrics`),
        ``HD95, NSD`` (:func:`~medloss.metrics.surface_metrics`), ``clDice`` (:func:`~medloss.metrics.cldice`),
        ``BNE{d}, BNE`` (:func:`~medloss.metrics.betti_number_error`), ``BME{d}, BME``
        (:func:`~medloss.metrics.betti_matching_error`). Convention for two empty masks, as nnU-Net's Dice: NaN for
        Dice, IoU, HD95, NSD and clDice (an undefined score, left out of means), 0 for the topology errors.

    Raises:
        ValueError: unknown metric names, a connectivity other than 1 and ``ndim``, and bad input as the metric
            functions.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((8, 12), bool); gt[3, 1:11] = True
        >>> pred = gt.copy(); pred[3, 6] = False  # a broken vessel
        >>> m = binary_metrics(pred, gt, metrics=("Dice", "Betti", "BettiMatching"))
        >>> round(m["Dice"], 4), m["BNE0"], m["BME0"], m["BME"]
        (0.9474, 1.0, 1.0, 1.0)
    """
    from medloss.metrics.centerline import cldice
    from medloss.metrics.overlap import overlap_metrics
    from medloss.metrics.surface import surface_metrics
    from medloss.metrics.topology import betti_matching_error, betti_number_error
    from medloss.topology.api import check_connectivity
    from medloss.validation import binarize_image_pair, to_numpy

    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}.")
    pred, ref = binarize_image_pair(prediction, target)
    check_connectivity(connectivity, pred.ndim)  # up front, also when no topology metric is asked for
    out: Dict[str, Union[int, float]] = dict(overlap_metrics(pred, ref, mask))  # also checks the mask
    if mask is not None:
        keep = to_numpy(mask, "mask").astype(bool, copy=False)
        pred, ref = pred & keep, ref & keep
    if "HD95" in metrics or "NSD" in metrics:
        out.update(surface_metrics(pred, ref, spacing, nsd_tolerance))
    if "clDice" in metrics:
        out["clDice"] = math.nan if not (pred.any() or ref.any()) else float(cldice(pred, ref))
    for name, key, fn in (("Betti", "BNE", betti_number_error), ("BettiMatching", "BME", betti_matching_error)):
        if name in metrics:
            per_dim = fn(pred, ref, connectivity=connectivity).per_dim
            out.update({f"{key}{d}": float(v) for d, v in enumerate(per_dim)})
            out[key] = float(np.sum(per_dim))
    return out
