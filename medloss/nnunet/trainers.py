"""Every medloss nnU-Net trainer in one namespace: the module nnU-Net's ``nnUNet_extTrainer`` lookup sees.

The shim ``ext_trainers/medloss_nnunet_trainers.py`` re-exports this module; the classes themselves live in one module
per method family (:mod:`medloss.nnunet.mip`, :mod:`~medloss.nnunet.jaccard`, :mod:`~medloss.nnunet.betti`,
:mod:`~medloss.nnunet.fairness`, :mod:`~medloss.nnunet.sauna`, :mod:`~medloss.nnunet.pulaski`,
:mod:`~medloss.nnunet.impact`, :mod:`~medloss.nnunet.skeleton`), which is the module path they pickle with. The list
of names is :data:`medloss.nnunet.TRAINERS`.

Hyperparameters: each trainer documents its defaults in ``medloss_defaults``. Override them without writing a class:

* in a plans configuration: add ``"medloss": {"weight": 0.5, ...}`` to a configuration of ``nnUNetPlans.json``
  (e.g. ``{"inherits_from": "3d_fullres", "medloss": {...}}``; no re-preprocessing is needed). The same dict accepts
  nnU-Net's own schedule attributes ``num_epochs``, ``num_iterations_per_epoch``, ``num_val_iterations_per_epoch``,
  ``initial_lr``, ``weight_decay``, ``save_every``, ``oversample_foreground_percent``;
* or with environment variables ``MEDLOSS_<NAME>`` (``MEDLOSS_WEIGHT=0.5``; JSON values for lists).

The values in force and where they came from are written to the training log. Published settings are also offered
as name variants (``nnUNetTrainerMedlossMIPMultiAxis``), and every method trainer comes with nnU-Net's epoch variants
(``nnUNetTrainerMedlossMIP_100epochs``), which keep results folders apart.
"""

from __future__ import annotations

import importlib

from medloss.nnunet import TRAINERS

__all__ = list(TRAINERS)

_package = importlib.import_module("medloss.nnunet")
globals().update({name: getattr(_package, name) for name in __all__})
