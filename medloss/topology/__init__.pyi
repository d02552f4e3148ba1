"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

from .api import betti_matching as betti_matching
from .api import betti_matching_batch as betti_matching_batch
from .api import barcode as barcode
from .api import betti_numbers as betti_numbers
from .api import BettiMatchingResult as BettiMatchingResult
from .api import Barcode as Barcode
from .api import check_connectivity as check_connectivity
from .api import t_construction_grid as t_construction_grid
from .api import default_num_workers as default_num_workers
