"""The machinery every medloss nnU-Net trainer shares: hyperparameters, loss wiring, schedule, epoch variants.

Method trainers live in :mod:`medloss.nnunet.trainers` (the module nnU-Net's lookup sees through the shim) and in
``trainers_<method>.py`` modules for methods that need more than a loss swap; all import from here.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from medloss.nnunet.loss_wiring import AddedTerm, NnUNetTerm, activation_kwargs

# nnU-Net attributes a "medloss" plans entry may set (schedule only: never the network or data pipeline)
TRAINER_ATTRIBUTES = (
    "num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr", "weight_decay",
    "save_every", "oversample_foreground_percent",
)
EPOCH_VARIANTS = (1, 5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)


def _parse_env(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(default, float) and isinstance(value, int):
        value = float(value)
    if default is not None and not isinstance(value, type(default)) and not (
            isinstance(default, (list, tuple)) and isinstance(value, (list, tuple))):
        raise ValueError(f"expected a value like {default!r}, got {raw!r}")
    return value


class nnUNetTrainerMedloss(nnUNetTrainer):
    """Base of the medloss trainers: nnU-Net's Dice+CE plus ``weight`` times a medloss term.

    Subclasses implement :meth:`build_medloss_loss` (return the loss constructed with the given MONAI activation
    flags) and may set ``medloss_full_resolution_only`` (apply the term to the full-resolution output only) and
    ``medloss_ignore_kwarg`` (the forward keyword through which the loss accepts a keep mask; without it a dataset
    with an ignore label is refused). Used directly it trains plain nnU-Net.
    """

    medloss_defaults: Dict[str, Any] = {"weight": 1.0, "warmup_fraction": 0.0}
    medloss_full_resolution_only = False
    medloss_ignore_kwarg: Optional[str] = None
    trainer_overrides: Dict[str, Any] = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for key, value in self.trainer_overrides.items():
            setattr(self, key, value)
        self.medloss = self._read_hyperparameters()
        self._medloss_loss: Optional[AddedTerm] = None

    # ---- hyperparameters -------------------------------------------------------------------------------------
    def _read_hyperparameters(self) -> Dict[str, Any]:
        values = dict(self.medloss_defaults)
        sources = {k: "default" for k in values}
        from_plans = dict(self.configuration_manager.configuration.get("medloss", {}) or {})
        unknown = sorted(set(from_plans) - set(values) - set(TRAINER_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in the 'medloss' entry of plans configuration '{self.configuration_name}' "
                f"for {type(self).__name__}; known: {sorted(values)} and nnU-Net's {list(TRAINER_ATTRIBUTES)}."
            )
        for key, value in from_plans.items():
            if key in TRAINER_ATTRIBUTES:
                setattr(self, key, type(getattr(self, key))(value))
                sources[key] = "plans"
            else:
                values[key], sources[key] = value, "plans"
        for key in list(values):
            env = f"MEDLOSS_{key.upper()}"
            if env in os.environ:
                try:
                    values[key] = _parse_env(os.environ[env], values[key])
                except ValueError as err:
                    raise ValueError(f"environment variable {env}: {err}") from None
                sources[key] = f"env {env}"
        self.print_to_log_file(
            f"medloss {type(self).__name__}: "
            + ", ".join(f"{k}={values[k]!r} ({sources[k]})" for k in values)
            + ", " + ", ".join(f"{k}={getattr(self, k)!r}" for k in ("num_epochs", "num_iterations_per_epoch")),
            also_print_to_console=True,
        )
        return values

    # ---- loss ------------------------------------------------------------------------------------------------
    def build_medloss_loss(self, **activation: Any) -> Optional[nn.Module]:
        """The method's loss, constructed with ``activation`` (MONAI flags matching nnU-Net's decoding)."""
        return None

    def deep_supervised(self, loss: nn.Module) -> nn.Module:
        """``loss`` wrapped for deep supervision exactly as nnU-Net wraps its own (weights, DDP special case)."""
        default = nnUNetTrainer._build_loss(self)
        if isinstance(default, DeepSupervisionWrapper):
            default.loss = loss
            return default
        return loss

    def build_base_loss(self) -> nn.Module:
        """nnU-Net's own loss (Dice+CE, or Dice+BCE for regions), deep-supervision wrapped as nnU-Net does."""
        return super()._build_loss()

    def _build_loss(self):
        base = self.build_base_loss()
        lm = self.label_manager
        loss = self.build_medloss_loss(**activation_kwargs(lm.has_regions))
        if loss is None:
            return base
        term = NnUNetTerm(loss, lm.has_regions, lm.ignore_label, self.medloss_ignore_kwarg)
        ds_weights = base.weight_factors if isinstance(base, DeepSupervisionWrapper) else None
        self._medloss_loss = AddedTerm(base, term, self.medloss["weight"], self.medloss_full_resolution_only,
                                       ds_weights)
        return self._medloss_loss

    # ---- schedule and logging --------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        if self._medloss_loss is not None:
            start = int(round(float(self.medloss.get("warmup_fraction", 0.0)) * self.num_epochs))
            enabled = self.current_epoch >= start
            if enabled != self._medloss_loss.enabled or self.current_epoch == 0:
                self.print_to_log_file(
                    f"medloss term {'on' if enabled else f'off until epoch {start} (warm-up)'}")
            self._medloss_loss.enabled = enabled

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        term = self._medloss_loss
        if term is not None and term.calls:
            self.print_to_log_file(
                f"medloss term: {1000 * term.seconds / term.calls:.1f} ms per loss call ({term.calls} calls)")
            term.seconds, term.calls = 0.0, 0


class _Scaled(nn.Module):
    def __init__(self, loss: nn.Module, factor: float):
        super().__init__()
        self.loss, self.factor = loss, factor

    def forward(self, output, target):
        return self.factor * self.loss(output, target)


class _MaskedBCE(nn.Module):
    """BCE with logits for region targets (bool one-hot), the last channel being the ignore mask if present."""

    def __init__(self, has_ignore: bool):
        super().__init__()
        self.has_ignore = has_ignore

    def forward(self, output, target):
        target = target.float()
        if not self.has_ignore:
            return nn.functional.binary_cross_entropy_with_logits(output.float(), target)
        keep = 1 - target[:, -1:]
        bce = nn.functional.binary_cross_entropy_with_logits(output.float(), target[:, :-1], reduction="none")
        return (bce * keep).sum() / (keep.sum() * bce.shape[1]).clamp_min(1)


def _epoch_variant(cls: type, epochs: int) -> type:
    name = f"{cls.__name__}_{epochs}epoch{'s' if epochs != 1 else ''}"
    doc = f"{cls.__name__} trained for {epochs} epoch{'s' if epochs != 1 else ''}."
    return type(name, (cls,), {"__module__": __name__, "__qualname__": name, "__doc__": doc,
                               "trainer_overrides": {**cls.trainer_overrides, "num_epochs": epochs}})



def add_epoch_variants(classes, namespace: dict) -> list:
    """Create nnU-Net's epoch variants of ``classes`` in the calling module's ``namespace``; return their names."""
    names = []
    for cls in classes:
        for epochs in EPOCH_VARIANTS:
            variant = _epoch_variant(cls, epochs)
            variant.__module__ = namespace["__name__"]  # pickles from the module that defines it
            namespace[variant.__name__] = variant
            names.append(variant.__name__)
    return sorted(names)
