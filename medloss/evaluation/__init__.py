"""Scoring folders of NIfTI (or any SimpleITK-readable) predictions against ground truth: ``medloss evaluate``."""

from medloss._lazy import attach

_EXPORTS = {
    "evaluate_folder": ".folder",
    "case_metrics": ".metrics",
    "surface_metrics": ".metrics",
    "overlap_metrics": ".metrics",
    "topology_metrics": ".metrics",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
