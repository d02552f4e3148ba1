"""Cubical persistent homology and Betti matching (compiled numba kernel behind a small API)."""

from medloss._lazy import attach

_EXPORTS = {
    "betti_matching": ".api",
    "betti_matching_batch": ".api",
    "barcode": ".api",
    "betti_numbers": ".api",
    "BettiMatchingResult": ".api",
    "Barcode": ".api",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
