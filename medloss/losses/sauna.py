"""SAUNA losses for signed soft labels in [-1, 1]: hypercube (signed) Jaccard, stable Focal-L1, and their sum.

Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
WACV 2025, https://arxiv.org/abs/2405.16815. Semantics follow the released code
(https://github.com/Oulu-IMEDS/SAUNA, commit ``dd46324``,
``mlpipeline/losses/seman_segmentation_losses.py``): the network output ``z`` is regressed to the signed soft label
``y`` through ``x = tanh(z)``; a voxel is foreground iff ``z >= 0``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from medloss.losses.jaccard import safe_ratio
from medloss.validation import (
    check_bool,
    check_bools,
    check_choice,
    check_class_weights,
    check_finite,
    check_float_input,
    check_number,
    check_range,
    check_reduction,
    check_same_shape,
    check_spatial_input,
    reduce,
)

__all__ = ["SignedJaccardLoss", "FocalL1Loss", "SAUNALoss"]

_OPPOSITE_SIGN_WEIGHTS = ("one", "clamp")


def _prepare(
    input: torch.Tensor, target: torch.Tensor, low: float, from_logits: bool, signed: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks, half-precision upcast and activation; returns ``(x, y)`` flattened to ``(B, C, N)``."""
    check_spatial_input(input, "input")
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    input = check_float_input(input)
    check_same_shape(input, target, "target must hold one soft-label channel per input channel")
    check_finite(input, "input")
    check_finite(target, "target")
    target = target.to(device=input.device, dtype=input.dtype)
    kind = "signed soft label" if signed else "soft label (signed=False)"
    check_range(target, low, 1.0, kind)
    if from_logits:
        x = torch.tanh(input) if signed else torch.sigmoid(input)
    else:
        check_range(input.detach(), low, 1.0, "input (from_logits=False)")
        x = input
    return x.flatten(2), target.flatten(2)


def _weighted_reduce(
    loss: torch.Tensor, weights: Optional[torch.Tensor], reduction: str, input_ndim: int
) -> torch.Tensor:
    """Weight the last (channel) axis of ``(C,)`` or ``(B, C)`` losses; ``mean`` is the weighted mean over channels
    and the mean over items, ``none`` gives MONAI's shape ``(C, 1, ...)`` / ``(B, C, 1, ...)``."""
    n_channels = loss.shape[-1]
    if weights is None:
        return reduce(loss, reduction, input_ndim)
    if weights.numel() != n_channels:
        raise ValueError(f"class_weights has {weights.numel()} entries, expected {n_channels} (one per channel).")
    w = weights.to(loss)
    weighted = loss * w
    if reduction == LossReduction.MEAN.value:
        return weighted.sum() / (w.sum() * (loss.numel() // n_channels))
    return reduce(weighted, reduction, input_ndim)


class SignedJaccardLoss(_Loss):
    """Hypercube Jaccard loss of SAUNA for signed soft labels in ``[-1, 1]`` and tanh outputs.

    Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
    WACV 2025, https://arxiv.org/abs/2405.16815 (``SoftJaccardLoss`` of the released code); builds on Wang, Z. et
    al. (2023) Jaccard Metric Losses, NeurIPS 2023, https://arxiv.org/abs/2302.05666.

    The prediction ``x = tanh(z)`` and the label ``y`` are split into positive and negative parts, ``x+ = max(x, 0)``,
    ``x- = max(-x, 0)``. For nonnegative ``u, v`` let ``I(u, v) = sum(u + v) - ||u - v||_1 = 2 sum(min(u, v))`` and
    ``U(u, v) = sum(u + v) + ||u - v||_1 = 2 sum(max(u, v))``. Per channel:

    * ``pooled=True`` (type 2, SAUNA's loss): ``1 - (I(x+, y+) + I(x-, y-) + s) / (U(x+, y+) + U(x-, y-) + s)``, the
      Ruzicka distance of ``(x+, x-)`` and ``(y+, y-)``: a metric on ``[-1, 1]^D``, zero iff ``x == y``, in
      ``[0, 1]``. Per voxel, same signs contribute ``min(|x|, |y|) / max(|x|, |y|)``, opposite signs ``0 / (|x|+|y|)``.
      Since ``|x+ - y+| + |x- - y-| = |x - y|``, it equals ``1 - (A - d + s) / (A + d + s)`` with
      ``A = ||x||_1 + ||y||_1`` and ``d = ||x - y||_1``.
    * ``pooled=False`` (type 1, not used by the released config): ``(1 - J+) + (1 - J-)`` with
      ``J+- = (I(x+-, y+-) + s) / (U(x+-, y+-) + s)``; in ``[0, 2]``; for hard labels ``(1 - IoU_fg) + (1 - IoU_bg)``.
    * ``signed=False``: labels in ``[0, 1]``, ``x = sigmoid(z)`` and the L1 Jaccard metric loss
      ``1 - (TP + s) / (TP + FP + FN + s)`` (TP/FP/FN as in :class:`~medloss.losses.jaccard.JaccardMetricLoss`).

    The released code switches to the unsigned branch whenever the label minimum over the batch is ``>= 0`` (a batch
    without background would silently change activation and loss); here the branch is fixed by ``signed`` and an
    unsigned label in signed mode is simply a label without negative part. Sums run over the whole batch
    (``batch=True``, as released) or per image.

    Args:
        signed: True (default): labels in ``[-1, 1]`` and tanh; False: labels in ``[0, 1]`` and sigmoid.
        pooled: True (default): type 2 (foreground and background pooled); False: type 1. Signed mode only.
        from_logits: True (default): the input holds logits ``z`` and the activation (tanh / sigmoid) is applied;
            False: the input already lies in ``[-1, 1]`` (signed) or ``[0, 1]`` (unsigned).
        class_weights: one nonnegative weight per channel (the released code's ``[1, secondary_weight, ...]``).
        reduction: ``"mean"`` (default): weighted mean over channels (and images); ``"sum"``: weighted sum (the
            released multi-class total with ``class_weights=[1, secondary_weight, ...]``); ``"none"``: the weighted
            loss per channel with MONAI's ``DiceLoss`` shapes, ``(C, 1, 1[, 1])`` (``batch=True``) or
            ``(B, C, 1, 1[, 1])`` (``batch=False``).
        smooth: ``s`` added to the numerator and the denominator; None (default) uses the released value: 0 for type
            2, 1e-8 for type 1 and the unsigned loss. The released code adds 1e-8 to the type-1 denominator only, so an
            empty foreground in prediction and label scores 1 there; here it scores 0 (difference ~1e-8 / U
            otherwise). ``0 / 0`` (prediction and label 0 everywhere) counts as a perfect match.
        batch: True (default): sums over the whole batch (as released); False: one loss per image.

    Raises:
        ValueError: ``pooled=False`` with ``signed=False``; a switch that is not a bool; bad ``class_weights``,
            ``smooth`` (``None`` or a finite number ``>= 0``) or ``reduction``.

    Example:
        >>> import torch
        >>> x = torch.tensor([0.5, -0.5]).view(1, 1, 1, 2)
        >>> float(SignedJaccardLoss(from_logits=False)(x, x)), float(SignedJaccardLoss(from_logits=False)(x, -x))
        (0.0, 1.0)
    """

    def __init__(
        self,
        signed: bool = True,
        pooled: bool = True,
        from_logits: bool = True,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        smooth: Optional[float] = None,
        batch: bool = True,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        check_bools(signed=signed, pooled=pooled, from_logits=from_logits, batch=batch)
        if not signed and not pooled:
            raise ValueError("pooled=False (type 1) splits signed labels; it has no meaning with signed=False.")
        smooth = check_number("smooth", smooth, low=0, allow_none=True)
        self.signed = bool(signed)
        self.pooled = bool(pooled)
        self.from_logits = bool(from_logits)
        self.smooth = float(smooth) if smooth is not None else (0.0 if (signed and pooled) else 1e-8)
        self.batch = bool(batch)
        self.register_buffer("class_weights", check_class_weights(class_weights))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits (or activations with ``from_logits=False``), ``(B, C, H, W[, D])``.
            target: soft labels, ``(B, C, H, W[, D])``, in ``[-1, 1]`` (or ``[0, 1]`` with ``signed=False``).
                With the SAUNA loader layout ``[hard, soft]`` pass the soft channel(s) only.

        Raises:
            ValueError: shape mismatch, NaN/Inf, target (or activations) outside the allowed range, input that is
                not floating point or not 2D/3D.
        """
        x, y = _prepare(input, target, -1.0 if self.signed else 0.0, self.from_logits, self.signed)
        return _weighted_reduce(self._per_channel(x, y), self.class_weights, self.reduction, input.ndim)

    def _per_channel(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unweighted loss of activations ``x`` and labels ``y`` (``(B, C, N)``): ``(C,)``, or ``(B, C)`` per image."""
        dims = (0, 2) if self.batch else (2,)
        s = self.smooth
        if not self.signed:
            sum_x, sum_y, diff = x.sum(dims), y.sum(dims), (x - y).abs().sum(dims)
            tp = (sum_x + sum_y - diff) / 2
            loss = 1.0 - safe_ratio(tp + s, sum_x + sum_y - tp + s)
        else:
            diff = (x - y).abs().sum(dims)
            if self.pooled:
                # |x+ - y+| + |x- - y-| = |x - y| for any signs, so the pooled sums only need three L1 norms
                total = x.abs().sum(dims) + y.abs().sum(dims)
                loss = 1.0 - safe_ratio(total - diff + s, total + diff + s)
            else:
                xp, yp = torch.relu(x), torch.relu(y)
                sum_p, diff_p = (xp + yp).sum(dims), (xp - yp).abs().sum(dims)
                sum_n = x.abs().sum(dims) + y.abs().sum(dims) - sum_p
                diff_n = diff - diff_p
                loss = (1.0 - safe_ratio(sum_p - diff_p + s, sum_p + diff_p + s)) + (
                    1.0 - safe_ratio(sum_n - diff_n + s, sum_n + diff_n + s)
                )
        return loss


class FocalL1Loss(_Loss):
    """Stable Focal-L1 loss of SAUNA: an L1 regression of ``tanh(z)`` to signed soft labels, focal on correct signs.

    Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
    WACV 2025, https://arxiv.org/abs/2405.16815 (``SFLoss``, ``loss_type=1``, of the released code).

    Per voxel, with ``x = tanh(z)`` and ``e = |x - y|``: weight ``w = alpha * e ** beta`` where ``x`` and ``y`` have
    strictly the same sign, else ``w = 1`` (``opposite_sign_weight="one"``, SAUNA) or ``max(alpha * e ** beta, 1)``
    (``"clamp"``, the SiNGR precursor); ``w`` is multiplied by ``pos_weight`` where ``y > 0``. The loss per channel is
    the mean of ``w * e`` over the batch and all spatial voxels. The weight is not detached by default (as released):
    same-sign voxels then contribute ``2 e^2`` (gradient ``4 e``) and wrong-sign voxels a constant-slope ``e``.

    The released code averages over dims ``(0, 2, 3)`` only, so on 3D input it returns ``W`` times the voxel mean;
    this implementation takes the true voxel mean in 2D and 3D (that 5-D reduction bug is not reproduced).

    Args:
        alpha: focal scale ``alpha > 0`` (default 2).
        beta: focal exponent ``beta > 0`` (default 1).
        pos_weight: extra weight ``>= 0`` of voxels with a positive label (default 1).
        detach_weight: stop the gradient through ``w`` (SiNGR, SAUNA ``loss_type=0``); default False (SAUNA).
        opposite_sign_weight: ``"one"`` (default, SAUNA) or ``"clamp"``, see above.
        from_logits: True (default): apply tanh to the input; False: the input already lies in ``[-1, 1]``.
        class_weights: one nonnegative weight per channel; ``"mean"`` is ``sum_c w_c l_c / sum_c w_c`` (the released
            code's ``[1, secondary_weight, ...]``, which crashes there for several channels).
        reduction: ``"mean"`` (default), ``"sum"``, or ``"none"``: the weighted loss per image and channel,
            ``(B, C, 1, 1[, 1])`` (MONAI's ``DiceLoss`` shape; its batch mean is the released per-channel value).

    Raises:
        ValueError: ``alpha``/``beta`` not finite and ``> 0``, ``pos_weight`` not finite and ``>= 0``, unknown
            ``opposite_sign_weight``, a switch that is not a bool, bad ``class_weights`` or ``reduction``.

    Example:
        >>> import torch
        >>> x, y = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.25)
        >>> float(FocalL1Loss(from_logits=False)(x, y))  # same sign: (2 * 0.25) * 0.25
        0.125
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 1.0,
        pos_weight: float = 1.0,
        detach_weight: bool = False,
        opposite_sign_weight: str = "one",
        from_logits: bool = True,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        alpha = check_number("alpha", alpha, low=0, low_open=True)
        beta = check_number("beta", beta, low=0, low_open=True)
        pos_weight = check_number("pos_weight", pos_weight, low=0)
        check_bool("detach_weight", detach_weight)
        check_choice("opposite_sign_weight", opposite_sign_weight, _OPPOSITE_SIGN_WEIGHTS)
        check_bool("from_logits", from_logits)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.pos_weight = float(pos_weight)
        self.detach_weight = bool(detach_weight)
        self.opposite_sign_weight = opposite_sign_weight
        self.from_logits = bool(from_logits)
        self.register_buffer("class_weights", check_class_weights(class_weights))

    def _per_channel(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unweighted loss of activations ``x`` and labels ``y`` (``(B, C, N)``) per image and channel, ``(B, C)``."""
        err = (x - y).abs()
        if self.beta == 1.0:
            focal = self.alpha * err
        else:
            # e ** beta with a zero gradient at e = 0 (a plain pow has an infinite slope there when beta < 1)
            nonzero = err > 0
            focal = self.alpha * torch.where(nonzero, torch.where(nonzero, err, 1.0) ** self.beta, 0.0)
        same_sign = torch.sign(x) * torch.sign(y) > 0
        other = 1.0 if self.opposite_sign_weight == "one" else focal.clamp_min(1.0)
        weight = torch.where(same_sign, focal, other)
        if self.pos_weight != 1.0:
            weight = weight * torch.where(y > 0, torch.full_like(y, self.pos_weight), torch.ones_like(y))
        if self.detach_weight:
            weight = weight.detach()
        return (weight * err).mean(-1)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits (or ``tanh`` outputs with ``from_logits=False``), ``(B, C, H, W[, D])``.
            target: signed soft labels in ``[-1, 1]``, ``(B, C, H, W[, D])``.

        Raises:
            ValueError: shape mismatch, NaN/Inf, target (or activations) outside ``[-1, 1]``, input that is not
                floating point or not 2D/3D.
        """
        x, y = _prepare(input, target, -1.0, self.from_logits, True)
        return _weighted_reduce(self._per_channel(x, y), self.class_weights, self.reduction, input.ndim)


class SAUNALoss(_Loss):
    """Full SAUNA training loss: ``FocalL1(tanh z, y) + distance_weight * SignedJaccard(tanh z, y)``.

    Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
    WACV 2025, https://arxiv.org/abs/2405.16815 (``distancesjm-sfl1`` of the released code, config values as
    defaults). Both terms pool over the whole batch; see :class:`FocalL1Loss` (whose 3D reduction is the true voxel
    mean, not the released ``W``-times-larger value) and :class:`SignedJaccardLoss` (type 2, signed). Several
    channels (one signed channel per class, one-vs-rest) are supported here; the released code is wired for one.

    Args:
        alpha: Focal-L1 scale (default 2).
        beta: Focal-L1 exponent (default 1).
        pos_weight: Focal-L1 weight of positive-label voxels (default 1).
        distance_weight: ``lambda`` of the Jaccard term (default 1.0 as in the released config; the code's fallback
            is 0.5).
        detach_weight: see :class:`FocalL1Loss` (default False).
        opposite_sign_weight: see :class:`FocalL1Loss` (default ``"one"``).
        pooled: see :class:`SignedJaccardLoss` (default True, type 2).
        from_logits: True (default): the input holds logits; False: ``tanh`` outputs in ``[-1, 1]``.
        class_weights: one nonnegative weight per channel, used by both terms (weighted mean over channels).
        reduction: ``"mean"`` (default), ``"sum"``, or ``"none"``: the weighted loss per channel
            ``(C, 1, 1[, 1])`` (``batch=True``) or per image and channel ``(B, C, 1, 1[, 1])`` (``batch=False``),
            MONAI's ``DiceLoss`` shapes.
        batch: True (default): the Jaccard sums run over the whole batch; False: per image.

    Raises:
        ValueError: bad parameters (see the two losses) or a ``distance_weight`` that is not finite and ``>= 0``.

    Example:
        >>> import torch
        >>> logits, soft_label = torch.randn(2, 1, 16, 16), torch.tanh(torch.randn(2, 1, 16, 16))
        >>> SAUNALoss()(logits, soft_label).shape
        torch.Size([])
        >>> SAUNALoss(reduction="none", batch=False)(logits, soft_label).shape
        torch.Size([2, 1, 1, 1])
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 1.0,
        pos_weight: float = 1.0,
        distance_weight: float = 1.0,
        detach_weight: bool = False,
        opposite_sign_weight: str = "one",
        pooled: bool = True,
        from_logits: bool = True,
        class_weights: Optional[Union[Sequence[float], torch.Tensor]] = None,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        batch: bool = True,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        distance_weight = check_number("distance_weight", distance_weight, low=0)
        self.distance_weight = float(distance_weight)
        self.from_logits = bool(from_logits)
        self.batch = bool(batch)
        self.focal_l1 = FocalL1Loss(
            alpha, beta, pos_weight, detach_weight, opposite_sign_weight, from_logits, reduction="none"
        )
        self.signed_jaccard = SignedJaccardLoss(
            signed=True, pooled=pooled, from_logits=from_logits, reduction="none", batch=batch
        )
        self.register_buffer("class_weights", check_class_weights(class_weights))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits (or ``tanh`` outputs with ``from_logits=False``), ``(B, C, H, W[, D])``.
            target: SAUNA signed soft labels in ``[-1, 1]``, ``(B, C, H, W[, D])``.

        Raises:
            ValueError: as :class:`FocalL1Loss` and :class:`SignedJaccardLoss`.
        """
        x, y = _prepare(input, target, -1.0, self.from_logits, True)
        focal = self.focal_l1._per_channel(x, y)  # (B, C)
        if self.batch:
            focal = focal.mean(0)  # equal voxel counts per image: the batch mean is the pooled voxel mean
        jaccard = self.signed_jaccard._per_channel(x, y)
        total = focal + self.distance_weight * jaccard
        return _weighted_reduce(total, self.class_weights, self.reduction, input.ndim)
