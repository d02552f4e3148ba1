"""Loss functions, one module per method family: MONAI ``_Loss`` subclasses with MONAI's argument conventions.

``reduction="none"`` keeps MONAI's shapes: the Dice-type losses return what ``monai.losses.DiceLoss`` returns for
the same flags (``(B, C, 1, ...)`` per sample and class, ``(C, 1, ...)`` pooled over the batch); the set and
image-level losses return ``(B,)``. Extra per-batch inputs are keyword arguments of ``forward``; see
:class:`BatchInputsLoss` for MONAI engines and nnU-Net trainers.
"""

from medloss._lazy import attach_stub

# the public names and their modules are listed once, in __init__.pyi next to this file
__getattr__, __dir__, __all__ = attach_stub(__name__, __file__)
