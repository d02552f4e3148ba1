"""Loss functions (``torch.nn.Module``, MONAI argument conventions), one module per method."""

from medloss._lazy import attach

_EXPORTS = {
    # soft-label Jaccard / Dice (JDTLoss semantics)
    "JaccardMetricLoss": ".jaccard",
    "DiceSemimetricLoss": ".jaccard",
    "TverskyMetricLoss": ".jaccard",
    # SAUNA
    "SignedJaccardLoss": ".sauna",
    "FocalL1Loss": ".sauna",
    "SAUNALoss": ".sauna",
    # topology
    "BettiMatchingLoss": ".betti",
    # vessel continuity (SPOCKMIP)
    "FocalTverskyLoss": ".focal_tversky",
    "MIPLoss": ".mip",
    # rater variability (PULASki)
    "SinkhornDistanceLoss": ".pulaski",
    "EnergyDistanceLoss": ".pulaski",
    "PULASkiLoss": ".pulaski",
    # fairness (FairSeg)
    "FairErrorBoundScalingLoss": ".fairness",
    # per-batch inputs besides (input, target), for MONAI engines and nnU-Net trainers
    "BatchInputsLoss": ".batch_inputs",
    # semantic features (IMPACT)
    "IMPACTLoss": ".impact",
    "IMPACTSynthLoss": ".impact",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
