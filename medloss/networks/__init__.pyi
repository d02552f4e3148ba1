"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

from .probabilistic_unet import ProbabilisticUNet as ProbabilisticUNet
# frozen feature extractors of the IMPACT losses (local TorchScript files)
from .impact_extractor import IMPACTExtractor as IMPACTExtractor
from .impact_extractor import resolve_model_path as resolve_model_path
from .mean_prediction import MeanPredictionNet as MeanPredictionNet
