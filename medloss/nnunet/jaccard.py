"""nnU-Net v2 trainers for the Jaccard metric loss and the Dice semimetric loss, replacing nnU-Net's soft Dice.

Wang et al., "Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels", NeurIPS 2023,
https://arxiv.org/abs/2302.05666; Wang et al., "Dice Semimetric Losses: Optimizing the Dice Score with Soft Labels",
MICCAI 2023, https://arxiv.org/abs/2303.16296; original implementation https://github.com/zifuwanggg/JDTLosses.
"""

from __future__ import annotations

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss


class nnUNetTrainerMedlossJaccard(nnUNetTrainerMedloss):
    """Cross-entropy + Jaccard metric loss (JML) replacing nnU-Net's soft Dice.

    The JDTLoss recipe weights CE 0.25 and the Jaccard metric loss 0.75 (``ce_weight``, ``weight``), at every
    deep-supervision scale. Soft labels are handled exactly (L1 form), hard labels give the usual soft Jaccard.
    Region-based labels are supported (BCE and sigmoid), and the ignore label is masked in both terms.
    """

    medloss_defaults = {"weight": 0.75, "warmup_fraction": 0.0, "ce_weight": 0.25}
    medloss_ignore_kwarg = "keep_mask"

    def build_medloss_loss(self, **activation):
        from medloss.losses import JaccardMetricLoss

        return JaccardMetricLoss(**activation, batch=self.configuration_manager.batch_dice)

    def build_base_loss(self):
        return self.cross_entropy_loss(self.medloss["ce_weight"])


class nnUNetTrainerMedlossDiceSemimetric(nnUNetTrainerMedlossJaccard):
    """Cross-entropy + Dice semimetric loss (DML) replacing nnU-Net's soft Dice (weights as the Jaccard trainer)."""

    def build_medloss_loss(self, **activation):
        from medloss.losses import DiceSemimetricLoss

        return DiceSemimetricLoss(**activation, batch=self.configuration_manager.batch_dice)


_TRAINERS = [nnUNetTrainerMedlossJaccard, nnUNetTrainerMedlossDiceSemimetric]
__all__ = [c.__name__ for c in _TRAINERS] + add_epoch_variants(_TRAINERS, globals())
