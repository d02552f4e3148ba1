"""How a medloss loss meets nnU-Net's training step.

nnU-Net hands its loss ``(logits, target)`` per deep-supervision scale: logits ``(B, C, *spatial)`` (half precision
under AMP), and either an integer label map ``(B, 1, *spatial)`` (label datasets, softmax decoding) or a boolean
one-hot ``(B, R[+1], *spatial)`` (region datasets, sigmoid decoding, last channel = ignore mask when the dataset has
an ignore label). :class:`NnUNetTerm` translates that contract to a medloss loss built with the matching MONAI
flags, and :class:`AddedTerm` adds it to nnU-Net's own Dice+CE, at every scale or at full resolution only.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import nn

__all__ = ["NnUNetTerm", "AddedTerm", "activation_kwargs"]


def activation_kwargs(has_regions: bool) -> dict:
    """MONAI loss flags that decode nnU-Net's logits the way nnU-Net's inference does."""
    if has_regions:
        return {"include_background": True, "to_onehot_y": False, "sigmoid": True, "softmax": False}
    return {"include_background": False, "to_onehot_y": True, "sigmoid": False, "softmax": True}


class NnUNetTerm(nn.Module):
    """Call ``loss(logits, target)`` with nnU-Net's tensors converted to the loss's conventions.

    Args:
        loss: a medloss/MONAI loss constructed with :func:`activation_kwargs` of the dataset.
        has_regions: the dataset is a region dataset (bool one-hot target, sigmoid decoding).
        ignore_label: nnU-Net's ignore label, or ``None``.
        ignore_kwarg: name of the keyword through which ``loss.forward`` accepts a ``(B, 1, *spatial)`` keep mask
            (``None``: the loss cannot mask voxels, and a dataset with an ignore label raises ``NotImplementedError``
            when the trainer is built).
    """

    def __init__(self, loss: nn.Module, has_regions: bool, ignore_label: Optional[int] = None,
                 ignore_kwarg: Optional[str] = None):
        super().__init__()
        if ignore_label is not None and ignore_kwarg is None:
            raise NotImplementedError(
                f"{type(loss).__name__} cannot mask nnU-Net's ignore label ({ignore_label}): it is defined on whole "
                "patches (projections, topology) where a voxel mask has no meaning. Train without an ignore label or "
                "use another medloss trainer."
            )
        self.loss = loss
        self.has_regions = has_regions
        self.ignore_label = ignore_label
        self.ignore_kwarg = ignore_kwarg

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # AMP gives half-precision logits; medloss losses compute in float32
        kwargs = {}
        if self.has_regions:
            if self.ignore_label is not None:
                kwargs[self.ignore_kwarg] = ~target[:, -1:].bool()
                target = target[:, :-1]
            target = target.float()
        else:
            target = target.long()
            if self.ignore_label is not None:
                keep = target != self.ignore_label
                kwargs[self.ignore_kwarg] = keep
                target = torch.where(keep, target, torch.zeros_like(target))
        return self.loss(logits, target, **kwargs)


class AddedTerm(nn.Module):
    """``base(output, target) + weight * term(...)``, the way medloss trainers combine a method with Dice+CE.

    ``base`` is nnU-Net's loss as ``_build_loss`` made it (possibly wrapped in ``DeepSupervisionWrapper``). With deep
    supervision, ``term`` is applied to every scale with nnU-Net's weights, or only to the full-resolution output when
    ``full_resolution_only`` (topology and projection losses are defined on the full patch; the low-resolution heads
    only carry Dice+CE). The term is skipped while ``enabled`` is False (warm-up). The time spent in the term is
    accumulated in ``seconds`` / ``calls`` so that trainers can log the cost per iteration.
    """

    def __init__(self, base: nn.Module, term: nn.Module, weight: float, full_resolution_only: bool = False,
                 ds_weights: Optional[tuple] = None):
        super().__init__()
        self.base, self.term = base, term
        self.weight = float(weight)
        self.full_resolution_only = full_resolution_only
        self.ds_weights = ds_weights
        self.enabled = True
        self.seconds, self.calls = 0.0, 0

    def _timed(self, fn: Callable, *args) -> torch.Tensor:
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - t0
        return out

    def forward(self, output, target):
        total = self.base(output, target)
        if not self.enabled or self.weight == 0:
            return total
        self.calls += 1
        if isinstance(output, (list, tuple)):
            if self.full_resolution_only:
                return total + self.weight * self._timed(self.term, output[0], target[0])
            weights = self.ds_weights or (1.0,) * len(output)
            extra = sum(w * self._timed(self.term, o, t) for w, o, t in zip(weights, output, target) if w != 0)
            return total + self.weight * extra
        return total + self.weight * self._timed(self.term, output, target)
