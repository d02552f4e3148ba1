"""nnU-Net v2 trainers for the MIP loss (SPOCKMIP): Dice+CE plus a maximum-intensity-projection term.

Radhakrishna et al., "SPOCKMIP: Segmentation of Vessels in MRAs with Enhanced Continuity using Maximum Intensity
Projection as Loss", 2024, https://arxiv.org/abs/2407.08655; :class:`medloss.losses.MIPLoss`.
"""

from __future__ import annotations

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss


class nnUNetTrainerMedlossMIP(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x MIP loss (SPOCKMIP) on the full-resolution output.

    SPOCKMIP combines a voxel Focal Tversky loss (0.7) with the MIP loss (0.3); in nnU-Net the voxel term is
    nnU-Net's Dice+CE, and the MIP term is added with ``weight`` (default 0.3/0.7 = 0.43, the paper's ratio).
    ``axes`` are spatial axes of the ``(B, C, *spatial)`` patch. nnU-Net's readers return arrays in SimpleITK's
    ``(z, y, x)`` order, so the default ``[0]`` is the slice axis: SPOCKMIP's single-axis (axial MIP) setting for
    data whose plans keep ``transpose_forward = [0, 1, 2]``; check your plans when the spacing is anisotropic.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight: weight of the MIP term (0.43). axes: projection axes ([0]). axis_reduction: how the per-axis
        terms combine (``"sum"``). warmup_fraction: as every medloss trainer.

    Raises:
        NotImplementedError: datasets with an ignore label (a projection has no voxel mask).
    """

    medloss_defaults = {"weight": 0.3 / 0.7, "warmup_fraction": 0.0, "axes": [0], "axis_reduction": "sum"}
    medloss_full_resolution_only = True
    medloss_supports_ignore_label = False

    def build_medloss_loss(self, **activation):
        from medloss.losses import MIPLoss

        axes = [int(a) for a in self.medloss["axes"]]
        # the MIP term alone: nnU-Net's Dice+CE already is the voxel term
        return MIPLoss(**activation, axes=axes, axis_reduction=self.medloss["axis_reduction"], voxel_weight=0.0,
                       mip_weight=1.0)


class nnUNetTrainerMedlossMIPMultiAxis(nnUNetTrainerMedlossMIP):
    """SPOCKMIP's multi-axis setting: MIPs along all three patch axes, summed."""

    medloss_defaults = {**nnUNetTrainerMedlossMIP.medloss_defaults, "axes": [0, 1, 2]}


_TRAINERS = [nnUNetTrainerMedlossMIP, nnUNetTrainerMedlossMIPMultiAxis]
__all__ = [c.__name__ for c in _TRAINERS] + add_epoch_variants(_TRAINERS, globals())
