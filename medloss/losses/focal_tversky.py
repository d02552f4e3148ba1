"""Focal Tversky loss, as used by DS6, SPOCKMIP and PULASki (the Magdeburg group's vessel-segmentation losses).

Abraham, N. and Khan, N. M. (2019) "A Novel Focal Tversky Loss Function with Improved Attention U-Net for Lesion
Segmentation", ISBI 2019, https://arxiv.org/abs/1810.07842. Defaults follow SPOCKMIP (Radhakrishna et al. 2024,
https://arxiv.org/abs/2407.08655; code https://github.com/soumickmj/SPOCKMIP, ``Evaluation/evaluate.py`` at commit
1ebfbd3), identical in DS6 (https://github.com/soumickmj/DS6) and PULASki (https://github.com/soumickmj/PULASki).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from medloss.losses.jaccard import safe_ratio
from medloss.validation import (
    check_activation_args,
    check_bools,
    check_number,
    check_reduction,
    prepare_probabilities,
    reduce,
)

__all__ = ["FocalTverskyLoss", "focal_tversky"]


def _focal(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``x ** gamma`` for ``x >= 0`` with a finite gradient (0) at ``x == 0`` when ``gamma < 1``."""
    if gamma == 1.0:
        return x
    positive = x > 0
    # pow on ones in the unused branch: 0 ** (gamma - 1) would be inf there, and inf * 0 = NaN in the backward
    safe = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, safe.pow(gamma), torch.zeros_like(x))


def focal_tversky(
    prob: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    smooth_nr: float = 1.0,
    smooth_dr: float = 1.0,
    batch: bool = True,
) -> torch.Tensor:
    """Focal Tversky loss per class, without checks (inputs already activated, one-hot and of equal shape).

    Args:
        prob: probabilities ``(B, C, *spatial)``.
        target: labels in ``[0, 1]``, same shape.
        alpha, beta, gamma, smooth_nr, smooth_dr, batch: see :class:`FocalTverskyLoss`.

    Returns:
        ``(C,)`` when ``batch`` else ``(B, C)``.
    """
    dims = [0] + list(range(2, prob.ndim)) if batch else list(range(2, prob.ndim))
    tp = (prob * target).sum(dims)
    fp = (prob * (1 - target)).sum(dims)
    fn = ((1 - prob) * target).sum(dims)
    num = tp + smooth_nr
    den = tp + alpha * fp + beta * fn + smooth_dr
    # 0 / 0 (no smoothing, empty class predicted empty) is a perfect match, not NaN
    index = safe_ratio(num, den)
    return _focal((1 - index).clamp_min(0), gamma)


class FocalTverskyLoss(_Loss):
    """Focal Tversky loss ``(1 - TI) ** gamma`` with the Tversky index ``TI`` of probabilities and labels.

    Abraham, N. and Khan, N. M. (2019) A Novel Focal Tversky Loss Function with Improved Attention U-Net for Lesion
    Segmentation, ISBI 2019 (https://arxiv.org/abs/1810.07842). Defaults are those of SPOCKMIP/DS6/PULASki
    (Radhakrishna et al. 2024, https://arxiv.org/abs/2407.08655; Chatterjee et al. 2022, DS6).

    Per class ``c`` (and per image unless ``batch``), with probabilities ``p`` and labels ``g`` summed over space::

        TP = sum p g,   FP = sum p (1 - g),   FN = sum (1 - p) g
        TI = (TP + smooth_nr) / (TP + alpha FP + beta FN + smooth_dr),   loss = (1 - TI) ** gamma

    ``alpha``/``beta`` follow MONAI's ``TverskyLoss`` (alpha weights false positives, beta false negatives), so this
    loss equals ``MONAI TverskyLoss(...) ** gamma`` per item. Note the original code (SPOCKMIP, DS6, PULASki) names them
    the other way round: its ``alpha=0.7`` is the weight of the false negatives, i.e. ``beta=0.7`` here. ``gamma`` is
    the exponent itself (``0.75`` = ``1 / gamma_paper`` with Abraham & Khan's ``gamma_paper = 4/3``). With ``gamma < 1``
    the gradient grows without bound as ``TI -> 1``; at ``TI == 1`` exactly it is taken as 0.

    The original default is batch-global: that code flattens the whole batch (and the channels; medloss keeps the
    channels apart, MONAI's way, which is the same for its single-channel use). ``batch=False`` gives the per-image
    losses.

    Args:
        include_background: if False, channel 0 (background) is left out (ignored for single-channel input).
        to_onehot_y: the target is a ``(B, 1, *spatial)`` label map of class indices, one-hot encoded to
            ``C = input.shape[1]`` channels. Otherwise the target must have ``C`` channels with values in ``[0, 1]``.
        sigmoid: apply a sigmoid to the input (the original code does: single-channel logits).
        softmax: apply a softmax over channels to the input.
        other_act: another activation applied to the input; its output must lie in ``[0, 1]``.
        alpha: weight of the false positives (MONAI convention; SPOCKMIP 0.3).
        beta: weight of the false negatives (MONAI convention; SPOCKMIP 0.7).
        gamma: exponent ``> 0`` applied to ``1 - TI`` (SPOCKMIP 0.75).
        reduction: ``"mean"`` (default) or ``"sum"`` over the per-item losses, or ``"none"``: the losses with
            MONAI's ``DiceLoss`` shapes, ``(C, 1, 1[, 1])`` with ``batch=True``, ``(B, C, 1, 1[, 1])`` with
            ``batch=False``.
        smooth_nr: added to the numerator (SPOCKMIP 1).
        smooth_dr: added to the denominator (SPOCKMIP 1).
        batch: sum TP/FP/FN over the batch before the index (SPOCKMIP, default) instead of one loss per image.

    Raises:
        ValueError: incompatible activations; ``alpha``/``beta``/smoothing not finite and ``>= 0``;
            ``alpha = beta = 0``; ``gamma`` not finite and ``> 0``; a switch that is not a bool; unknown ``reduction``.

    Example:
        >>> import torch
        >>> prob = torch.tensor([0.9, 0.2, 0.6, 0.0]).view(1, 1, 2, 2)
        >>> label = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)
        >>> round(float(FocalTverskyLoss()(prob, label)), 4)  # TP 1.5, FP 0.2, FN 1.5: (1 - 2.5 / 3.61) ** 0.75
        0.4129
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        smooth_nr: float = 1.0,
        smooth_dr: float = 1.0,
        batch: bool = True,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        check_activation_args(sigmoid, softmax, other_act)
        check_bools(include_background=include_background, to_onehot_y=to_onehot_y, batch=batch)
        alpha, beta = check_number("alpha", alpha, low=0), check_number("beta", beta, low=0)
        if alpha + beta == 0:
            raise ValueError("alpha and beta must not both be 0 (the index would be 1 for any input).")
        gamma = check_number("gamma", gamma, low=0, low_open=True)
        smooth_nr = check_number("smooth_nr", smooth_nr, low=0)
        smooth_dr = check_number("smooth_dr", smooth_dr, low=0)
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = bool(batch)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits or probabilities, ``(B, C, H, W[, D])``; half precision is computed in float32.
            target: ``(B, C, H, W[, D])`` labels in ``[0, 1]``, or ``(B, 1, H, W[, D])`` class indices with
                ``to_onehot_y=True``.

        Returns:
            the loss, reduced as set by ``reduction``.

        Raises:
            ValueError: input not ``(B, C, *spatial)`` with 2 or 3 spatial dims or not floating point; shape
                mismatch; NaN/Inf; target outside ``[0, 1]``; label values that are not integers in ``[0, C)``;
                prediction outside ``[0, 1]`` after the activation.
        """
        prob, target, _ = prepare_probabilities(
            input, target, self.include_background, self.to_onehot_y, self.sigmoid, self.softmax, self.other_act
        )
        loss = focal_tversky(
            prob, target, self.alpha, self.beta, self.gamma, self.smooth_nr, self.smooth_dr, self.batch
        )
        return reduce(loss, self.reduction, prob.ndim)

