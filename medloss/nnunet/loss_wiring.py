"""How a medloss loss meets nnU-Net's training step.

nnU-Net hands its loss ``(logits, target)`` per deep-supervision scale: logits ``(B, C, *spatial)`` (half precision
under AMP), and either an integer label map ``(B, 1, *spatial)`` (label datasets, softmax decoding) or a boolean
one-hot ``(B, R[+1], *spatial)`` (region datasets, sigmoid decoding, last channel = ignore mask when the dataset has
an ignore label). :func:`activation_kwargs` gives the MONAI flags that decode the logits as nnU-Net does,
:class:`NnUNetTerm` translates nnU-Net's tensors to a medloss loss built with those flags, and :class:`AddedTerm`
adds it to nnU-Net's own Dice+CE, at every scale or at full resolution only.

This module does not import nnU-Net: it can be used and tested without it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["NnUNetTerm", "AddedTerm", "activation_kwargs"]


def activation_kwargs(has_regions: bool) -> dict:
    """MONAI loss flags that decode nnU-Net's logits the way nnU-Net's inference does.

    Args:
        has_regions: the dataset is region based (sigmoid per region, one-hot target with every channel), else
            label based (softmax over the classes, label-map target, background excluded as in nnU-Net's Dice).

    Returns:
        ``include_background``, ``to_onehot_y``, ``sigmoid`` and ``softmax``, ready to pass to a MONAI-style loss or
        to :func:`medloss.validation.prepare_input_target`.

    Example:
        >>> activation_kwargs(False)["softmax"], activation_kwargs(True)["sigmoid"]
        (True, True)
    """
    if has_regions:
        return {"include_background": True, "to_onehot_y": False, "sigmoid": True, "softmax": False}
    return {"include_background": False, "to_onehot_y": True, "sigmoid": False, "softmax": True}


class NnUNetTerm(nn.Module):
    """Call ``loss(logits, target, **extras)`` with nnU-Net's tensors converted to the loss's conventions.

    Logits are cast to float32 (AMP gives half precision); label maps become ``long``, region one-hots ``float``.
    With an ignore label, the ignored voxels are passed to the loss as a keep mask (keyword ``ignore_kwarg``) and
    set to background (labels) or stripped (the region target's last channel). Keyword ``extras`` (per-batch inputs
    routed by :class:`medloss.losses.BatchInputsLoss`) are passed on unchanged.

    Args:
        loss: a medloss/MONAI loss constructed with :func:`activation_kwargs` of the dataset.
        has_regions: the dataset is a region dataset (bool one-hot target, sigmoid decoding).
        ignore_label: nnU-Net's ignore label, or ``None``.
        ignore_kwarg: name of the keyword through which ``loss.forward`` accepts a ``(B, 1, *spatial)`` keep mask
            (``None``: the loss cannot mask voxels, and a dataset with an ignore label raises ``NotImplementedError``
            when the trainer is built).

    Raises:
        NotImplementedError: an ignore label without ``ignore_kwarg``.
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

    def forward(self, logits: torch.Tensor, target: torch.Tensor, **extras: Any) -> torch.Tensor:
        """``loss(logits, target, **extras)`` with the conversions above; returns what the loss returns."""
        logits = logits.float()  # AMP gives half-precision logits; medloss losses compute in float32
        kwargs = dict(extras)
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

    With deep supervision (``output`` and ``target`` lists, full resolution first), ``term`` is applied to every
    scale with nnU-Net's weights ``ds_weights``, or only to the full-resolution output when ``full_resolution_only``
    (topology and projection losses are defined on the full patch; the low-resolution heads only carry Dice+CE).
    The term is skipped while :attr:`enabled` is False (warm-up). The time spent in the term is accumulated in
    :attr:`seconds` / :attr:`calls` so that trainers can log the cost per iteration.

    Args:
        base: nnU-Net's loss as the trainer built it (possibly wrapped in ``DeepSupervisionWrapper``).
        term: the medloss term, called as ``term(output_k, target_k)``.
        weight: factor of the term.
        full_resolution_only: apply the term to the first (full-resolution) output only.
        ds_weights: deep-supervision weights of the scales (``None``: 1 for every scale).

    Example:
        >>> import torch
        >>> mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()
        >>> loss = AddedTerm(mse, l1, weight=0.5)
        >>> x, y = torch.zeros(1, 1, 4), torch.ones(1, 1, 4)
        >>> float(loss(x, y))  # 1 + 0.5 * 1
        1.5
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

    def timed(self, fn: Callable, *args) -> torch.Tensor:
        """``fn(*args)``, its wall time added to :attr:`seconds`."""
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - t0
        return out

    def forward(self, output, target):
        """The combined loss (a scalar) for nnU-Net's ``output`` and ``target`` (tensors or deep-supervision lists)."""
        total = self.base(output, target)
        if not self.enabled or self.weight == 0:
            return total
        self.calls += 1
        if isinstance(output, (list, tuple)):
            if self.full_resolution_only:
                return total + self.weight * self.timed(self.term, output[0], target[0])
            weights = self.ds_weights or (1.0,) * len(output)
            extra = sum(w * self.timed(self.term, o, t) for w, o, t in zip(weights, output, target) if w != 0)
            return total + self.weight * extra
        return total + self.weight * self.timed(self.term, output, target)
