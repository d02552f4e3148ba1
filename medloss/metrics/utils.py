"""What medloss's MONAI-style metric classes share."""

from __future__ import annotations

from typing import Tuple, Union

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["ReducedMetric"]


class ReducedMetric(CumulativeIterationMetric):
    """A cumulative metric whose per-image ``(B, C[, ...])`` values are reduced with MONAI's ``MetricReduction``.

    Subclasses set ``self.reduction`` and ``self.get_not_nans`` and implement ``_compute_tensor``.
    """

    reduction: Union[MetricReduction, str] = MetricReduction.MEAN
    get_not_nans: bool = False

    @staticmethod
    def check_batched(y_pred: torch.Tensor) -> None:
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
