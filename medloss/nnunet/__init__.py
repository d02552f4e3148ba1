"""nnU-Net v2 integration: a trainer for every medloss method, and their registration with nnU-Net.

nnU-Net v2 (>= 2.8) looks ``-tr NAME`` up among its own trainers and then in the folders listed in the
``nnUNet_extTrainer`` environment variable. :data:`EXT_TRAINER_DIR` is such a folder: it holds only a shim that
re-exports :mod:`medloss.nnunet.trainers`, so the classes keep their real module path (they pickle, and nnU-Net's
removal of the scanned modules from ``sys.modules`` does not break them).

Two ways to use it::

    export nnUNet_extTrainer=$(medloss nnunet path)
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerMedlossMIP

    medloss nnunet train 501 3d_fullres 0 -tr nnUNetTrainerMedlossMIP     # sets the variable itself

In Python, every trainer (and its epoch variants, ``nnUNetTrainerMedlossMIP_100epochs``) is importable from this
package: ``from medloss.nnunet import nnUNetTrainerMedlossMIP``. The names load lazily: importing
``medloss.nnunet`` does not import nnunetv2 (an optional extra: ``pip install "medloss[nnunet]"``); the first access
to a trainer does.

Modules, one per method family: :mod:`~medloss.nnunet.base` (the base trainer and its hooks),
:mod:`~medloss.nnunet.loss_wiring` (how a loss meets nnU-Net's tensors), :mod:`~medloss.nnunet.mip`,
:mod:`~medloss.nnunet.jaccard`, :mod:`~medloss.nnunet.betti`, :mod:`~medloss.nnunet.fairness`,
:mod:`~medloss.nnunet.sauna`, :mod:`~medloss.nnunet.pulaski`, :mod:`~medloss.nnunet.impact`,
:mod:`~medloss.nnunet.skeleton`; :mod:`~medloss.nnunet.trainers` (all trainers in one namespace, for nnU-Net's
lookup), :mod:`~medloss.nnunet.preprocessing` (plans edits of ``sauna-preprocess`` and ``raters-preprocess``),
:mod:`~medloss.nnunet.datasets` (plans configurations for small experiments) and :mod:`~medloss.nnunet.cli`.
"""

import os
from typing import Dict, List

from medloss._lazy import attach

#: Epoch counts of the epoch variants every method trainer comes with (as nnU-Net's ``nnUNetTrainer_<N>epochs``).
EPOCH_VARIANTS = (1, 5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)

# method trainer -> module that defines it (and its epoch variants)
_METHOD_TRAINERS = {
    "nnUNetTrainerMedlossMIP": ".mip",
    "nnUNetTrainerMedlossMIPMultiAxis": ".mip",
    "nnUNetTrainerMedlossJaccard": ".jaccard",
    "nnUNetTrainerMedlossDiceSemimetric": ".jaccard",
    "nnUNetTrainerMedlossBettiMatching": ".betti",
    "nnUNetTrainerMedlossFairScaling": ".fairness",
    "nnUNetTrainerMedlossSAUNA": ".sauna",
    "nnUNetTrainerMedlossPULASki": ".pulaski",
    "nnUNetTrainerMedlossIMPACT": ".impact",
    "nnUNetTrainerMedlossClDice": ".skeleton",
    "nnUNetTrainerMedlossSkeletonRecall": ".skeleton",
}


def epoch_variant_name(trainer: str, epochs: int) -> str:
    """nnU-Net's name of ``trainer`` trained for ``epochs`` epochs, e.g. ``nnUNetTrainerMedlossMIP_100epochs``."""
    return f"{trainer}_{epochs}epoch{'s' if epochs != 1 else ''}"


def _trainer_modules() -> Dict[str, str]:
    modules = {"nnUNetTrainerMedloss": ".base"}
    for name, module in _METHOD_TRAINERS.items():
        modules[name] = module
        modules.update({epoch_variant_name(name, n): module for n in EPOCH_VARIANTS})
    return modules


_TRAINER_MODULES = _trainer_modules()
#: Every trainer name: the base trainer, the method trainers and their epoch variants.
TRAINERS = tuple(_TRAINER_MODULES)
#: The method trainers without their epoch variants.
METHOD_TRAINERS = tuple(_METHOD_TRAINERS)

EXT_TRAINER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext_trainers")

_EXPORTS = {**_TRAINER_MODULES, "preprocess_sauna": ".sauna", "preprocess_raters": ".pulaski"}
__getattr__, _dir, _lazy_all = attach(__name__, _EXPORTS)
__all__ = ["EXT_TRAINER_DIR", "EPOCH_VARIANTS", "METHOD_TRAINERS", "TRAINERS", "epoch_variant_name",
           "register_ext_trainers"] + _lazy_all


def __dir__() -> List[str]:
    return sorted(__all__)


def register_ext_trainers() -> str:
    """Prepend :data:`EXT_TRAINER_DIR` to ``nnUNet_extTrainer`` in this process (keeping the user's folders).

    nnU-Net reads the variable when it looks a trainer up, so calling this before ``run_training`` or
    ``nnUNetPredictor`` is enough.

    Returns:
        The new value of ``nnUNet_extTrainer``.
    """
    parts = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if EXT_TRAINER_DIR not in parts:
        parts.insert(0, EXT_TRAINER_DIR)
    os.environ["nnUNet_extTrainer"] = os.pathsep.join(parts)
    return os.environ["nnUNet_extTrainer"]
