"""Weighted sums of losses, e.g. a voxel loss plus a topology or feature term in a MONAI bundle."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from medloss.validation import check_numbers

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
        ValueError: no loss, an entry that is not callable, a number of weights different from the number of
            losses, a weight that is not a finite number, or all weights 0.

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
        if not isinstance(losses, Sequence) or isinstance(losses, str) or not losses:
            raise ValueError(f"losses must be a non-empty sequence of losses, got {losses!r}.")
        not_callable = [i for i, m in enumerate(losses) if not callable(m)]
        if not_callable:
            raise ValueError(f"losses must be callables (input, target) -> tensor; entries {not_callable} are not.")
        if weights is None:
            weights = [1.0] * len(losses)
        elif isinstance(weights, (Sequence, np.ndarray, torch.Tensor)) and len(weights) != len(losses):
            raise ValueError(f"need one finite weight per loss ({len(losses)}), got {list(weights)}.")
        else:
            weights = list(check_numbers("weights", weights))
        if all(w == 0.0 for w in weights):
            raise ValueError(f"at least one weight must be non-zero, got {weights}.")
        # modules are registered (their parameters and buffers follow .to(device)); plain callables are kept as is
        self.losses = nn.ModuleList([m for m in losses if isinstance(m, nn.Module)])
        self.terms = list(losses)
        self.weights = weights

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: ``input`` and ``target`` as each term expects them. Returns: a scalar."""
        return sum(w * term(input, target).mean() for w, term in zip(self.weights, self.terms) if w != 0.0)
