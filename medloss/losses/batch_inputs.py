"""Per-batch inputs besides ``(input, target)``: one mechanism for MONAI engines and nnU-Net trainers.

Some losses need more than the prediction and the label: the group ids of fair error-bound scaling, the label
MIPs of the MIP loss, a keep mask. They take them as keyword arguments of ``forward``
(``loss(input, target, groups=...)``). Training engines, however, call ``loss_function(prediction, target)``.
:class:`BatchInputsLoss` closes that gap in one place:

- in a MONAI workflow the same object is the engine's ``loss_function`` *and* one of its handlers: ``attach``
  registers an ``ITERATION_STARTED`` handler that reads the current batch (``engine.state.batch``, a dict of the
  dataloader) before MONAI's own ``SupervisedTrainer`` iteration calls the loss;
- an nnU-Net trainer calls :meth:`BatchInputsLoss.update` with the values it derives from its batch (see
  ``medloss.nnunet``) before nnU-Net's ``train_step`` calls the loss.

Example (a MONAI bundle's ``train.json``)::

    "loss": {"_target_": "medloss.losses.BatchInputsLoss",
             "loss": {"_target_": "medloss.losses.FairErrorBoundScalingLoss", "sigmoid": true},
             "inputs": {"groups": "group"}},
    "handlers": ["@loss", ...]
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

import torch
from torch import nn

__all__ = ["BatchInputsLoss"]


class BatchInputsLoss(nn.Module):
    """Call ``loss(input, target, **extras)`` with the extras of the current batch.

    It is a wrapper, not a loss: a plain ``nn.Module`` rather than MONAI's ``_Loss``, because it has no reduction
    of its own (the wrapped loss reduces, and its output is returned unchanged).

    Args:
        loss: a loss whose ``forward`` takes the extras as keyword arguments.
        inputs: ``{forward keyword: batch key}``, e.g. ``{"groups": "group"}``: which entries of a batch dict
            become which keyword arguments (used by :meth:`update_from_batch` and MONAI engines).

    Raises:
        ValueError: ``inputs`` is not a mapping of strings; at call time, when no batch values were set or a
            batch lacks one of the keys.

    Example:
        >>> import torch
        >>> seen = {}
        >>> def loss(input, target, groups):
        ...     seen["groups"] = groups.tolist()
        ...     return (input - target).abs().mean()
        >>> wrapped = BatchInputsLoss(loss, inputs={"groups": "group"})
        >>> wrapped.update_from_batch({"image": None, "group": torch.tensor([0, 1])})
        >>> float(wrapped(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)))
        1.0
        >>> seen["groups"]
        [0, 1]
    """

    def __init__(self, loss: Callable[..., torch.Tensor], inputs: Mapping[str, str]) -> None:
        super().__init__()
        if not callable(loss):
            raise ValueError(f"loss must be callable, got {type(loss).__name__}.")
        if not isinstance(inputs, Mapping) or not inputs or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()):
            raise ValueError(
                f"inputs must be a non-empty mapping {{forward keyword: batch key}} of strings, got {inputs!r}."
            )
        self.loss = loss
        self.inputs: Dict[str, str] = dict(inputs)
        self._values: Optional[Dict[str, Any]] = None

    def update(self, **values: Any) -> None:
        """Set the extras for the next calls (keyword → value); every keyword of ``inputs`` must be given."""
        missing = sorted(set(self.inputs) - set(values))
        if missing:
            raise ValueError(f"missing batch input(s) {missing} for {type(self.loss).__name__}.")
        self._values = {k: values[k] for k in self.inputs}

    def update_from_batch(self, batch: Mapping[str, Any]) -> None:
        """Take the extras from a batch dict through ``inputs`` (``{keyword: batch key}``)."""
        if not isinstance(batch, Mapping):
            raise ValueError(f"expected the batch as a dict, got {type(batch).__name__}.")
        missing = sorted(v for v in self.inputs.values() if v not in batch)
        if missing:
            raise ValueError(f"the batch has no key(s) {missing} (keys: {sorted(batch)}); "
                             f"{type(self.loss).__name__} needs them as {sorted(self.inputs)}.")
        self.update(**{k: batch[v] for k, v in self.inputs.items()})

    def attach(self, engine: Any) -> None:
        """MONAI/ignite handler protocol: read each batch's extras before the engine's iteration runs."""
        from monai.utils import min_version, optional_import

        Events, _ = optional_import("ignite.engine", "0.4.4", min_version, "Events")
        engine.add_event_handler(Events.ITERATION_STARTED, lambda e: self.update_from_batch(e.state.batch))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``loss(input, target, **extras)``; tensor extras are moved to ``input``'s device."""
        if self._values is None:
            raise ValueError("no batch inputs were set: call update()/update_from_batch() first, or list this loss "
                             "among the engine's handlers so that it reads every batch.")
        extras = {k: v.to(input.device) if isinstance(v, torch.Tensor) else v for k, v in self._values.items()}
        return self.loss(input, target, **extras)
