"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

# soft-label Jaccard / Dice (JDTLoss semantics)
from .jaccard import JaccardMetricLoss as JaccardMetricLoss
from .jaccard import DiceSemimetricLoss as DiceSemimetricLoss
from .jaccard import TverskyMetricLoss as TverskyMetricLoss
# SAUNA
from .sauna import SignedJaccardLoss as SignedJaccardLoss
from .sauna import FocalL1Loss as FocalL1Loss
from .sauna import SAUNALoss as SAUNALoss
# topology
from .betti import BettiMatchingLoss as BettiMatchingLoss
# vessel continuity (SPOCKMIP)
from .focal_tversky import FocalTverskyLoss as FocalTverskyLoss
from .mip import MIPLoss as MIPLoss
# rater variability (PULASki)
from .set_distances import SinkhornDistanceLoss as SinkhornDistanceLoss
from .set_distances import EnergyDistanceLoss as EnergyDistanceLoss
from .pulaski import PULASkiLoss as PULASkiLoss
# fairness (FairSeg)
from .fairness import FairErrorBoundScalingLoss as FairErrorBoundScalingLoss
# per-batch inputs besides (input, target), for MONAI engines and nnU-Net trainers
from .batch_inputs import BatchInputsLoss as BatchInputsLoss
# weighted sum of losses (MONAI bundles)
from .combination import WeightedSumLoss as WeightedSumLoss
# semantic features (IMPACT)
from .impact import IMPACTLoss as IMPACTLoss
from .impact import IMPACTSynthLoss as IMPACTSynthLoss
# centerline Dice (clDice) and Skeleton Recall
from .cldice import ClDiceLoss as ClDiceLoss
from .cldice import DiceClDiceLoss as DiceClDiceLoss
from .skeleton_recall import SkeletonRecallLoss as SkeletonRecallLoss
