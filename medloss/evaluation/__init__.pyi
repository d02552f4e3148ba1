"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

from .folder import evaluate_folder as evaluate_folder
from .folder import case_metrics as case_metrics
