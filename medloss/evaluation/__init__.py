"""Scoring folders of NIfTI (or any SimpleITK-readable) predictions against ground truth: ``medloss evaluate``."""

from medloss._lazy import attach

_EXPORTS = {
    "evaluate_folder": ".folder",
    "case_metrics": ".case_metrics",
    "surface_metrics": ".case_metrics",
    "overlap_metrics": ".case_metrics",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
