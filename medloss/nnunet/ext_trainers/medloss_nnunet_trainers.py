# Scanned by nnU-Net when nnUNet_extTrainer points at this folder: it is imported as a top-level module and
# dropped from sys.modules afterwards, so it must hold nothing but re-exports of the real trainer modules.
from medloss.nnunet.trainers import *  # noqa: F401,F403
