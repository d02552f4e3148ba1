"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

from .sauna import SAUNATransform as SAUNATransform
from .sauna import SAUNATransformd as SAUNATransformd
from .sauna import SAUNADecode as SAUNADecode
from .sauna import SAUNADecoded as SAUNADecoded
from .sauna import sauna_to_label as sauna_to_label
from .sauna_kernels import sauna_soft_label as sauna_soft_label
from .mip import LabelMIP as LabelMIP
from .mip import LabelMIPd as LabelMIPd
from .skeleton import skeletonize_label as skeletonize_label
from .skeleton import SkeletonizeLabel as SkeletonizeLabel
from .skeleton import SkeletonizeLabeld as SkeletonizeLabeld
