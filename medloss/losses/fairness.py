"""Fair error-bound scaling (FEBS) of a soft Dice loss, from FairSeg.

Each sample belongs to one identity group (race, gender, language, ...). Per batch, every group's error bound
``L_g`` is measured with the soft Dice loss, the group weight is ``w_g = tanh((min_k L_k / L_g) ** gamma)``
(detached), and each sample's probabilities are multiplied by its group's weight inside the Dice loss.

Two sets of rules for the weights are offered:

``mode="faithful"`` reproduces the released FairSeg code (``FairDiceLoss`` / ``febs_loss``, commit 7ebec8d),
pitfalls included:

* ``gamma=0`` is not plain Dice: every probability map is scaled by ``tanh(1) = 0.7616``.
* The minimum runs over **all** ``num_groups`` slots and absent groups keep ``L_g = 0``, so one group missing
  from the batch makes every weight 0: the Dice term becomes the constant ``1 - s / (sum y^2 + s)`` with zero
  gradient and only cross-entropy trains (FairSeg issue #9, "fair dice loss stays at 1.0000").
* Group id ``-1`` (unknown attribute) is used as a negative index: its samples take the weight of the last group,
  and their error fills the last slot when that group is absent from the batch.
* The worst group gets the smallest weight; because the weight scales the prediction inside the Dice, the Dice
  gradient of the worst group shrinks by about ``w_g`` (the loss value rises).
* A present group with exactly zero error gets the weight ``tanh(0/0) = NaN`` and the loss is NaN, as upstream.

``mode="guarded"`` (default) keeps the formula but takes the minimum over the groups present in the batch
(across ranks under ``torch.distributed``), ignores group id ``-1`` for the error bounds (those samples get the
neutral weight ``tanh(1)`` of a group at the minimum), gives ``tanh(1)`` to everybody when a single group is
present (no collapse) and treats ``0/0`` as a ratio of 1.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch import nn
from torch.nn.modules.loss import _Loss

from medloss.validation import (
    UNKNOWN_GROUP,
    check_activation_args,
    check_bools,
    check_choice,
    check_float_input,
    check_group_ids,
    check_number,
    check_reduction,
    distributed_sum,
    prepare_input_target,
    reduce,
)

__all__ = ["FairErrorBoundScalingLoss", "febs_group_weights"]

_MODES = ("guarded", "faithful")


def febs_group_weights(
    group_errors: torch.Tensor, present: torch.Tensor, gamma: float, mode: str = "guarded"
) -> torch.Tensor:
    """Group weights ``tanh((min_k L_k / L_g) ** gamma)`` of fair error-bound scaling.

    Args:
        group_errors: ``(G,)`` error bound ``L_g`` of each group (any value where ``present`` is False).
        present: ``(G,)`` bool, whether the group has samples.
        gamma: exponent, ``>= 0``.
        mode: ``"faithful"`` (absent groups count as ``L_g = 0`` in the minimum, numpy's ``0/0 = nan``,
            ``x/0 = inf``) or ``"guarded"`` (minimum over present groups, ``0/0`` read as 1, absent groups NaN).

    Returns:
        ``(G,)`` weights, same dtype as ``group_errors``.
    """
    if mode == "faithful":
        errors = torch.where(present, group_errors, torch.zeros_like(group_errors))
        return torch.tanh((errors.min() / errors) ** gamma)
    if not bool(present.any()):
        return torch.full_like(group_errors, float("nan"))
    lowest = group_errors[present].min()
    safe = torch.where(group_errors > 0, group_errors, torch.ones_like(group_errors))
    ratio = torch.where(group_errors > 0, lowest / safe, torch.ones_like(group_errors))
    weights = torch.tanh(ratio**gamma)
    return torch.where(present, weights, torch.full_like(weights, float("nan")))


class FairErrorBoundScalingLoss(_Loss):
    """Fair error-bound scaling (FEBS) soft Dice loss, optionally combined with cross-entropy.

    Tian et al., "FairSeg: A Large-Scale Medical Image Segmentation Dataset for Fairness Learning Using Segment
    Anything Model with Fair Error-Bound Scaling", ICLR 2024. https://arxiv.org/abs/2311.02189
    (code: https://github.com/Harvard-Ophthalmology-AI-Lab/FairSeg, ``FairDiceLoss`` / ``febs_loss``).

    With ``p`` the probabilities (after the activation), ``y`` the one-hot target and ``a_b`` the group of sample
    ``b``::

        l(P, Y)  = 1 - (2 sum(P Y) + smooth_nr) / (sum(P^2) + sum(Y^2) + smooth_dr)     (FairSeg soft Dice)
        L_g      = sum_c l(p[b in g, c], y[b in g, c])          error bound of group g (pooled over its samples)
        w_g      = tanh((min_k L_k / L_g) ** gamma)              detached, re-estimated every batch
        FEBS     = mean_c l(w_{a_b} p[b, c], y[b, c])            pooled over the whole batch
        loss     = lambda_dice * FEBS + lambda_ce * CE(input, target)

    **Dice convention** (built-in, as released): squared denominators, ``smooth_nr = smooth_dr = 1e-5``,
    sums pooled over the batch (per group for ``L_g``, the whole batch for the loss; no per-sample Dice), classes
    summed for ``L_g`` and averaged (``reduction="mean"``) for the loss, background included unless
    ``include_background=False``. It is evaluated as ``(sum (p - y)^2 + smooth_dr - smooth_nr) / (sum p^2 +
    sum y^2 + smooth_dr)``, the same number without float32 cancellation when the Dice is close to 1.

    **Wrapping another Dice-type loss**: with ``base_loss`` (e.g. ``monai.losses.DiceLoss()`` or
    :class:`medloss.losses.JaccardMetricLoss`), the per-sample losses ``l_b = base_loss(p_b, y_b)`` replace the
    built-in Dice: ``L_g`` is the mean over the group's samples of ``l_b`` (averaged over its class/voxel entries; a
    constant factor cancels in the ratio), and ``FEBS = mean_b base_loss(w_{a_b} p_b, y_b)``. A loss that returns
    per-sample values (MONAI's ``reduction="none"``, ``batch=False`` shape ``(B, C, 1, ...)``, or ``(B,)``) is
    called once on the batch; any other (a scalar, e.g. the default ``reduction="mean"``, or per-class values
    pooled over the batch) is applied to each sample on its own. ``base_loss`` receives probabilities and a one-hot
    target, so it must be built without activation, one-hot conversion or background removal; its own Dice
    convention (e.g. MONAI's non-squared denominators, medloss's L1 cardinalities) applies.

    The rules for the weights are chosen by ``mode`` (see the module docstring for the released code's pitfalls):
    ``"faithful"`` is the released behaviour, ``"guarded"`` takes the minimum over present groups, ignores unknown
    ids and never collapses. In both, the worst group gets the *smallest* weight, which shrinks its Dice gradient
    (FEBS raises the loss value of the worse groups, not their gradient). Under ``torch.distributed`` the per-group
    statistics (Dice sums per class, or error sums, and sample counts) are summed over ranks before the weights are
    formed, so every rank uses the weights of the global batch; the loss itself stays local. This is a collective
    call: set ``sync_group_stats=False`` when the loss is evaluated on only some ranks. (FairSeg's SAMed fine-tuning
    on 2 GPUs computes the loss on the gathered batch, which is what the synchronised weights reproduce.)

    Deviation from the released code: the weights are cast to the dtype of the computation instead of promoting the
    Dice term to float64; half precision inputs are computed in float32.

    Args:
        include_background: if False, channel 0 is removed from the Dice term (not from the cross-entropy).
        to_onehot_y: convert a ``(B, 1, *spatial)`` label map target to one-hot.
        sigmoid: apply a sigmoid to ``input`` for the Dice term (binary cross-entropy with logits for the CE term).
        softmax: apply a softmax over channels for the Dice term (FairSeg: True).
        other_act: another callable activation for the Dice term (cross-entropy is then unavailable).
        num_groups: number of groups ``G`` (FairSeg: 3 for race and language, 2 for gender and ethnicity).
        gamma: exponent ``>= 0`` of the error-bound ratio (FairSeg default 1.0).
        mode: ``"guarded"`` (default) or ``"faithful"``.
        lambda_dice: weight of the FEBS Dice term.
        lambda_ce: weight of the (unscaled) cross-entropy term. FairSeg trains with ``lambda_dice=0.5,
            lambda_ce=0.5`` (TransUNet) or ``lambda_dice=0.8, lambda_ce=0.2`` (SAMed); the defaults (1, 0) give the
            FEBS Dice term alone. Needs ``softmax=True`` or ``sigmoid=True`` (cross-entropy is computed on the raw
            ``input`` logits).
        base_loss: optional Dice-type loss module replacing the built-in Dice, evaluated per sample (see above).
        reduction: ``"mean"`` (over classes, FairSeg), ``"sum"`` or ``"none"`` for the FEBS term; ``"none"``
            returns the per-class FEBS values with MONAI's ``DiceLoss(batch=True)`` shape ``(C, 1, 1[, 1])`` (the
            built-in Dice pools the batch), or with ``base_loss`` its per-sample values (``(B, C, 1, ...)`` as it
            returns them, or ``(B,)`` when it is applied sample by sample); it requires ``lambda_ce=0``.
        smooth_nr: numerator smoothing of the built-in Dice.
        smooth_dr: denominator smoothing of the built-in Dice.
        sync_group_stats: sum the per-group statistics over ranks when ``torch.distributed`` is initialised.

    Attributes:
        last_group_weights: ``(G,)`` detached weights of the last call (for logging). Guarded mode: NaN for groups
            absent from the (global) batch. Faithful mode: whatever the released rule gives (0/NaN on collapse).

    Shapes:
        ``input``: ``(B, C, H, W[, D])`` logits. ``target``: ``(B, C, H, W[, D])`` one-hot, or ``(B, 1, H, W[, D])``
        labels with ``to_onehot_y=True``. ``groups``: ``(B,)`` integer ids in ``[0, G)`` or ``-1``.
        Output: scalar (``"none"``: see ``reduction``).

    Raises:
        ValueError: incompatible activation options, ``gamma`` not finite and ``>= 0``, unknown ``mode`` or
            ``reduction``, ``num_groups`` not an integer ``>= 1``, negative or non-finite ``lambda_*`` / ``smooth_*``,
            ``lambda_dice = lambda_ce = 0``, a switch that is not a bool, ``lambda_ce > 0`` without
            ``softmax``/``sigmoid``, ``reduction="none"`` with ``lambda_ce > 0``, a ``base_loss`` that applies its own
            activation/one-hot/background removal; in ``forward``: bad shapes, NaN/Inf, labels outside the classes,
            group ids that are non-integer, NaN, outside ``[-1, G)`` or not one per sample.

    Example:
        >>> import torch
        >>> loss = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=3, gamma=1.0,
        ...                                  lambda_dice=0.5, lambda_ce=0.5)  # FairSeg TransUNet
        >>> logits = torch.randn(4, 3, 16, 16, requires_grad=True)
        >>> labels = torch.randint(0, 3, (4, 1, 16, 16))
        >>> race = torch.tensor([0, 2, 1, 2])  # one group id per sample, -1 for unknown
        >>> loss(logits, labels, groups=race).backward()
        >>> loss.last_group_weights.shape  # detached (G,) weights of the last call, for logging
        torch.Size([3])
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        num_groups: int = 2,
        gamma: float = 1.0,
        mode: str = "guarded",
        lambda_dice: float = 1.0,
        lambda_ce: float = 0.0,
        base_loss: Optional[nn.Module] = None,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        sync_group_stats: bool = True,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        check_activation_args(sigmoid, softmax, other_act)
        check_bools(include_background=include_background, to_onehot_y=to_onehot_y, sync_group_stats=sync_group_stats)
        check_choice("mode", mode, _MODES)
        num_groups = check_number("num_groups", num_groups, low=1, integer=True)
        gamma = check_number("gamma", gamma, low=0)
        lambda_dice = check_number("lambda_dice", lambda_dice, low=0)
        lambda_ce = check_number("lambda_ce", lambda_ce, low=0)
        if lambda_dice + lambda_ce == 0:
            raise ValueError("lambda_dice and lambda_ce must not both be 0 (the loss would be constant).")
        smooth_nr = check_number("smooth_nr", smooth_nr, low=0)
        smooth_dr = check_number("smooth_dr", smooth_dr, low=0)
        if lambda_ce > 0 and not (softmax or sigmoid):
            raise ValueError(
                "lambda_ce > 0 needs logits: set softmax=True (cross-entropy) or sigmoid=True (binary cross-entropy)."
            )
        if self.reduction == LossReduction.NONE.value and lambda_ce > 0:
            raise ValueError('reduction="none" returns the per-class FEBS term only; set lambda_ce=0.')
        if base_loss is not None:
            self._check_base_loss(base_loss)
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.num_groups = int(num_groups)
        self.gamma = float(gamma)
        self.mode = mode
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.base_loss = base_loss
        # None until the first call tells whether base_loss returns per-sample values (see _base_per_sample)
        self._base_gives_per_sample: Optional[bool] = None
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.sync_group_stats = sync_group_stats
        self.last_group_weights = torch.full((self.num_groups,), float("nan"))

    @staticmethod
    def _check_base_loss(base_loss) -> None:
        if not callable(base_loss):
            raise ValueError(f"base_loss must be a callable loss module, got {type(base_loss).__name__}.")
        for flag in ("sigmoid", "softmax", "to_onehot_y"):
            if getattr(base_loss, flag, False):
                raise ValueError(
                    f"base_loss must be built with {flag}=False: FairErrorBoundScalingLoss hands it probabilities and "
                    "a one-hot target."
                )
        if getattr(base_loss, "other_act", None) is not None:
            raise ValueError("base_loss must be built with other_act=None (activation is applied by the wrapper).")
        if getattr(base_loss, "include_background", True) is False:
            raise ValueError("set include_background on FairErrorBoundScalingLoss, not on base_loss.")

    # ------------------------------------------------------------------------------------------------------------
    def _dice_terms(self, p: torch.Tensor, y: torch.Tensor, dims) -> torch.Tensor:
        """FairSeg soft Dice loss from sums over ``dims`` (stable form, see the class docstring)."""
        err = (p - y).pow(2).sum(dims)
        den = p.pow(2).sum(dims) + y.pow(2).sum(dims) + self.smooth_dr
        return (err + (self.smooth_dr - self.smooth_nr)) / den

    def _base_per_sample(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample values of ``base_loss``: ``(B, C, 1, ...)`` / ``(B,)`` as it returns them, else ``(B,)``."""
        batch = p.shape[0]
        out = None
        if self._base_gives_per_sample is not False:
            out = self.base_loss(p, y)
            # MONAI's reduction="none", batch=False shape (B, C, 1, ...) or one value per sample: per-sample already
            if isinstance(out, torch.Tensor) and out.ndim in (1, p.ndim) and out.shape[0] == batch:
                self._base_gives_per_sample = True
                return out
            # the output's kind is fixed by the loss's flags: later steps skip the whole-batch call
            self._base_gives_per_sample = False
        # a scalar or per-class values pooled over the batch: apply the loss to each sample on its own
        if batch == 1:
            values = [out if out is not None else self.base_loss(p, y)]
        else:
            values = [self.base_loss(p[b : b + 1], y[b : b + 1]) for b in range(batch)]
        if not all(isinstance(v, torch.Tensor) for v in values):
            raise ValueError(f"base_loss must return a tensor, got {type(values[0]).__name__}.")
        return torch.stack([v.mean() for v in values])

    def _group_statistics(self, p: torch.Tensor, y: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Per-slot sums (slots ``0..G-1`` and ``G`` = unknown) of the Dice statistics, plus the sample count.

        Built-in Dice: ``(G + 1, 3 C + 1)`` with ``sum (p-y)^2``, ``sum p^2``, ``sum y^2`` per class. ``base_loss``:
        ``(G + 1, 2)`` with the sum of per-sample errors. The last column is the number of samples. Sums are
        additive, so adding them over ranks gives the statistics of the concatenated batch.
        """
        with torch.no_grad():
            if self.base_loss is None:
                dims = tuple(range(2, p.ndim))
                per_sample = torch.cat(
                    [(p - y).pow(2).sum(dims), p.pow(2).sum(dims), y.pow(2).sum(dims)], dim=1
                )  # (B, 3C)
            else:
                # mean over classes/voxels: any constant factor cancels in min_k L_k / L_g
                per_sample = self._base_per_sample(p, y).reshape(p.shape[0], -1).mean(1, keepdim=True)
            per_sample = torch.cat([per_sample, torch.ones_like(per_sample[:, :1])], dim=1).double()
            stats = torch.zeros(self.num_groups + 1, per_sample.shape[1], dtype=torch.float64, device=p.device)
            stats.index_add_(0, slot, per_sample)
        if self.sync_group_stats:
            stats = distributed_sum(stats)
        return stats

    def _group_errors(self, stats: torch.Tensor, num_classes: int) -> torch.Tensor:
        if self.base_loss is not None:
            return stats[:, 0] / stats[:, -1].clamp_min(1)
        err, psq, ysq = stats[:, :-1].reshape(-1, 3, num_classes).unbind(1)
        dice = (err + (self.smooth_dr - self.smooth_nr)) / (psq + ysq + self.smooth_dr)
        return dice.sum(1)

    def _weights(self, stats: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Per-slot weights ``(G + 1,)``; slot ``G`` is the unknown group."""
        G = self.num_groups
        counts = stats[:, -1]
        if self.mode == "faithful":
            # -1 indexes the last slot upstream: its error fills slot G-1 when group G-1 is absent.
            if counts[G - 1] == 0 and counts[G] > 0:
                stats = stats.clone()
                stats[G - 1] = stats[G]
                counts = stats[:, -1]
            errors = self._group_errors(stats, num_classes)[:G]
            weights = febs_group_weights(errors, counts[:G] > 0, self.gamma, "faithful")
            return torch.cat([weights, weights[G - 1 :]])
        errors = self._group_errors(stats, num_classes)[:G]
        weights = febs_group_weights(errors, counts[:G] > 0, self.gamma, "guarded")
        neutral = torch.tanh(torch.ones(1, dtype=weights.dtype, device=weights.device))
        return torch.cat([weights, neutral])

    # ------------------------------------------------------------------------------------------------------------
    def forward(self, input: torch.Tensor, target: torch.Tensor, groups) -> torch.Tensor:
        """
        Args:
            input: ``(B, C, H, W[, D])`` logits (probabilities only if no activation and ``lambda_ce=0``).
            target: ``(B, C, H, W[, D])`` one-hot / soft target, or ``(B, 1, H, W[, D])`` labels with
                ``to_onehot_y=True``.
            groups: ``(B,)`` group id per sample, integers in ``[0, num_groups)``, ``-1`` = unknown.

        Returns:
            The loss (scalar, or the FEBS values of ``reduction="none"``).
        """
        input = check_float_input(input)
        if input.ndim < 3:
            raise ValueError(f"input must have shape (B, C, *spatial), got {tuple(input.shape)}.")
        slot_ids = check_group_ids(groups, input.shape[0], self.num_groups, input.device)
        logits, raw_target = input, target
        p, y, _ = prepare_input_target(
            input, target, self.include_background, self.to_onehot_y, self.sigmoid, self.softmax, self.other_act
        )
        slot = torch.where(slot_ids == UNKNOWN_GROUP, torch.full_like(slot_ids, self.num_groups), slot_ids)
        stats = self._group_statistics(p, y, slot)
        slot_weights = self._weights(stats, p.shape[1])
        self.last_group_weights = slot_weights[: self.num_groups].detach().clone()

        w = slot_weights.to(p.dtype)[slot].view(-1, *([1] * (p.ndim - 1)))
        if self.base_loss is None:
            dims = (0,) + tuple(range(2, p.ndim))
            febs = reduce(self._dice_terms(w * p, y, dims), self.reduction, p.ndim)
        else:
            febs = reduce(self._base_per_sample(w * p, y), self.reduction)
        if self.lambda_ce == 0:
            return self.lambda_dice * febs
        return self.lambda_dice * febs + self.lambda_ce * self._cross_entropy(logits, raw_target)

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unscaled cross-entropy on the raw logits (all channels), as in FairSeg."""
        if self.sigmoid:
            onehot = target
            if self.to_onehot_y and logits.shape[1] > 1:
                onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1)
            return F.binary_cross_entropy_with_logits(logits, onehot.to(logits.dtype))
        if self.to_onehot_y:
            return F.cross_entropy(logits, target[:, 0].long())
        return F.cross_entropy(logits, target.to(logits.dtype))
