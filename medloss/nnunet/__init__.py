"""nnU-Net v2 integration: trainers for every medloss method and their registration.

nnU-Net v2 (>= 2.8) looks up ``-tr NAME`` among its own trainers and then in the folders listed in the
``nnUNet_extTrainer`` environment variable. :data:`EXT_TRAINER_DIR` is such a folder: it holds only a shim that
re-exports :mod:`medloss.nnunet.trainers`, so the classes keep their real module path (they pickle, and nnU-Net's
removal of the scanned modules from ``sys.modules`` does not break them).

Two ways to use it::

    export nnUNet_extTrainer=$(medloss nnunet path)
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerMedlossMIP

    medloss nnunet train 501 3d_fullres 0 -tr nnUNetTrainerMedlossMIP     # sets the variable itself

Importing this package does not import nnunetv2 (an optional extra: ``pip install "medloss[nnunet]"``);
:mod:`medloss.nnunet.trainers` does.
"""

import os

__all__ = ["EXT_TRAINER_DIR", "register_ext_trainers"]

EXT_TRAINER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext_trainers")


def register_ext_trainers() -> str:
    """Prepend :data:`EXT_TRAINER_DIR` to ``nnUNet_extTrainer`` in this process (keeping the user's folders).

    nnU-Net reads the variable when it looks a trainer up, so calling this before ``run_training`` or
    ``nnUNetPredictor`` is enough. Returns the new value.
    """
    parts = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if EXT_TRAINER_DIR not in parts:
        parts.insert(0, EXT_TRAINER_DIR)
    os.environ["nnUNet_extTrainer"] = os.pathsep.join(parts)
    return os.environ["nnUNet_extTrainer"]
