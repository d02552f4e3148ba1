"""Topology metrics: Betti number error and Betti matching error on binarised segmentations."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from monai.utils import MetricReduction

from medloss.metrics.utils import ReducedMetric

__all__ = [
    "TopologyError",
    "betti_number_error",
    "betti_matching_error",
    "BettiNumberErrorMetric",
    "BettiMatchingErrorMetric",
]

ArrayLike = Union[np.ndarray, torch.Tensor]


class TopologyError(NamedTuple):
    """Per-homology-dimension errors and their sum.

    ``per_dim`` has shape ``(ndim,)`` for one image or ``(B, C, ndim)`` for a batch; ``total`` is
    ``per_dim.sum(-1)`` (a scalar or ``(B, C)``).
    """

    per_dim: np.ndarray
    total: Union[np.ndarray, np.int64]


def _to_numpy(array: ArrayLike, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype == torch.bool:
            array = array.to(torch.uint8)
        array = array.numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(array).__name__}.")
    return array.astype(np.float64, copy=False)


def _binarize_pair(
    prediction: ArrayLike, target: ArrayLike, threshold: float, include_background: bool
) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Validate and binarise a prediction/target pair; shared by the topology and clDice metrics.

    Returns ``(prediction > threshold, target, batched)`` as boolean arrays of shape ``(N, *spatial)`` where
    ``N = B * C`` for batched ``(B, C, *spatial)`` input (after dropping channel 0 when ``include_background`` is
    ``False`` and ``C > 1``) and ``N = 1`` for a single ``(*spatial)`` image.
    """
    pred = _to_numpy(prediction, "prediction")
    gt = _to_numpy(target, "target")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and target must have the same shape, got {pred.shape} and {gt.shape}.")
    if pred.ndim not in (2, 3, 4, 5):
        raise ValueError(
            f"expected a 2D/3D image (*spatial) or a batch (B, C, *spatial) with 2 or 3 spatial dims, "
            f"got shape {pred.shape}."
        )
    if pred.size == 0:
        raise ValueError(f"prediction is empty (shape {pred.shape}).")
    for name, arr in (("prediction", pred), ("target", gt)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/Inf value(s).")
    if not np.isin(gt, (0.0, 1.0)).all():
        raise ValueError(f"target must be binary (0/1), got values such as {np.unique(gt)[:8].tolist()}.")
    batched = pred.ndim >= 4
    if not batched:
        pred, gt = pred[None, None], gt[None, None]
    if not include_background and pred.shape[1] > 1:
        pred, gt = pred[:, 1:], gt[:, 1:]
    spatial = pred.shape[2:]
    return (pred > threshold).reshape((-1,) + spatial), (gt > 0.5).reshape((-1,) + spatial), batched


def _shape_output(per_inst: np.ndarray, batched: bool, lead: Tuple[int, ...]) -> TopologyError:
    if batched:
        per_dim = per_inst.reshape(lead + per_inst.shape[-1:])
        return TopologyError(per_dim, per_dim.sum(-1))
    return TopologyError(per_inst[0], per_inst[0].sum())


def _lead_shape(prediction: ArrayLike, include_background: bool) -> Tuple[int, ...]:
    shape = tuple(prediction.shape)
    if len(shape) < 4:
        return ()
    channels = shape[1] - 1 if (not include_background and shape[1] > 1) else shape[1]
    return (shape[0], channels)


def betti_number_error(
    prediction: ArrayLike,
    target: ArrayLike,
    threshold: float = 0.5,
    relative: bool = False,
    include_background: bool = True,
) -> TopologyError:
    """Betti number error ``BNE_d = |beta_d(P) - beta_d(G)|`` per homology dimension.

    Parameters
    ----------
    prediction : ndarray or Tensor
        Probabilities or a binary mask, ``(*spatial)`` (2D/3D) or ``(B, C, *spatial)``; binarised as
        ``prediction > threshold``.
    target : ndarray or Tensor
        Binary mask of the same shape.
    threshold : float
        Binarisation threshold for ``prediction``.
    relative : bool
        Betti numbers of homology relative to the image border (as ``BettiMatchingLoss(relative=True)``):
        components touching the border do not count, a structure running border to border is a 1-cycle. They are
        the bar counts of the relative barcodes from the kernel's matching (``beta_d(P) = matched_d +
        unmatched_pred_d``), so ``BNE_d = |unmatched_pred_d - unmatched_target_d|``.
    include_background : bool
        For batched input, keep channel 0 (ignored for single-channel input).

    Returns
    -------
    TopologyError
        ``per_dim`` (int64, ``(ndim,)`` or ``(B, C, ndim)``) and ``total`` (sum over dimensions).

    Notes
    -----
    Betti numbers of the V-construction cubical complex of the foreground (4-connected in 2D, 6-connected in 3D;
    cavities/holes are 8/26-connected), counting the essential component: ``beta_0`` is the number of foreground
    components. Computed by :func:`medloss.topology.api.betti_numbers`.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((8, 8)); gt[2:6, 2:6] = 1
    >>> pred = gt.copy(); pred[3:5, 3:5] = 0  # a hole
    >>> betti_number_error(pred, gt).per_dim.tolist()
    [0, 1]
    """
    from medloss.topology.api import betti_matching_batch, betti_numbers

    pred, gt, batched = _binarize_pair(prediction, target, threshold, include_background)
    if relative:
        results = betti_matching_batch(list(pred), list(gt), filtration="superlevel", relative=True)
        per_inst = np.stack(
            [np.abs(np.asarray(r.num_unmatched_pred) - np.asarray(r.num_unmatched_target)) for r in results]
        ).astype(np.int64)
    else:
        per_inst = np.stack(
            [
                np.abs(np.asarray(betti_numbers(p), dtype=np.int64) - np.asarray(betti_numbers(g), dtype=np.int64))
                for p, g in zip(pred, gt)
            ]
        )
    return _shape_output(per_inst, batched, _lead_shape(prediction, include_background))


def betti_matching_error(
    prediction: ArrayLike,
    target: ArrayLike,
    threshold: float = 0.5,
    relative: bool = False,
    include_background: bool = True,
    num_workers: Optional[int] = None,
) -> TopologyError:
    """Betti matching error (Stucki et al., ICML 2023) per homology dimension.

    ``BME_d`` = number of unmatched prediction bars + number of unmatched target bars in dimension ``d`` of the
    Betti matching between the binarised prediction and the target (every bar of a binary image is ``[0, 1)``,
    so this equals :class:`~medloss.losses.BettiMatchingLoss` on the binarised inputs). Unlike the Betti number
    error it also counts features that exist in both images but at different places. Always
    ``BME_d >= BNE_d`` with the same parity.

    Parameters
    ----------
    prediction, target, threshold, relative, include_background
        As in :func:`betti_number_error`.
    num_workers : int, optional
        Threads for the matching of a batch (``None``: kernel default).

    Returns
    -------
    TopologyError
        ``per_dim`` (int64, ``(ndim,)`` or ``(B, C, ndim)``) and ``total``.

    Notes
    -----
    The matching kernel drops the essential component; it is added back here: when exactly one of the two images
    has foreground, the essential class is unmatched and ``BME_0`` counts it (so an empty prediction against a
    one-component target scores ``BME_0 = 1 = BNE_0``). With ``relative=True`` (kernel option: one-voxel frame
    entering first, bars born in the frame dropped) there is no essential class to correct.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((8, 12)); gt[3, 1:11] = 1
    >>> pred = gt.copy(); pred[3, 6] = 0  # a broken vessel
    >>> betti_matching_error(pred, gt).per_dim.tolist()
    [1, 0]
    """
    from medloss.topology.api import betti_matching_batch

    pred, gt, batched = _binarize_pair(prediction, target, threshold, include_background)
    preds = [np.ascontiguousarray(p, dtype=np.float64) for p in pred]
    gts = [np.ascontiguousarray(g, dtype=np.float64) for g in gt]
    results = betti_matching_batch(preds, gts, filtration="superlevel", num_workers=num_workers, relative=relative)
    per_inst = np.stack(
        [
            np.asarray(r.num_unmatched_pred, dtype=np.int64) + np.asarray(r.num_unmatched_target, dtype=np.int64)
            for r in results
        ]
    )
    if not relative:
        per_inst[:, 0] += np.array([p.any() != g.any() for p, g in zip(pred, gt)], dtype=np.int64)
    return _shape_output(per_inst, batched, _lead_shape(prediction, include_background))


class _TopologyMetric(ReducedMetric):
    _fn = staticmethod(betti_number_error)

    def __init__(
        self,
        include_background: bool = True,
        threshold: float = 0.5,
        relative: bool = False,
        per_dimension: bool = False,
        reduction: Union[MetricReduction, str] = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.threshold = threshold
        self.relative = relative
        self.per_dimension = per_dimension
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        self.check_batched(y_pred)
        result = self._fn(
            y_pred, y, threshold=self.threshold, relative=self.relative, include_background=self.include_background
        )
        out = result.per_dim if self.per_dimension else result.total
        return torch.as_tensor(out, dtype=torch.float32, device=y_pred.device)


class BettiNumberErrorMetric(_TopologyMetric):
    """Betti number error as a MONAI cumulative metric (see :func:`betti_number_error`).

    Example of the typical execution steps follows :class:`monai.metrics.metric.Cumulative`.

    Args:
        include_background: keep channel 0 of ``y_pred``/``y``.
        threshold: binarisation threshold for ``y_pred`` (binary predictions pass through unchanged).
        relative: Betti numbers relative to the image border (foreground frame).
        per_dimension: buffer ``(B, C, ndim)`` per-dimension errors instead of their ``(B, C)`` sum.
        reduction: MONAI metric reduction (``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
            ``"mean_channel"``, ``"sum_channel"``, ``"none"``).
        get_not_nans: ``aggregate()`` also returns the count of not-NaN entries.

    Inputs to ``__call__``: ``y_pred`` and ``y`` of shape ``(B, C, H, W[, D])`` (or lists of channel-first tensors),
    ``y`` binary one-hot.
    """

    _fn = staticmethod(betti_number_error)


class BettiMatchingErrorMetric(_TopologyMetric):
    """Betti matching error as a MONAI cumulative metric (see :func:`betti_matching_error`).

    Args:
        include_background: keep channel 0 of ``y_pred``/``y``.
        threshold: binarisation threshold for ``y_pred`` (binary predictions pass through unchanged).
        relative: matching relative to the image border (foreground frame).
        per_dimension: buffer ``(B, C, ndim)`` per-dimension errors instead of their ``(B, C)`` sum.
        reduction: MONAI metric reduction (``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
            ``"mean_channel"``, ``"sum_channel"``, ``"none"``).
        get_not_nans: ``aggregate()`` also returns the count of not-NaN entries.

    Inputs to ``__call__``: ``y_pred`` and ``y`` of shape ``(B, C, H, W[, D])`` (or lists of channel-first tensors),
    ``y`` binary one-hot.
    """

    _fn = staticmethod(betti_matching_error)
