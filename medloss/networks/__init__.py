"""Networks needed by some methods (MONAI-style ``nn.Module``)."""

from medloss._lazy import attach

_EXPORTS = {
    "ProbabilisticUNet": ".probabilistic_unet",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
