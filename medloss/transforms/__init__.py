"""MONAI array and dictionary transforms (channel-first)."""

from medloss._lazy import attach

_EXPORTS = {
    "SAUNATransform": ".sauna",
    "SAUNATransformd": ".sauna",
    "sauna_to_label": ".sauna",
    "sauna_soft_label": ".sauna",
    "LabelMIP": ".mip",
    "LabelMIPd": ".mip",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
