"""nnU-Net v2 trainers for the skeleton losses: clDice and Skeleton Recall, added to nnU-Net's Dice+CE.

Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure Segmentation", CVPR 2021,
https://arxiv.org/abs/2003.07311, original implementation https://github.com/jocpae/clDice;
:class:`medloss.losses.ClDiceLoss`.

Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving and Resource Efficient Segmentation of Thin
Tubular Structures", ECCV 2024, https://arxiv.org/abs/2404.03010, original implementation
https://github.com/MIC-DKFZ/Skeleton-Recall; :class:`medloss.losses.SkeletonRecallLoss`,
:func:`medloss.transforms.skeletonize_label`.

Skeleton Recall needs the tubed skeleton of every training patch. It is computed once per sample on the CPU, in
nnU-Net's data pipeline (the data loader's workers): :class:`SkeletonChannelTransform` appends it to the
segmentation as a second channel after all augmentation and before nnU-Net's deep-supervision downsampling, so that
every deep-supervision scale gets its own (nearest-neighbour downsampled) skeleton. The trainer's batch hooks then
route the skeleton channel to the loss and hand nnU-Net's train/validation step the label channel alone.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from torch import nn

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss

#: Why Skeleton Recall does not support region-based labels.
REGIONS_NOTE = ("Its skeleton is a label map whose tube voxels carry the class under them, which has no meaning for "
                "overlapping regions (the original implementation refuses regions too).")


# ----------------------------------------------------------------------------------------------------------------
# clDice
# ----------------------------------------------------------------------------------------------------------------
class nnUNetTrainerMedlossClDice(nnUNetTrainerMedloss):
    """Cross-entropy + soft Dice + ``weight`` x clDice (Shit et al., CVPR 2021) at every deep-supervision scale.

    Composition: ``L = CE + Dice + weight * (1 - clDice)``, where CE + Dice is nnU-Net's own compound loss
    (unchanged: foreground soft Dice, ``batch_dice`` from the plans, ignore handling, DDP) and the clDice term is
    :class:`medloss.losses.ClDiceLoss` on the softmax probabilities of the foreground classes (``sigmoid`` of every
    region for region-based datasets), with the soft skeleton of ``iterations`` (3) min/max-pool steps and
    smoothing ``smooth`` (1) as in the paper and the original implementation. The paper's loss is
    ``(1 - alpha) * Dice + alpha * clDice`` with ``alpha = 0.5`` in its experiments, i.e. equal weights for Dice and
    clDice; nnU-Net's compound weights Dice 1, so the equal weight is ``weight = 1`` (``CE + 2 * [0.5 Dice +
    0.5 clDice]``). The sums of the clDice term pool the batch when the plans' ``batch_dice`` is on (the original
    implementation sums over the whole batch), otherwise one value per sample is averaged.

    Deep supervision as nnU-Net does it: the term is applied to every output against nnU-Net's downsampled target,
    with nnU-Net's scale weights (the lowest output has weight 0).

    Difference from the clDice row of TopoMortar (Valverde et al., BMVC 2025, https://github.com/jmlipman/TopoMortar):
    there the loss is ``0.5 * (-Dice) + 0.5 * clDice`` with no cross-entropy, a Dice that includes the background
    channel, batch-global clDice sums, and deep-supervision heads upsampled to full resolution (weights ``1`` for the
    top output and ``2^-i`` normalised for the others, divided by 7) instead of downsampled targets. This trainer is
    the clDice recipe added to nnU-Net's default loss, not a replica of that row.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight: weight of the clDice term (1.0). iterations: soft-skeleton iterations (3). smooth: smoothing of
        topology precision and sensitivity (1.0). warmup_fraction: as every medloss trainer.

    Raises:
        ValueError: ``iterations`` not an integer >= 0 or ``smooth`` negative. NotImplementedError: datasets with an
        ignore label (the soft skeleton is a morphological function of the whole patch: ignored voxels cannot be
        left out of it).
    """

    medloss_defaults = {"weight": 1.0, "warmup_fraction": 0.0, "iterations": 3, "smooth": 1.0}
    medloss_supports_ignore_label = False

    def check_hyperparameters(self) -> None:
        iterations, smooth = self.medloss["iterations"], self.medloss["smooth"]
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"{type(self).__name__}: iterations must be an integer >= 0 (MEDLOSS_ITERATIONS or "
                             f"the plans 'medloss' entry), got {iterations!r}.")
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or smooth < 0:
            raise ValueError(f"{type(self).__name__}: smooth must be a number >= 0 (MEDLOSS_SMOOTH or the plans "
                             f"'medloss' entry), got {smooth!r}.")

    def build_medloss_loss(self, **activation):
        from medloss.losses import ClDiceLoss

        smooth = float(self.medloss["smooth"])
        return ClDiceLoss(iter_=int(self.medloss["iterations"]), smooth_nr=smooth, smooth_dr=smooth,
                          batch=bool(self.configuration_manager.batch_dice), **activation)


# ----------------------------------------------------------------------------------------------------------------
# Skeleton Recall
# ----------------------------------------------------------------------------------------------------------------
class SkeletonChannelTransform(SegOnlyTransform):
    """Append the tubed skeleton of a sample's label map to its segmentation, as the last channel.

    A batchgeneratorsv2 transform for nnU-Net's data pipeline (one sample at a time, on the CPU). The skeleton is
    :func:`medloss.transforms.skeletonize_label` of channel 0: the skeleton of the union of the foreground classes,
    thickened ``tube_radius`` times with a cross footprint, each tube voxel carrying the class under it.

    Args:
        tube_radius: number of cross-footprint dilations of the skeleton (2, as the original implementation).

    Shapes:
        ``segmentation`` ``(C, *spatial)`` (integer labels in channel 0) -> ``(C + 1, *spatial)``, same dtype.

    Example:
        >>> import torch
        >>> seg = torch.zeros(1, 7, 9, dtype=torch.int16)
        >>> seg[0, 3, 1:8] = 2  # a 1-pixel line of class 2 is its own skeleton
        >>> out = SkeletonChannelTransform()(segmentation=seg)["segmentation"]
        >>> out.shape, out.dtype, out[1, 3].tolist()  # the tube is cut to the foreground: the line again
        (torch.Size([2, 7, 9]), torch.int16, [0, 2, 2, 2, 2, 2, 2, 2, 0])
    """

    def __init__(self, tube_radius: int = 2):
        super().__init__()
        self.tube_radius = int(tube_radius)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params: Any) -> torch.Tensor:
        from medloss.transforms import skeletonize_label

        skeleton = skeletonize_label(segmentation[:1].numpy(), tube_radius=self.tube_radius)
        return torch.cat([segmentation, torch.from_numpy(skeleton).to(segmentation.dtype)])


def insert_skeleton_transform(transforms: ComposeTransforms, tube_radius: int = 2) -> ComposeTransforms:
    """Insert :class:`SkeletonChannelTransform` into nnU-Net's pipeline before its deep-supervision downsampling.

    nnU-Net's training and validation pipelines end with ``DownsampleSegForDSTransform`` (deep supervision on): the
    skeleton channel placed before it is downsampled with the label channel at every scale. Without deep
    supervision the transform is appended at the end.

    Args:
        transforms: the pipeline returned by ``nnUNetTrainer.get_training_transforms`` or
            ``get_validation_transforms`` (changed in place).
        tube_radius: see :class:`SkeletonChannelTransform`.

    Returns:
        ``transforms``.

    Raises:
        TypeError: ``transforms`` is not a ``ComposeTransforms`` (a trainer that changed nnU-Net's pipeline type).
    """
    if not isinstance(transforms, ComposeTransforms):
        raise TypeError(f"expected nnU-Net's ComposeTransforms pipeline, got {type(transforms).__name__}.")
    steps: List = transforms.transforms
    position = next((i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform)), len(steps))
    steps.insert(position, SkeletonChannelTransform(tube_radius))
    return transforms


class SkeletonRecallTerm(nn.Module):
    """Skeleton Recall at one deep-supervision scale, with the precomputed skeleton of that scale.

    nnU-Net calls the loss term once per scale with that scale's logits and target; the batch's skeletons (one per
    scale, routed by :class:`medloss.losses.BatchInputsLoss`) are matched to the logits by their spatial shape (two
    scales of the same shape have the same nearest-neighbour downsampled skeleton). With nnU-Net's ignore label, the
    skeleton is zeroed where the label is ignored, as in the original implementation.

    Args:
        recall: a :class:`medloss.losses.SkeletonRecallLoss` built with the dataset's activation flags.

    Shapes:
        ``forward(logits, target, skeletons, keep_mask=None)``: logits ``(B, C, *spatial)``; target ``(B, 1,
        *spatial)`` label map; skeletons a sequence of ``(B, 1, *spatial_k)`` tubed-skeleton label maps (any device);
        keep mask ``(B, 1, *spatial)`` bool. Returns the recall loss.

    Raises:
        ValueError: no skeleton has the spatial shape of the logits.
    """

    def __init__(self, recall: nn.Module):
        super().__init__()
        self.recall = recall

    def forward(self, logits: torch.Tensor, target: torch.Tensor, skeletons: Sequence[torch.Tensor],
                keep_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if isinstance(skeletons, torch.Tensor):
            skeletons = [skeletons]
        shape = (logits.shape[0], *logits.shape[2:])
        skeleton = next((s for s in skeletons if (s.shape[0], *s.shape[2:]) == shape), None)
        if skeleton is None:
            raise ValueError(f"no skeleton matches logits of shape {tuple(logits.shape)}: skeletons of shapes "
                             f"{[tuple(s.shape) for s in skeletons]}.")
        skeleton = skeleton.to(logits.device).long()
        if keep_mask is not None:
            skeleton = torch.where(keep_mask, skeleton, torch.zeros_like(skeleton))
        return self.recall(logits, target, skeleton=skeleton)


class nnUNetTrainerMedlossSkeletonRecall(nnUNetTrainerMedloss):
    """Cross-entropy + soft Dice + ``weight`` x Skeleton Recall (Kirchhoff et al., ECCV 2024).

    Composition, as the original implementation: ``L = CE + Dice + weight * (1 - recall)`` with ``weight`` 1, where
    CE + Dice is nnU-Net's own compound loss and the recall is :class:`medloss.losses.SkeletonRecallLoss` of the
    softmax probabilities of the foreground classes on the tubed skeleton of the target (smoothing 1e-5, sums pooled
    over the batch when the plans' ``batch_dice`` is on). The original implementation's loss is ``-recall``; the
    constant offset does not change training.

    The tubed skeleton is computed once per sample on the CPU, in nnU-Net's data pipeline
    (:class:`SkeletonChannelTransform`, inserted after all augmentation by :func:`insert_skeleton_transform`), and
    stored as an extra segmentation channel so that nnU-Net's deep-supervision downsampling (nearest neighbour)
    downsamples it with the label. :meth:`medloss_batch_inputs` routes the skeletons of every scale to the loss,
    :meth:`medloss_step_batch` hands nnU-Net's step the label channel alone.

    Deep supervision: every output gets CE + Dice + the recall term on its own downsampled skeleton, with nnU-Net's
    scale weights. This differs from the original implementation's default: its first nnU-Net v2 trainer kept the
    skeleton in a separate batch key (``skel``) that batchgeneratorsv2's ``DownsampleSegForDSTransform`` does not
    transform, so only the full-resolution output had a skeleton to recall; its packaged
    ``nnUNetTrainerSkeletonRecall`` adds the skeleton channel after the downsampling (recall term on the
    full-resolution output only, CE + Dice on every output). Its ``nnUNetTrainerSkeletonRecallDS`` behaves as this
    trainer.

    Ignore label: as the original implementation, the skeleton is computed through the ignored voxels (they count as
    foreground) and then zeroed where the label is ignored; CE and Dice leave them out as nnU-Net does.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight: weight of the recall term (1.0). tube_radius: dilations of the skeleton (2). warmup_fraction: as
        every medloss trainer.

    Raises:
        ValueError: ``tube_radius`` not an integer >= 0; at a step, a target without the skeleton channel.
        NotImplementedError: region-based labels.
    """

    medloss_defaults = {"weight": 1.0, "warmup_fraction": 0.0, "tube_radius": 2}
    medloss_supports_regions = False
    medloss_label_setup_note = REGIONS_NOTE
    medloss_ignore_kwarg = "keep_mask"
    medloss_batch_keywords = ("skeletons",)

    def check_hyperparameters(self) -> None:
        radius = self.medloss["tube_radius"]
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise ValueError(f"{type(self).__name__}: tube_radius must be an integer >= 0 (MEDLOSS_TUBE_RADIUS or "
                             f"the plans 'medloss' entry), got {radius!r}.")

    def build_medloss_loss(self, **activation):
        from medloss.losses import SkeletonRecallLoss

        return SkeletonRecallTerm(SkeletonRecallLoss(**activation, batch=bool(self.configuration_manager.batch_dice),
                                                     tube_radius=int(self.medloss["tube_radius"])))

    # ---- data pipeline: nnU-Net's transforms + the skeleton channel -------------------------------------------
    def get_training_transforms(self, *args, **kwargs):
        return insert_skeleton_transform(super().get_training_transforms(*args, **kwargs),
                                         int(self.medloss["tube_radius"]))

    def get_validation_transforms(self, *args, **kwargs):
        return insert_skeleton_transform(super().get_validation_transforms(*args, **kwargs),
                                         int(self.medloss["tube_radius"]))

    # ---- batch hooks -------------------------------------------------------------------------------------------
    def medloss_batch_inputs(self, batch: dict) -> dict:
        """The tubed skeletons ``(B, 1, *spatial_k)`` of every deep-supervision scale (target channel 1)."""
        target = batch["target"]
        targets = target if isinstance(target, list) else [target]
        for t in targets:
            if t.shape[1] != 2:
                raise ValueError(f"{type(self).__name__} expects targets of 2 channels (label, tubed skeleton) from "
                                 f"its data pipeline, got shape {tuple(t.shape)}: were get_training_transforms / "
                                 "get_validation_transforms overridden without insert_skeleton_transform?")
        return {"skeletons": [t[:, 1:] for t in targets]}

    def medloss_step_batch(self, batch: dict) -> dict:
        """The batch with the label channel alone as target (every deep-supervision scale)."""
        target = batch["target"]
        label = [t[:, :1] for t in target] if isinstance(target, list) else target[:, :1]
        return dict(batch, target=label)


_TRAINERS = [nnUNetTrainerMedlossClDice, nnUNetTrainerMedlossSkeletonRecall]
__all__ = ["SkeletonChannelTransform", "SkeletonRecallTerm", "insert_skeleton_transform", "REGIONS_NOTE"] + [
    c.__name__ for c in _TRAINERS] + add_epoch_variants(_TRAINERS, globals())
