"""The base of every medloss nnU-Net trainer: hyperparameters, loss hooks, per-batch loss inputs, schedule.

A method trainer is a small subclass of :class:`nnUNetTrainerMedloss` that overrides hooks, the way nnU-Net's own
trainer variants override one method each:

* :meth:`~nnUNetTrainerMedloss.check_hyperparameters` checks the method's hyperparameters at initialisation;
* :meth:`~nnUNetTrainerMedloss.build_medloss_loss` returns the method's loss, built with the MONAI activation flags
  that decode nnU-Net's logits (:func:`medloss.nnunet.loss_wiring.activation_kwargs`);
* :meth:`~nnUNetTrainerMedloss.build_base_loss` returns the loss the term is added to (default: nnU-Net's
  Dice+CE; :meth:`~nnUNetTrainerMedloss.cross_entropy_loss` for methods that replace nnU-Net's soft Dice);
* :meth:`~nnUNetTrainerMedloss.combine_losses` combines the two (default: ``base + weight * term``,
  :class:`medloss.nnunet.loss_wiring.AddedTerm`);
* :meth:`~nnUNetTrainerMedloss.medloss_batch_inputs` returns the per-batch inputs of the loss (group ids, soft
  labels, raters): the values reach the loss's ``forward`` keywords (``medloss_batch_keywords``) through
  :class:`medloss.losses.BatchInputsLoss`, the mechanism MONAI bundles use as well;
* :meth:`~nnUNetTrainerMedloss.medloss_step_batch` returns the batch nnU-Net's train/validation step sees (for
  example the target without the extra channels that carry soft labels or raters).

Label set-ups a method does not handle (region-based labels, an ignore label) are refused when the trainer is
created (``medloss_supports_regions``, ``medloss_supports_ignore_label``).

Hyperparameters are the class's ``medloss_defaults``, overridden by a ``"medloss"`` entry of the plans
configuration, then by ``MEDLOSS_<KEY>`` environment variables (JSON values); the values in force and their source
are written to the training log.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from medloss.losses import BatchInputsLoss
from medloss.nnunet import EPOCH_VARIANTS, epoch_variant_name
from medloss.nnunet.loss_wiring import AddedTerm, NnUNetTerm, activation_kwargs

__all__ = ["TRAINER_ATTRIBUTES", "nnUNetTrainerMedloss", "add_epoch_variants", "parse_env_value",
           "resolve_hyperparameters"]

#: nnU-Net attributes a "medloss" plans entry may set (schedule only: never the network or data pipeline).
TRAINER_ATTRIBUTES = (
    "num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr", "weight_decay",
    "save_every", "oversample_foreground_percent",
)


def parse_env_value(raw: str, default: Any) -> Any:
    """Parse the environment variable value ``raw`` of a hyperparameter whose default is ``default``.

    Args:
        raw: the variable's text: JSON (``0.5``, ``[0, 2]``, ``null``), a boolean word for boolean defaults
            (``1/0``, ``true/false``, ``yes/no``, ``on/off``), or a plain string.
        default: the hyperparameter's default; the parsed value must have its type (ints are accepted for floats,
            any list or tuple for lists and tuples; anything for a ``None`` default).

    Returns:
        The parsed value.

    Raises:
        ValueError: the value does not match the type of ``default``.

    Example:
        >>> parse_env_value("0.25", 1.0), parse_env_value("[0, 2]", [0]), parse_env_value("off", True)
        (0.25, [0, 2], False)
    """
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


def resolve_hyperparameters(defaults: Mapping[str, Any],
                            plans_entry: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Hyperparameter values: ``defaults``, overridden by ``plans_entry``, then by ``MEDLOSS_<KEY>`` variables.

    Args:
        defaults: ``{key: default}``; only these keys are resolved.
        plans_entry: values from the plans' ``"medloss"`` entry (keys outside ``defaults`` are ignored here).

    Returns:
        ``(values, sources)``: the values in force and, per key, ``"default"``, ``"plans"`` or ``"env MEDLOSS_KEY"``.

    Raises:
        ValueError: an environment variable whose value does not match the default's type.
    """
    values, sources = dict(defaults), {k: "default" for k in defaults}
    for key, value in plans_entry.items():
        if key in values:
            values[key], sources[key] = value, "plans"
    for key in list(values):
        env = f"MEDLOSS_{key.upper()}"
        if env in os.environ:
            try:
                values[key] = parse_env_value(os.environ[env], defaults[key])
            except ValueError as err:
                raise ValueError(f"environment variable {env}: {err}") from None
            sources[key] = f"env {env}"
    return values, sources


class nnUNetTrainerMedloss(nnUNetTrainer):
    """Base of the medloss trainers: nnU-Net's Dice+CE plus ``weight`` times a medloss term.

    Used directly it trains plain nnU-Net. Subclasses override the hooks listed in the module docstring and set
    these class attributes:

    * ``medloss_defaults``: the method's hyperparameters (every trainer has ``weight`` and ``warmup_fraction``:
      the term starts after that fraction of the epochs);
    * ``medloss_full_resolution_only``: apply the term to the full-resolution output only;
    * ``medloss_ignore_kwarg``: the ``forward`` keyword through which the loss takes a ``(B, 1, *spatial)`` keep
      mask (needed for datasets with an ignore label);
    * ``medloss_supports_regions`` / ``medloss_supports_ignore_label``: the label set-ups the method handles;
      others are refused at initialisation (``medloss_label_setup_note`` says why);
    * ``medloss_batch_keywords``: the ``forward`` keywords that :meth:`medloss_batch_inputs` fills per batch.

    Args:
        plans: nnU-Net's plans dict.
        configuration: the plans configuration.
        fold: the cross-validation fold.
        dataset_json: the dataset's ``dataset.json`` dict.
        device: the training device.

    Raises:
        ValueError: unknown keys in the plans ``"medloss"`` entry, malformed ``MEDLOSS_<KEY>`` values.
        NotImplementedError: a label set-up the trainer does not support.
    """

    medloss_defaults: Dict[str, Any] = {"weight": 1.0, "warmup_fraction": 0.0}
    medloss_full_resolution_only = False
    medloss_ignore_kwarg: Optional[str] = None
    medloss_supports_regions = True
    medloss_supports_ignore_label = True
    medloss_label_setup_note = ""
    medloss_batch_keywords: Tuple[str, ...] = ()
    trainer_overrides: Dict[str, Any] = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for key, value in self.trainer_overrides.items():
            setattr(self, key, value)
        self.medloss = self._read_hyperparameters()
        #: the combined loss (:meth:`combine_losses`), None until the loss is built or when there is no term
        self.medloss_loss: Optional[nn.Module] = None
        #: the router of the per-batch inputs (None without ``medloss_batch_keywords``)
        self.medloss_inputs: Optional[BatchInputsLoss] = None
        self.check_label_setup()
        self.check_hyperparameters()

    # ---- hyperparameters and label set-up ----------------------------------------------------------------------
    def _read_hyperparameters(self) -> Dict[str, Any]:
        from_plans = dict(self.configuration_manager.configuration.get("medloss", {}) or {})
        unknown = sorted(set(from_plans) - set(self.medloss_defaults) - set(TRAINER_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in the 'medloss' entry of plans configuration '{self.configuration_name}' "
                f"for {type(self).__name__}; known: {sorted(self.medloss_defaults)} and nnU-Net's "
                f"{list(TRAINER_ATTRIBUTES)}."
            )
        for key in TRAINER_ATTRIBUTES:
            if key in from_plans:
                setattr(self, key, type(getattr(self, key))(from_plans[key]))
        values, sources = resolve_hyperparameters(self.medloss_defaults, from_plans)
        self.print_to_log_file(
            f"medloss {type(self).__name__}: "
            + ", ".join(f"{k}={values[k]!r} ({sources[k]})" for k in values)
            + ", " + ", ".join(f"{k}={getattr(self, k)!r}" for k in ("num_epochs", "num_iterations_per_epoch")),
            also_print_to_console=True,
        )
        return values

    def check_label_setup(self) -> None:
        """Refuse region-based labels or an ignore label when the method does not handle them.

        Raises:
            NotImplementedError: naming the trainer and the unsupported set-up.
        """
        lm, name = self.label_manager, type(self).__name__
        note = f" {self.medloss_label_setup_note}" if self.medloss_label_setup_note else ""
        if lm.has_regions and not self.medloss_supports_regions:
            raise NotImplementedError(
                f"{name} does not support region-based labels (regions {list(lm.foreground_regions)} in "
                f"dataset.json).{note} Train it on a dataset with plain integer labels.")
        if lm.has_ignore_label and not self.medloss_supports_ignore_label:
            raise NotImplementedError(
                f"{name} does not support nnU-Net's ignore label ({lm.ignore_label} in dataset.json): its loss cannot "
                f"leave voxels out.{note} Train without an ignore label, or with a trainer that masks it "
                "(nnUNetTrainerMedlossJaccard, nnUNetTrainerMedlossDiceSemimetric).")

    def check_hyperparameters(self) -> None:
        """Check (and resolve, e.g. file paths) the method's hyperparameters :attr:`medloss` at initialisation.

        The default checks nothing. Raise ``ValueError`` (or ``FileNotFoundError``) with a message that names the
        hyperparameter and how to set it.
        """

    # ---- loss hooks --------------------------------------------------------------------------------------------
    def build_medloss_loss(self, **activation: Any) -> Optional[nn.Module]:
        """The method's loss, constructed with ``activation`` (MONAI flags matching nnU-Net's decoding).

        It is called as ``loss(logits, target, **keep_mask_and_batch_inputs)`` (see
        :class:`medloss.nnunet.loss_wiring.NnUNetTerm`). ``None`` (the default): no term, plain nnU-Net.
        """
        return None

    def build_base_loss(self) -> nn.Module:
        """nnU-Net's own loss (Dice+CE, or Dice+BCE for regions), deep-supervision wrapped as nnU-Net does."""
        return super()._build_loss()

    def deep_supervised(self, loss: nn.Module) -> nn.Module:
        """``loss`` wrapped for deep supervision exactly as nnU-Net wraps its own (weights, DDP special case)."""
        default = nnUNetTrainer._build_loss(self)
        if isinstance(default, DeepSupervisionWrapper):
            default.loss = loss
            return default
        return loss

    def cross_entropy_loss(self, weight: float) -> nn.Module:
        """``weight`` x nnU-Net's cross-entropy (BCE for regions) without its soft Dice, deep-supervision wrapped.

        For methods whose loss replaces nnU-Net's soft Dice. The ignore label is left out as nnU-Net leaves it out
        (the ignore index of the cross-entropy; the ignore channel of region targets).
        """
        from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

        lm = self.label_manager
        if lm.has_regions:
            ce: nn.Module = _RegionBCE(lm.has_ignore_label)
        else:
            ce = RobustCrossEntropyLoss(ignore_index=lm.ignore_label if lm.has_ignore_label else -100)
        return self.deep_supervised(_Scaled(ce, float(weight)))

    def combine_losses(self, base: nn.Module, term: nn.Module) -> nn.Module:
        """``base + weight * term`` (:class:`~medloss.nnunet.loss_wiring.AddedTerm`) with nnU-Net's scale weights.

        The result must have ``enabled`` (warm-up), ``seconds`` and ``calls`` (timing log) attributes.
        """
        ds_weights = base.weight_factors if isinstance(base, DeepSupervisionWrapper) else None
        return AddedTerm(base, term, self.medloss["weight"], self.medloss_full_resolution_only, ds_weights)

    def _build_loss(self):
        base = self.build_base_loss()
        lm = self.label_manager
        loss = self.build_medloss_loss(**activation_kwargs(lm.has_regions))
        if loss is None:
            return base
        term: nn.Module = NnUNetTerm(loss, lm.has_regions, lm.ignore_label, self.medloss_ignore_kwarg)
        if self.medloss_batch_keywords:
            term = self.medloss_inputs = BatchInputsLoss(term, {k: k for k in self.medloss_batch_keywords})
        self.medloss_loss = self.combine_losses(base, term)
        return self.medloss_loss

    # ---- batch hooks -------------------------------------------------------------------------------------------
    def medloss_batch_inputs(self, batch: dict) -> Dict[str, Any]:
        """The loss's per-batch inputs ``{keyword: value}`` for ``medloss_batch_keywords`` (default: none).

        Args:
            batch: nnU-Net's batch as the data loader made it (``data``, ``target``, ``keys``).
        """
        return {}

    def medloss_step_batch(self, batch: dict) -> dict:
        """The batch nnU-Net's train/validation step sees (default: ``batch`` unchanged)."""
        return batch

    def _medloss_batch(self, batch: dict) -> dict:
        values = self.medloss_batch_inputs(batch)
        if self.medloss_inputs is not None:
            self.medloss_inputs.update(**values)
        elif values:
            raise RuntimeError(f"{type(self).__name__}.medloss_batch_inputs returned {sorted(values)}, but the class "
                               "declares no medloss_batch_keywords to route them to the loss.")
        return self.medloss_step_batch(batch)

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self._medloss_batch(batch))

    def validation_step(self, batch: dict) -> dict:
        return super().validation_step(self._medloss_batch(batch))

    # ---- schedule and logging ----------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        if self.medloss_loss is not None:
            start = int(round(float(self.medloss.get("warmup_fraction", 0.0)) * self.num_epochs))
            enabled = self.current_epoch >= start
            if enabled != self.medloss_loss.enabled or self.current_epoch == 0:
                self.print_to_log_file(
                    f"medloss term {'on' if enabled else f'off until epoch {start} (warm-up)'}")
            self.medloss_loss.enabled = enabled

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        loss = self.medloss_loss
        if loss is not None and loss.calls:
            self.print_to_log_file(
                f"medloss term: {1000 * loss.seconds / loss.calls:.1f} ms per loss call ({loss.calls} calls)")
            loss.seconds, loss.calls = 0.0, 0


class _Scaled(nn.Module):
    """``factor * loss(output, target)``."""

    def __init__(self, loss: nn.Module, factor: float):
        super().__init__()
        self.loss, self.factor = loss, factor

    def forward(self, output, target):
        return self.factor * self.loss(output, target)


class _RegionBCE(nn.Module):
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


def add_epoch_variants(classes: Sequence[type], namespace: dict) -> list:
    """Create nnU-Net's epoch variants of ``classes`` in the calling module's ``namespace``.

    ``<Trainer>_<N>epochs`` for every N of :data:`medloss.nnunet.EPOCH_VARIANTS` (``num_epochs = N``): separate
    names keep nnU-Net's results folders apart. Each variant's ``__module__`` is the calling module, so it pickles.

    Args:
        classes: the trainers.
        namespace: the calling module's ``globals()``.

    Returns:
        The variants' names, sorted.
    """
    names = []
    for cls in classes:
        for epochs in EPOCH_VARIANTS:
            name = epoch_variant_name(cls.__name__, epochs)
            doc = f"{cls.__name__} trained for {epochs} epoch{'s' if epochs != 1 else ''}."
            namespace[name] = type(name, (cls,), {
                "__module__": namespace["__name__"], "__qualname__": name, "__doc__": doc,
                "trainer_overrides": {**cls.trainer_overrides, "num_epochs": epochs}})
            names.append(name)
    return sorted(names)
