"""Metrics: functions on arrays plus MONAI-style cumulative metric classes."""

from medloss._lazy import attach

_EXPORTS = {
    # topology
    "betti_number_error": ".topology",
    "betti_matching_error": ".topology",
    "BettiNumberErrorMetric": ".topology",
    "BettiMatchingErrorMetric": ".topology",
    "cldice": ".centerline",
    "ClDiceMetric": ".centerline",
    # rater variability
    "generalized_energy_distance": ".probabilistic",
    "max_dice": ".probabilistic",
    # fairness
    "equity_scaled_metric": ".fairness",
    "EquityScaledMetric": ".fairness",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
