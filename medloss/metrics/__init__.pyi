"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

# overlap and surface distances (nnU-Net's and MONAI's conventions)
from .overlap import overlap_metrics as overlap_metrics
from .overlap import dice as dice
from .overlap import iou as iou
from .surface import surface_metrics as surface_metrics
# every metric of one mask pair, as `medloss evaluate` reports it
from .case import binary_metrics as binary_metrics
from .case import ALL_METRICS as ALL_METRICS
# topology
from .topology import TopologyError as TopologyError
from .topology import betti_number_error as betti_number_error
from .topology import betti_matching_error as betti_matching_error
from .topology import BettiNumberErrorMetric as BettiNumberErrorMetric
from .topology import BettiMatchingErrorMetric as BettiMatchingErrorMetric
from .centerline import cldice as cldice
from .centerline import ClDiceMetric as ClDiceMetric
# rater variability
from .probabilistic import generalized_energy_distance as generalized_energy_distance
from .probabilistic import max_dice as max_dice
# fairness
from .fairness import equity_scaled_metric as equity_scaled_metric
from .fairness import EquityScaledMetric as EquityScaledMetric
