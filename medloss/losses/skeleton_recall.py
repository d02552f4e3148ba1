"""Skeleton Recall loss: soft recall of the target's tubed skeleton.

Kirchhoff, Y. et al. (2024) "Skeleton Recall Loss for Connectivity Conserving and Resource Efficient Segmentation of
Thin Tubular Structures", ECCV 2024, https://arxiv.org/abs/2404.03010 (code:
https://github.com/MIC-DKFZ/Skeleton-Recall, ``SoftSkeletonRecallLoss``).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from medloss.transforms.skeleton import skeletonize_label
from medloss.validation import (
    check_activation_args,
    check_bools,
    check_class_labels,
    check_finite,
    check_number,
    check_range,
    check_reduction,
    distributed_sum,
    one_hot,
    prepare_probabilities,
    reduce,
)

__all__ = ["SkeletonRecallLoss"]


class SkeletonRecallLoss(_Loss):
    """Skeleton Recall loss ``1 - recall`` of the target's tubed skeleton, per foreground class.

    Kirchhoff, Y. et al. (2024) Skeleton Recall Loss for Connectivity Conserving and Resource Efficient Segmentation
    of Thin Tubular Structures, ECCV 2024, https://arxiv.org/abs/2404.03010; original code
    https://github.com/MIC-DKFZ/Skeleton-Recall.

    With ``x_c`` the predicted probability of foreground class ``c`` and ``Y_c`` the voxels of the tubed skeleton
    (:func:`medloss.transforms.skeletonize_label`) that carry class ``c``::

        rec_c = (sum x_c Y_c + smooth) / (sum Y_c + smooth),     loss_c = 1 - rec_c

    per sample and class, or per class with the sums pooled over the batch (``batch=True``, the original's
    ``batch_dice``; all-reduced over the ranks when ``torch.distributed`` is initialised). A perfect prediction
    gives 0, an empty one 1 (up to ``smooth``, for a class present in the skeleton); a class absent from the
    skeleton gives 0. The gradient is nonzero only on the tube. The original returns ``-mean_c rec_c``; ``1 - rec``
    has the same gradient and MONAI's range. The official recipe adds it with weight 1 to cross-entropy + Dice
    (e.g. with :class:`medloss.losses.WeightedSumLoss` or :class:`medloss.losses.BatchInputsLoss`).

    The tubed skeleton should be computed once per sample in the data pipeline
    (:class:`medloss.transforms.SkeletonizeLabeld`, after the spatial augmentations) and given as ``skeleton``;
    without it, the loss computes it from the target on the CPU at every call.

    The background channel is never used, as in the original (which refuses it): its "skeleton" would be every
    voxel off the foreground tube, so ``include_background=True`` with several channels raises ``ValueError``.
    A single-channel input is the foreground probability of a binary task (with ``sigmoid``); its channel is used.
    Region-based (overlapping multi-channel) targets are refused: the skeleton is that of the union of the classes
    with the classes assigned afterwards.

    Args:
        include_background: must be False for multi-channel input (see above); ignored for single-channel input.
        to_onehot_y: the target is a ``(B, 1, *spatial)`` label map of class indices. Otherwise a multi-channel
            input needs a one-hot ``(B, C, *spatial)`` target.
        sigmoid: apply a sigmoid to the input (single-channel binary segmentation).
        softmax: apply a softmax over channels to the input (the original).
        other_act: another activation applied to the input; its output must lie in ``[0, 1]``.
        batch: pool the sums over the batch (one recall per class) instead of one per sample and class.
        smooth: added to the numerator and denominator (the original trainer uses ``1e-5``), ``>= 0``.
        tube_radius: dilations of the skeleton when the loss computes it (2 in the original).
        reduction: ``"mean"`` (default) or ``"sum"`` over the per-item losses, or ``"none"``: MONAI ``DiceLoss``'s
            shapes for the foreground channels, ``(B, C', 1, 1[, 1])``, or ``(C', 1, 1[, 1])`` with ``batch=True``
            (``C' = C - 1``, or 1 for a single-channel input).

    Raises:
        ValueError: incompatible activations, ``include_background=True``, negative ``smooth``, ``tube_radius``
            not an int ``>= 0``, unknown ``reduction``.

    Example:
        >>> import torch
        >>> label = torch.zeros(1, 1, 9, 12, dtype=torch.long); label[0, 0, 3:6, 1:11] = 1
        >>> perfect = torch.cat([1 - label, label], 1).float()
        >>> loss = SkeletonRecallLoss(to_onehot_y=True)
        >>> float(loss(perfect, label)), round(float(loss(1 - perfect, label)), 4)
        (0.0, 1.0)
    """

    def __init__(
        self,
        include_background: bool = False,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        batch: bool = False,
        smooth: float = 1e-5,
        tube_radius: int = 2,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        check_activation_args(sigmoid, softmax, other_act)
        check_bools(include_background=include_background, to_onehot_y=to_onehot_y, batch=batch)
        if include_background:
            raise ValueError(
                "SkeletonRecallLoss does not use the background channel (as the original Skeleton Recall code): "
                "set include_background=False (a single-channel input is used as the foreground)."
            )
        smooth = check_number("smooth", smooth, low=0)
        tube_radius = check_number("tube_radius", tube_radius, low=0, integer=True)
        self.include_background = False
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.batch = batch
        self.smooth = smooth
        self.tube_radius = tube_radius

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, skeleton: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        Args:
            input: logits or probabilities, ``(B, C, H, W[, D])``; half precision is computed in float32.
            target: ``(B, 1, H, W[, D])`` class indices with ``to_onehot_y=True`` (or a binary map for
                single-channel input), else one-hot ``(B, C, H, W[, D])``. Used for the skeleton when
                ``skeleton`` is None, and checked against the input.
            skeleton: the precomputed tubed skeleton (:class:`medloss.transforms.SkeletonizeLabeld`): a
                ``(B, 1, H, W[, D])`` label map of class indices, or a one-hot like ``(B, C, H, W[, D])`` tensor
                with values in ``[0, 1]``. None: computed from ``target`` on the CPU.

        Returns:
            the loss, reduced as set by ``reduction``.

        Raises:
            ValueError: as :class:`medloss.losses.FocalTverskyLoss` for ``input`` and ``target``; a multi-channel
                target that is not one-hot (region-based labels); a ``skeleton`` of the wrong shape, with values
                outside ``[0, 1]`` (one-hot like) or outside ``[0, C)`` (label map), or NaN/Inf.
        """
        # the background channel is removed below, after the skeleton (whose one-hot needs every class) is built
        prob, onehot, _ = prepare_probabilities(
            input, target, True, self.to_onehot_y, self.sigmoid, self.softmax, self.other_act
        )
        n_ch = prob.shape[1]
        if skeleton is None:
            skel = self._skeleton_of(onehot, n_ch)
        else:
            skel = self._check_skeleton(skeleton, prob, n_ch)
        if n_ch > 1:
            prob, skel = prob[:, 1:], skel[:, 1:]
        skel = skel.to(prob.dtype)
        dims = list(range(2, prob.ndim))
        sums = torch.stack([(prob * skel).sum(dims), skel.sum(dims)])  # (2, B, C')
        if self.batch:
            sums = distributed_sum(sums.sum(1))  # (2, C')
        recall = (sums[0] + self.smooth) / (sums[1] + self.smooth).clamp_min(1e-8)
        # no smoothing and a class absent from the skeleton: nothing to recall, no loss
        recall = torch.where(sums[1] + self.smooth > 0, recall, torch.ones_like(recall))
        return reduce(1 - recall, self.reduction, input.ndim)

    def _skeleton_of(self, onehot: torch.Tensor, n_ch: int) -> torch.Tensor:
        """The tubed skeleton, one-hot like ``onehot``, of its label map (CPU, one sample at a time)."""
        detached = onehot.detach()
        if n_ch > 1:
            # region-based labels: overlapping channels, not a partition of the voxels
            if not bool(((detached == 0) | (detached == 1)).all()) or not bool((detached.sum(1) == 1).all()):
                raise ValueError(
                    "SkeletonRecallLoss needs a one-hot target (each voxel in exactly one class) or a label map "
                    "with to_onehot_y=True; region-based (overlapping) labels are not supported."
                )
            labels = detached.argmax(1, keepdim=True)
        else:
            labels = (detached > 0.5).to(torch.uint8)
        samples = labels.to(torch.int16 if n_ch < 2**15 else torch.int32).cpu().numpy()
        tubes = np.stack([skeletonize_label(sample, self.tube_radius) for sample in samples])
        skel = torch.from_numpy(tubes).to(device=onehot.device, dtype=torch.long)
        return skel if n_ch == 1 else one_hot(skel, n_ch)

    @staticmethod
    def _check_skeleton(skeleton: torch.Tensor, prob: torch.Tensor, n_ch: int) -> torch.Tensor:
        """``skeleton`` as a ``(B, C, *spatial)`` one-hot like tensor, checked against the input."""
        if not isinstance(skeleton, torch.Tensor):
            raise ValueError(f"skeleton must be a torch.Tensor, got {type(skeleton).__name__}.")
        if skeleton.ndim != prob.ndim or skeleton.shape[0] != prob.shape[0] or skeleton.shape[2:] != prob.shape[2:] \
                or skeleton.shape[1] not in (1, n_ch):
            raise ValueError(
                f"skeleton has shape {tuple(skeleton.shape)}, expected (B, 1, *spatial) (label map) or "
                f"(B, {n_ch}, *spatial) (one-hot like) matching input {(prob.shape[0], n_ch) + tuple(prob.shape[2:])}."
            )
        skeleton = skeleton.to(prob.device)
        if skeleton.is_floating_point():
            check_finite(skeleton, "skeleton")
        if skeleton.shape[1] == n_ch and (n_ch > 1 or skeleton.is_floating_point() or skeleton.dtype == torch.bool):
            if skeleton.dtype != torch.bool:
                check_range(skeleton, 0.0, 1.0, "one-hot like skeleton")
            return skeleton
        check_class_labels(skeleton, max(n_ch, 2), "skeleton")
        return skeleton.long() if n_ch == 1 else one_hot(skeleton, n_ch)
