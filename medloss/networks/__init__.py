"""Networks needed by some methods (MONAI-style ``nn.Module``)."""

from medloss._lazy import attach_stub

# the public names and their modules are listed once, in __init__.pyi next to this file
__getattr__, __dir__, __all__ = attach_stub(__name__, __file__)
