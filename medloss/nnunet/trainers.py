"""nnU-Net v2 trainers, one small subclass per medloss method.

Every trainer keeps nnU-Net's network, data pipeline, deep supervision and validation, and changes only the loss
(``_build_loss``), the nnU-Net way. Use them with ``-tr NAME`` after ``export nnUNet_extTrainer=$(medloss nnunet
path)``, or through ``medloss nnunet train``.

Hyperparameters
---------------
Each trainer documents its defaults in ``medloss_defaults``. Override them without writing a class:

* in a plans configuration: add ``"medloss": {"weight": 0.5, ...}`` to a configuration of ``nnUNetPlans.json``
  (e.g. ``{"inherits_from": "3d_fullres", "medloss": {...}}``; no re-preprocessing is needed). The same dict accepts
  nnU-Net's own schedule attributes ``num_epochs``, ``num_iterations_per_epoch``, ``num_val_iterations_per_epoch``,
  ``initial_lr``, ``weight_decay``, ``save_every``, ``oversample_foreground_percent``;
* or with environment variables ``MEDLOSS_<NAME>`` (``MEDLOSS_WEIGHT=0.5``; JSON values for lists).

The values in force and where they came from are written to the training log. Published settings are also offered
as name variants (``nnUNetTrainerMedlossMIPMultiAxis``), and every trainer comes with nnU-Net's epoch variants
(``nnUNetTrainerMedlossMIP_100epochs``), which keep results folders apart.
"""

from __future__ import annotations

from torch import nn

from medloss.nnunet.base import _MaskedBCE, _Scaled, add_epoch_variants, nnUNetTrainerMedloss


# ---------------------------------------------------------------------------------------------------------------
class nnUNetTrainerMedlossMIP(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x MIP loss (SPOCKMIP, Radhakrishna et al. 2024) on the full-resolution output.

    SPOCKMIP combines a voxel Focal Tversky loss (0.7) with the MIP loss (0.3); in nnU-Net the voxel term is
    nnU-Net's Dice+CE, and the MIP term is added with ``weight`` (default 0.3/0.7 = 0.43, the paper's ratio).
    ``axes`` are spatial axes of the ``(B, C, *spatial)`` patch. nnU-Net's readers return arrays in SimpleITK's
    ``(z, y, x)`` order, so the default ``[0]`` is the slice axis: SPOCKMIP's single-axis (axial MIP) setting for
    data whose plans keep ``transpose_forward = [0, 1, 2]``; check your plans when the spacing is anisotropic.
    """

    medloss_defaults = {"weight": 0.3 / 0.7, "warmup_fraction": 0.0, "axes": [0], "axis_reduction": "sum"}
    medloss_full_resolution_only = True

    def build_medloss_loss(self, **activation):
        from medloss.losses import MIPLoss

        axes = [int(a) for a in self.medloss["axes"]]
        # the MIP term alone: nnU-Net's Dice+CE already is the voxel term
        return MIPLoss(**activation, axes=axes, axis_reduction=self.medloss["axis_reduction"], voxel_weight=0.0,
                       mip_weight=1.0)


class nnUNetTrainerMedlossMIPMultiAxis(nnUNetTrainerMedlossMIP):
    """SPOCKMIP's multi-axis setting: MIPs along all three patch axes, summed."""

    medloss_defaults = {**nnUNetTrainerMedlossMIP.medloss_defaults, "axes": [0, 1, 2]}


class nnUNetTrainerMedlossJaccard(nnUNetTrainerMedloss):
    """Cross-entropy + Jaccard metric loss (JML, Wang et al. NeurIPS 2023) replacing nnU-Net's soft Dice.

    The JDTLoss recipe weights CE 0.25 and the Jaccard metric loss 0.75 (``ce_weight``, ``weight``). Soft labels are
    handled exactly (L1 form), hard labels give the usual soft Jaccard. The ignore label is masked.
    """

    medloss_defaults = {"weight": 0.75, "warmup_fraction": 0.0, "ce_weight": 0.25}
    medloss_ignore_kwarg = "keep_mask"
    region_base = "bce"

    def _metric_loss(self, **activation):
        from medloss.losses import JaccardMetricLoss

        return JaccardMetricLoss(**activation, batch=self.configuration_manager.batch_dice)

    def build_medloss_loss(self, **activation):
        return self._metric_loss(**activation)

    def build_base_loss(self):
        from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

        lm = self.label_manager
        if lm.has_regions:
            ce: nn.Module = _MaskedBCE(lm.ignore_label is not None)
        else:
            ce = RobustCrossEntropyLoss(ignore_index=lm.ignore_label if lm.ignore_label is not None else -100)
        return self.deep_supervised(_Scaled(ce, float(self.medloss["ce_weight"])))


class nnUNetTrainerMedlossDiceSemimetric(nnUNetTrainerMedlossJaccard):
    """Cross-entropy + Dice semimetric loss (DML, Wang et al. MICCAI 2023) replacing nnU-Net's soft Dice."""

    def _metric_loss(self, **activation):
        from medloss.losses import DiceSemimetricLoss

        return DiceSemimetricLoss(**activation, batch=self.configuration_manager.batch_dice)


class nnUNetTrainerMedlossBettiMatching(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x Betti matching loss (Stucki et al. ICML 2023) on the full-resolution output.

    ``weight`` 0.5 is the Dice+Betti-matching setting of the papers' code (alpha). The matching runs on CPU threads
    (``num_workers``, default: all cores); ``subpatch_size`` restricts it to one random sub-patch per instance, and
    ``warmup_fraction`` starts the term after that fraction of the epochs (topology of a random prediction is
    noise). The training log reports the term's time per iteration.
    """

    medloss_defaults = {"weight": 0.5, "warmup_fraction": 0.0, "subpatch_size": None, "num_workers": None,
                        "filtration": "superlevel"}
    medloss_full_resolution_only = True

    def build_medloss_loss(self, **activation):
        from medloss.losses import BettiMatchingLoss

        return BettiMatchingLoss(**activation, filtration=self.medloss["filtration"],
                                 subpatch_size=self.medloss["subpatch_size"], num_workers=self.medloss["num_workers"])


_METHOD_TRAINERS = [
    nnUNetTrainerMedlossMIP, nnUNetTrainerMedlossMIPMultiAxis, nnUNetTrainerMedlossJaccard,
    nnUNetTrainerMedlossDiceSemimetric, nnUNetTrainerMedlossBettiMatching,
]
__all__ = ["nnUNetTrainerMedloss"] + [c.__name__ for c in _METHOD_TRAINERS] + add_epoch_variants(_METHOD_TRAINERS,
                                                                                                   globals())

# methods whose trainers need more than a loss swap (group files, soft labels, multi-rater data, an extractor)
from medloss.nnunet import trainers_fairness, trainers_impact, trainers_pulaski, trainers_sauna  # noqa: E402
from medloss.nnunet.trainers_fairness import *  # noqa: E402,F401,F403
from medloss.nnunet.trainers_impact import *  # noqa: E402,F401,F403
from medloss.nnunet.trainers_pulaski import *  # noqa: E402,F401,F403
from medloss.nnunet.trainers_sauna import *  # noqa: E402,F401,F403

__all__ += [n for m in (trainers_fairness, trainers_impact, trainers_pulaski, trainers_sauna) for n in m.__all__
            if n.startswith("nnUNetTrainer")]
