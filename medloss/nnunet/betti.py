"""nnU-Net v2 trainer for the Betti matching loss: Dice+CE plus a topology term.

Stucki et al., "Topologically Faithful Image Segmentation via Induced Matching of Persistence Barcodes", ICML 2023,
https://arxiv.org/abs/2211.15272; original implementation https://github.com/nstucki/Betti-matching;
:class:`medloss.losses.BettiMatchingLoss`.
"""

from __future__ import annotations

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss


class nnUNetTrainerMedlossBettiMatching(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x Betti matching loss on the full-resolution output.

    ``weight`` 0.5 is the Dice+Betti-matching setting (alpha) of the original implementation. The matching runs on
    CPU threads (``num_workers``, default: all cores); ``subpatch_size`` restricts it to one random sub-patch per
    instance, and ``warmup_fraction`` starts the term after that fraction of the epochs (the topology of a random
    prediction is noise). The training log reports the term's time per loss call.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight (0.5), filtration (``"superlevel"``), subpatch_size (None: whole patch), num_workers (None: all
        cores), warmup_fraction.

    Raises:
        NotImplementedError: datasets with an ignore label (persistence is defined on the whole patch).
    """

    medloss_defaults = {"weight": 0.5, "warmup_fraction": 0.0, "subpatch_size": None, "num_workers": None,
                        "filtration": "superlevel"}
    medloss_full_resolution_only = True
    medloss_supports_ignore_label = False

    def build_medloss_loss(self, **activation):
        from medloss.losses import BettiMatchingLoss

        return BettiMatchingLoss(**activation, filtration=self.medloss["filtration"],
                                 subpatch_size=self.medloss["subpatch_size"], num_workers=self.medloss["num_workers"])


_TRAINERS = [nnUNetTrainerMedlossBettiMatching]
__all__ = [c.__name__ for c in _TRAINERS] + add_epoch_variants(_TRAINERS, globals())
