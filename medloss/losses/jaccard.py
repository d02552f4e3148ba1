"""Jaccard metric, Dice semimetric and Tversky losses for hard and soft labels (L1 cardinalities).

Wang, Z. et al. (2023) "Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels", NeurIPS 2023,
https://arxiv.org/abs/2302.05666, and Wang, Z. et al. (2023) "Dice Semimetric Losses: Optimizing the Dice Score with
Soft Labels", MICCAI 2023, https://arxiv.org/abs/2303.16296.

Semantics follow the authors' JDTLoss at HEAD (zifuwanggg/JDTLosses ``68ce8ac``, loss code of March 2024):
with ``Δ = ||x - y||``, ``TP = (||x|| + ||y|| - Δ) / 2``, ``FP = ||x|| - TP``, ``FN = ||y|| - TP`` and the loss
``1 - (TP + s) / (TP + α FP + β FN + s)``. Unlike the product form ``TP = <x, y>``, this is zero iff ``x == y`` for
soft labels too, and it equals the usual soft Jaccard/Dice for hard labels.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from medloss.validation import (
    check_activation_args,
    check_binary,
    check_bool,
    check_bools,
    check_choice,
    check_class_weights,
    check_number,
    check_numbers,
    check_reduction,
    prepare_probabilities,
    reduce,
)

__all__ = ["TverskyMetricLoss", "JaccardMetricLoss", "DiceSemimetricLoss", "safe_ratio"]

_ACTIVE_MODES = ("all", "present")


def _cardinality(x: torch.Tensor, norm: float, nonnegative: bool = False) -> torch.Tensor:
    """``||x||_p^p`` over the last axis."""
    a = x if nonnegative else x.abs()
    if norm == 1:
        return a.sum(-1)
    if norm == 2:
        return (a * a).sum(-1)
    return a.pow(norm).sum(-1)


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with ``0 / 0 := 1`` (``den <= 0`` only when nothing is predicted or labelled): an empty
    prediction of an empty class is a perfect match, not NaN. Used by every overlap index of the losses.

    Example:
        >>> safe_ratio(torch.tensor([1.0, 0.0]), torch.tensor([4.0, 0.0])).tolist()
        [0.25, 1.0]
    """
    empty = den <= 0
    return torch.where(empty, torch.ones_like(num), num) / torch.where(empty, torch.ones_like(den), den)


def _resolve_level_weights(
    batch: Optional[bool], per_image: Optional[bool], reduction_weights: Optional[Sequence[float]]
) -> Tuple[float, float, float]:
    check_bool("batch", batch, allow_none=True)
    check_bool("per_image", per_image, allow_none=True)
    given = [name for name, v in (("batch", batch), ("per_image", per_image), ("reduction_weights", reduction_weights))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of batch, per_image and reduction_weights, got {', '.join(given)}.")
    if batch is not None:
        return (1.0, 0.0, 0.0) if batch else (0.0, 1.0, 0.0)
    if per_image is not None:
        return (0.0, 1.0, 0.0) if per_image else (1.0, 0.0, 0.0)
    if reduction_weights is None:
        return (1.0, 0.0, 0.0)
    w = check_numbers("reduction_weights", reduction_weights, low=0, length=3)
    if sum(w) <= 0:
        raise ValueError(
            "reduction_weights must be three nonnegative numbers (mIoU^D, mIoU^I, mIoU^C), not all zero, "
            f"got {tuple(reduction_weights)}."
        )
    return w  # type: ignore[return-value]


class TverskyMetricLoss(_Loss):
    """Tversky loss with L1 (soft-label safe) true/false positive counts; base of the Jaccard and Dice losses.

    Wang, Z. et al. (2023) Jaccard Metric Losses, NeurIPS 2023 (https://arxiv.org/abs/2302.05666); Wang, Z. et al.
    (2023) Dice Semimetric Losses, MICCAI 2023 (https://arxiv.org/abs/2303.16296); Wang, Z. et al. (2023)
    Revisiting Evaluation Metrics for Semantic Segmentation (mIoU^D/I/C), https://arxiv.org/abs/2310.19252.

    Per image ``b`` and class ``c`` with prediction ``x`` and label ``y`` flattened over space::

        TP = (||x||_p^p + ||y||_p^p - ||x - y||_p^p) / 2,   FP = ||x||_p^p - TP,   FN = ||y||_p^p - TP
        T  = (TP + smooth) / (TP + alpha FP + beta FN + smooth),   loss = (1 - T) ** gamma   (or (-log T) ** gamma)

    The result is ``w_D L_D + w_I L_I + w_C L_C`` (``reduction_weights``), as in JDTLoss at HEAD:

    * ``L_D`` (per batch, mIoU^D): TP/FP/FN summed over the batch per class, loss per class, mean over active classes;
    * ``L_I`` (per image, mIoU^I): loss per (image, class); mean over the active classes of each image, then over the
      images with at least one active class;
    * ``L_C`` (per class, mIoU^C): the same matrix; mean over the active images of each class, then over classes.

    A class is *active* under ``"all"`` always, under ``"present"`` when ``max(target) > threshold`` over the pixels
    that are reduced together (the batch for ``L_D``, one image for ``L_I``/``L_C``), after masking.

    Hard or soft target is never guessed from the dtype (JDTLoss treats only ``torch.long`` as hard):
    ``to_onehot_y=True`` means the target is a label map ``(B, 1, *spatial)`` of class indices ("hard":
    ``active_classes_hard`` applies); otherwise the target has ``C`` channels of one-hot or soft values in ``[0, 1]``
    ("soft": ``active_classes_soft`` applies).

    Differences from JDTLoss HEAD: no implicit softmax (pass ``softmax=True``, as JDTLoss always applies it); labels
    outside ``[0, C)`` raise instead of being clamped silently to the last class; the class weights are a buffer
    (they follow the module to the GPU) kept in float64; ``0 / 0`` (``smooth=0``, empty class predicted empty)
    counts as a perfect score instead of NaN.

    Differences from MONAI ``DiceLoss``/``TverskyLoss(soft_label=True)`` (MONAI >= 1.5): the counts are the same, but
    MONAI's Dice/Jaccard with ``smooth_nr = smooth_dr = s`` equal these losses with ``smooth = s / 2`` (Tversky: same
    ``s``); MONAI's default is per image (``batch=False``) and has no active-class selection, ``gamma``, ``log_loss``
    or ``norm != 1, 2``; MONAI's ``batch=True`` equals ``batch=True`` here and ``batch=False`` with
    ``reduction="mean"`` equals ``batch=False`` here, with ``"all"`` active classes.

    Args:
        include_background: if False, channel 0 (background) is left out of the loss.
        to_onehot_y: the target is a ``(B, 1, *spatial)`` label map of integer class indices (hard labels) that is
            one-hot encoded to ``C = input.shape[1]`` channels. Otherwise the target must have ``C`` channels.
        sigmoid: apply a sigmoid to the input.
        softmax: apply a softmax over channels to the input (JDTLoss behaviour).
        other_act: another activation applied to the input; its output must lie in ``[0, 1]``.
        alpha: weight of the false positives (Jaccard: 1, Dice: 0.5).
        beta: weight of the false negatives (Jaccard: 1, Dice: 0.5).
        gamma: exponent ``>= 1`` applied to each per-class loss (JDTLoss HEAD; before Nov 2023 the exponent was
            ``1 / gamma``).
        norm: ``p >= 1`` of the cardinalities ``||.||_p^p``. 1 (default, recommended) gives the Jaccard metric / Dice
            semimetric losses; 2 gives ``TP = <x, y>``, i.e. the classic L2 soft Jaccard / V-Net Dice.
        log_loss: use ``-log T`` instead of ``1 - T``.
        class_weights: ``C`` nonnegative weights, not all 0 (after background removal), multiplying the per-class losses
            before the means; they are not renormalised (a plain mean follows, as in JDTLoss and MONAI).
        active_classes_hard: ``"present"`` (default) or ``"all"``, used when ``to_onehot_y=True``.
        active_classes_soft: ``"all"`` (default) or ``"present"``, used otherwise.
        threshold: a class is present where the target exceeds it, in ``[0, 1)`` (default 0.01).
        reduction: ``"mean"`` (default): the combination above, a scalar. ``"none"``: the loss per class with
            MONAI's ``DiceLoss`` shape, ``(C, 1, 1[, 1])``, for the per-batch level (``batch=True``), or per image
            and class, ``(B, C, 1, 1[, 1])``, for the per-image/per-class levels (``batch=False``); class weights
            applied, inactive entries 0; needs a single reduction level. ``"sum"``: the sum of that tensor.
        smooth: ``s`` added to the numerator and the denominator of the Tversky index; default 1e-3 as in JDTLoss
            HEAD (it was 1.0 before March 2024). The loss stays exactly 0 at ``input == target`` for any ``s``.
        batch: MONAI-style switch: True is the per-batch level (``reduction_weights=(1, 0, 0)``), False the per-image
            level (``(0, 1, 0)``).
        per_image: alias from the older JDTLoss API: True is ``(0, 1, 0)``, False ``(1, 0, 0)``.
        reduction_weights: ``(mIoU^D, mIoU^I, mIoU^C)`` weights of the three levels. Default (when none of ``batch``,
            ``per_image`` and ``reduction_weights`` is given): ``(1, 0, 0)``, the per-batch loss of JDTLoss.
        ignore_index: with a label-map target, voxels with this value are removed from both prediction and target.

    Raises:
        ValueError: incompatible activations, a parameter of the wrong type, not finite or out of its range (the
            message names it), more than one of ``batch``, ``per_image`` and ``reduction_weights``,
            ``reduction="none"``/``"sum"`` with several reduction levels.

    Example:
        >>> x = torch.tensor([1.0, 0.0, 0.5, 0.0]).view(1, 1, 2, 2)
        >>> y = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
        >>> round(float(TverskyMetricLoss(alpha=0.3, beta=0.7, smooth=0)(x, y)), 4)  # 1 - 1.5 / (1.5 + 0.7 * 0.5)
        0.1892
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 1.0,
        norm: float = 1,
        log_loss: bool = False,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        active_classes_hard: str = "present",
        active_classes_soft: str = "all",
        threshold: float = 0.01,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        smooth: float = 1e-3,
        batch: Optional[bool] = None,
        per_image: Optional[bool] = None,
        reduction_weights: Optional[Sequence[float]] = None,
        ignore_index: Optional[int] = None,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        check_activation_args(sigmoid, softmax, other_act)
        check_bools(include_background=include_background, to_onehot_y=to_onehot_y, log_loss=log_loss)
        alpha, beta = check_number("alpha", alpha, low=0), check_number("beta", beta, low=0)
        if alpha + beta == 0:
            raise ValueError("alpha and beta must not both be 0 (the index would be 1 for any input).")
        gamma = check_number("gamma", gamma, low=1)
        norm = check_number("norm", norm, low=1)
        smooth = check_number("smooth", smooth, low=0)
        threshold = check_number("threshold", threshold, low=0, high=1, high_open=True)
        # case-insensitive, as JDTLoss
        active_classes_hard, active_classes_soft = (
            check_choice(name, mode.lower() if isinstance(mode, str) else mode, _ACTIVE_MODES)
            for name, mode in (("active_classes_hard", active_classes_hard),
                               ("active_classes_soft", active_classes_soft))
        )
        check_number("ignore_index", ignore_index, integer=True, allow_none=True)
        self.level_weights = _resolve_level_weights(batch, per_image, reduction_weights)
        n_levels = sum(w > 0 for w in self.level_weights)
        if self.reduction != LossReduction.MEAN.value and n_levels > 1:
            raise ValueError(
                f"reduction={self.reduction!r} needs a single reduction level, got reduction_weights="
                f"{self.level_weights}; use reduction='mean' to combine levels."
            )
        if ignore_index is not None and not to_onehot_y:
            raise ValueError("ignore_index needs a label-map target (to_onehot_y=True); use keep_mask for soft labels.")

        self.register_buffer("class_weights", check_class_weights(class_weights))

        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.norm = float(norm)
        self.log_loss = log_loss
        self.active_classes_hard = active_classes_hard
        self.active_classes_soft = active_classes_soft
        self.threshold = float(threshold)
        self.smooth = float(smooth)
        self.ignore_index = ignore_index

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, keep_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        Args:
            input: logits or probabilities, ``(B, C, H, W[, D])``.
            target: ``(B, C, H, W[, D])`` one-hot or soft labels in ``[0, 1]``, or ``(B, 1, H, W[, D])`` class
                indices with ``to_onehot_y=True``.
            keep_mask: optional ``(B, 1, H, W[, D])`` boolean (or 0/1) mask of the voxels to keep; the others are
                removed from prediction and target (the way to ignore voxels with soft labels).

        Returns:
            the loss, reduced as set by ``reduction``.

        Raises:
            ValueError: input not ``(B, C, *spatial)`` with 2 or 3 spatial dims, or not floating point; target or
                keep_mask shape mismatch; NaN/Inf; soft target outside ``[0, 1]``; label values that are not integers
                in ``[0, C)``; prediction outside ``[0, 1]`` after the activation; wrong number of class weights.
        """
        prob, target, keep = prepare_probabilities(
            input,
            target,
            include_background=self.include_background,
            to_onehot_y=self.to_onehot_y,
            sigmoid=self.sigmoid,
            softmax=self.softmax,
            other_act=self.other_act,
            ignore_index=self.ignore_index,
        )
        if keep_mask is not None:
            keep = self._merge_keep_mask(keep_mask, input, keep, prob.dtype)

        n_classes = prob.shape[1]
        cw = self.class_weights
        if cw is not None and cw.numel() != n_classes:
            raise ValueError(
                f"class_weights has {cw.numel()} entries, expected {n_classes} (one per class"
                f"{'' if self.include_background else ' after background removal'})."
            )

        x = prob.flatten(2)
        y = target.flatten(2)
        if keep is not None:
            k = keep.flatten(2)
            x, y = x * k, y * k
        # x and y were checked (or made) to lie in [0, 1]: no abs needed for their norms
        card_x, card_y = _cardinality(x, self.norm, True), _cardinality(y, self.norm, True)
        card_d = _cardinality(x - y, self.norm)
        tp = (card_x + card_y - card_d) / 2
        fp, fn = card_x - tp, card_y - tp

        present_mode = (self.active_classes_hard if self.to_onehot_y else self.active_classes_soft) == "present"
        y_max = y.detach().amax(-1)  # (B, C)
        w_d, w_i, w_c = self.level_weights

        if self.reduction != LossReduction.MEAN.value:
            if w_d > 0:
                loss = self._class_loss(tp.sum(0), fp.sum(0), fn.sum(0), cw)
                active = y_max.amax(0) > self.threshold if present_mode else torch.ones_like(loss, dtype=torch.bool)
            else:
                loss = self._class_loss(tp, fp, fn, cw)
                active = y_max > self.threshold if present_mode else torch.ones_like(loss, dtype=torch.bool)
            return reduce(loss * active, self.reduction, prob.ndim)

        total = prob.new_zeros(())
        if w_d > 0:
            loss_c = self._class_loss(tp.sum(0), fp.sum(0), fn.sum(0), cw)
            active = (y_max.amax(0) > self.threshold) if present_mode else torch.ones_like(loss_c, dtype=torch.bool)
            act = active.to(loss_c.dtype)
            total = total + w_d * (loss_c * act).sum() / act.sum().clamp_min(1)
        if w_i > 0 or w_c > 0:
            matrix = self._class_loss(tp, fp, fn, cw)
            active = (y_max > self.threshold) if present_mode else torch.ones_like(matrix, dtype=torch.bool)
            act = active.to(matrix.dtype)
            matrix = matrix * act
            if w_i > 0:
                total = total + w_i * self._masked_mean(matrix, act, 1)
            if w_c > 0:
                total = total + w_c * self._masked_mean(matrix, act, 0)
        return total

    def _class_loss(
        self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, cw: Optional[torch.Tensor]
    ) -> torch.Tensor:
        index = safe_ratio(tp + self.smooth, tp + self.alpha * fp + self.beta * fn + self.smooth)
        loss = -torch.log(index) if self.log_loss else 1.0 - index
        if self.gamma != 1:
            # clamp: rounding can give -1e-17 at a perfect match, and a fractional power of it is NaN
            loss = loss.clamp_min(0) ** self.gamma
        if cw is not None:
            loss = loss * cw.to(loss)
        return loss

    @staticmethod
    def _masked_mean(matrix: torch.Tensor, act: torch.Tensor, dim: int) -> torch.Tensor:
        """Mean over ``dim`` of the active entries, then mean over the rows/columns that have one."""
        count = act.sum(dim)
        has = (count > 0).to(matrix.dtype)
        per = matrix.sum(dim) / count.clamp_min(1)
        return (per * has).sum() / has.sum().clamp_min(1)

    @staticmethod
    def _merge_keep_mask(
        keep_mask: torch.Tensor, input: torch.Tensor, keep: Optional[torch.Tensor], dtype: torch.dtype
    ) -> torch.Tensor:
        if not isinstance(keep_mask, torch.Tensor):
            raise ValueError(f"keep_mask must be a torch.Tensor, got {type(keep_mask).__name__}.")
        expected = (input.shape[0], 1) + tuple(input.shape[2:])
        if tuple(keep_mask.shape) != expected:
            raise ValueError(f"keep_mask must have shape {expected} (B, 1, *spatial), got {tuple(keep_mask.shape)}.")
        if keep_mask.dtype != torch.bool:
            check_binary(keep_mask, "keep_mask")
        mask = keep_mask.to(device=input.device, dtype=dtype)
        return mask if keep is None else keep * mask


class JaccardMetricLoss(TverskyMetricLoss):
    """Jaccard metric loss (JML), ``1 - (TP + s) / (TP + FP + FN + s)`` with L1 counts; a metric on ``[0, 1]^D``.

    Wang, Z., Ning, X., Blaschko, M. B. (2023) "Jaccard Metric Losses: Optimizing the Jaccard Index with Soft
    Labels", NeurIPS 2023, https://arxiv.org/abs/2302.05666.

    With ``smooth=0`` this is ``1 - sum(min(x, y)) / sum(max(x, y))`` (Ruzicka distance): zero iff ``x == y``,
    symmetric, triangle inequality. For a hard label it equals the usual soft Jaccard loss, and for hard prediction
    and label ``1 - IoU``. Equal to MONAI ``DiceLoss(jaccard=True, soft_label=True, smooth_nr=2s, smooth_dr=2s)``
    (see :class:`TverskyMetricLoss` for the differences). Arguments as :class:`TverskyMetricLoss` without
    ``alpha``/``beta`` (both 1).

    Example:
        >>> loss = JaccardMetricLoss(softmax=True)
        >>> logits, soft = torch.randn(2, 3, 8, 8), torch.softmax(torch.randn(2, 3, 8, 8), 1)
        >>> bool(loss(logits, soft) >= 0)
        True
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        gamma: float = 1.0,
        norm: float = 1,
        log_loss: bool = False,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        active_classes_hard: str = "present",
        active_classes_soft: str = "all",
        threshold: float = 0.01,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        smooth: float = 1e-3,
        batch: Optional[bool] = None,
        per_image: Optional[bool] = None,
        reduction_weights: Optional[Sequence[float]] = None,
        ignore_index: Optional[int] = None,
    ) -> None:
        super().__init__(
            include_background, to_onehot_y, sigmoid, softmax, other_act, alpha=1.0, beta=1.0, gamma=gamma,
            norm=norm, log_loss=log_loss, class_weights=class_weights, active_classes_hard=active_classes_hard,
            active_classes_soft=active_classes_soft, threshold=threshold, reduction=reduction, smooth=smooth,
            batch=batch, per_image=per_image, reduction_weights=reduction_weights, ignore_index=ignore_index,
        )


class DiceSemimetricLoss(TverskyMetricLoss):
    """Dice semimetric loss (DML), ``1 - (TP + s) / (TP + (FP + FN) / 2 + s)`` with L1 counts.

    Wang, Z., Popordanoska, T., Bertels, J., Lemmens, R., Blaschko, M. B. (2023) "Dice Semimetric Losses: Optimizing
    the Dice Score with Soft Labels", MICCAI 2023, https://arxiv.org/abs/2303.16296.

    With ``smooth=0`` this is ``||x - y||_1 / (||x||_1 + ||y||_1)`` (Bray-Curtis): zero iff ``x == y`` and symmetric,
    but only a *semimetric*: ``x=(1,0), z=(1,1), y=(0,1)`` violates the triangle inequality. For a hard label it
    equals the usual soft Dice loss, and for hard prediction and label ``1 - Dice``. Equal to MONAI
    ``DiceLoss(soft_label=True, smooth_nr=2s, smooth_dr=2s)`` (see :class:`TverskyMetricLoss` for the differences).
    Arguments as :class:`TverskyMetricLoss` without ``alpha``/``beta`` (both 0.5).

    Example:
        >>> x = torch.tensor([1.0, 0.0, 0.5, 0.5]).view(1, 1, 2, 2)  # soft prediction
        >>> y = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
        >>> float(DiceSemimetricLoss(smooth=0)(x, y))  # ||x - y||_1 / (||x||_1 + ||y||_1) = 1 / 4
        0.25
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        gamma: float = 1.0,
        norm: float = 1,
        log_loss: bool = False,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        active_classes_hard: str = "present",
        active_classes_soft: str = "all",
        threshold: float = 0.01,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        smooth: float = 1e-3,
        batch: Optional[bool] = None,
        per_image: Optional[bool] = None,
        reduction_weights: Optional[Sequence[float]] = None,
        ignore_index: Optional[int] = None,
    ) -> None:
        super().__init__(
            include_background, to_onehot_y, sigmoid, softmax, other_act, alpha=0.5, beta=0.5, gamma=gamma,
            norm=norm, log_loss=log_loss, class_weights=class_weights, active_classes_hard=active_classes_hard,
            active_classes_soft=active_classes_soft, threshold=threshold, reduction=reduction, smooth=smooth,
            batch=batch, per_image=per_image, reduction_weights=reduction_weights, ignore_index=ignore_index,
        )
