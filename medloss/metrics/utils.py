"""What medloss's metrics share: the MONAI cumulative-metric base and the crop to the foreground of a mask pair."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["ReducedMetric", "foreground_box"]


def foreground_box(prediction: np.ndarray, target: np.ndarray, margin: int = 1) -> Optional[Tuple[slice, ...]]:
    """Bounding box of the union of two boolean masks, grown by ``margin`` background voxels (clipped at the border).

    Every metric of medloss that is invariant to adding background around the foreground (surface distances, Betti
    numbers, the Betti matching of binary images, clDice) runs on this box: with a one-voxel margin of background
    the crop leaves the values unchanged and bounds time and memory by the size of the structure, not the image.

    Args:
        prediction: boolean mask ``(*spatial)``.
        target: boolean mask of the same shape.
        margin: background voxels kept on each side.

    Returns:
        One slice per axis, or ``None`` when both masks are empty.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((6, 8), bool); a[2, 3] = True
        >>> foreground_box(a, np.zeros_like(a))
        (slice(1, 4, None), slice(2, 5, None))
    """
    union = prediction | target
    box = []
    for axis in range(union.ndim):
        # projections instead of np.nonzero: one cheap reduction per axis on large volumes
        hits = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + margin + 1, union.shape[axis])))
    return tuple(box)


class ReducedMetric(CumulativeIterationMetric):
    """A cumulative metric of binarised predictions whose per-image ``(B, C[, ...])`` values are reduced with MONAI's
    ``MetricReduction``; subclasses implement ``_compute_tensor``.

    Args:
        include_background: keep channel 0 of ``y_pred``/``y``.
        threshold: binarisation threshold for ``y_pred`` (binary predictions pass through unchanged).
        reduction: MONAI metric reduction (``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
            ``"mean_channel"``, ``"sum_channel"``, ``"none"``).
        get_not_nans: ``aggregate()`` also returns the count of not-NaN entries.
    """

    def __init__(
        self,
        include_background: bool = True,
        threshold: float = 0.5,
        reduction: Union[MetricReduction, str] = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.threshold = threshold
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    @staticmethod
    def check_batched(y_pred: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``y_pred`` is a ``(B, C, H, W[, D])`` batch."""
        if y_pred.ndim not in (4, 5):
            raise ValueError(f"y_pred must have shape (B, C, H, W[, D]), got {tuple(y_pred.shape)}.")

    def aggregate(
        self, reduction: Union[MetricReduction, str, None] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Reduce the buffered values with ``reduction`` (default: the instance's)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
