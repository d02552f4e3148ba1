"""Weighted sums of losses, e.g. a voxel loss plus a topology or feature term in a MONAI bundle."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import nn

__all__ = ["WeightedSumLoss"]


class WeightedSumLoss(nn.Module):
    """``loss(input, target) = sum_i weights[i] * mean(losses[i](input, target))``.

    Each term is reduced to a scalar by its mean, so terms with different reductions (a scalar, MONAI's
    ``(B, C, 1, ...)`` with ``reduction="none"``, a per-sample ``(B,)``) can be mixed. A term with weight 0 is not
    evaluated. This is a plain ``nn.Module``, not a MONAI ``_Loss``: it has no ``reduction`` of its own (the
    result is always a scalar).

    Args:
        losses: loss modules or callables ``(input, target) -> tensor``.
        weights: one finite weight per loss (default all 1).

    Raises:
        ValueError: no loss, a number of weights different from the number of losses, a non-finite weight, or
            all weights 0.

    Example:
        >>> import torch
        >>> loss = WeightedSumLoss([torch.nn.L1Loss(), torch.nn.MSELoss()], weights=[1.0, 0.5])
        >>> float(loss(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)))
        1.5
    """

    def __init__(
        self, losses: Sequence[Callable[..., torch.Tensor]], weights: Optional[Sequence[float]] = None
    ) -> None:
        super().__init__()
        if not losses:
            raise ValueError("losses must hold at least one loss.")
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if len(weights) != len(losses) or not all(math.isfinite(w) for w in weights):
            raise ValueError(f"need one finite weight per loss ({len(losses)}), got {weights}.")
        if all(w == 0.0 for w in weights):
            raise ValueError(f"at least one weight must be non-zero, got {weights}.")
        # modules are registered (their parameters and buffers follow .to(device)); plain callables are kept as is
        self.losses = nn.ModuleList([m for m in losses if isinstance(m, nn.Module)])
        self.terms = list(losses)
        self.weights = weights

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: ``input`` and ``target`` as each term expects them. Returns: a scalar."""
        return sum(w * term(input, target).mean() for w, term in zip(self.weights, self.terms) if w != 0.0)
