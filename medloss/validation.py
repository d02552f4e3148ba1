"""Input handling shared by every medloss loss.

The order follows MONAI's losses so that users see the same behaviour everywhere: activation, one-hot
conversion of the target, background removal, shape check, then the method's own computation and
:func:`reduce` at the end. Every check raises ``ValueError`` saying what was expected and what came.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Tuple, Union

import torch
from monai.utils import LossReduction

__all__ = [
    "check_finite",
    "check_spatial_input",
    "check_same_shape",
    "check_range",
    "check_binary",
    "one_hot",
    "prepare_input_target",
    "reduce",
    "check_activation_args",
]


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``tensor`` holds NaN or Inf."""
    # the sum is non-finite iff some element is (or the sum overflows): one cheap reduction in the common case
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/Inf value(s); expected finite values.")


def check_spatial_input(tensor: torch.Tensor, name: str, spatial_dims: Tuple[int, ...] = (2, 3)) -> None:
    """Raise ``ValueError`` unless ``tensor`` is ``(B, C, *spatial)`` with a supported number of spatial dims."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim - 2 not in spatial_dims:
        dims = " or ".join(f"{d}D" for d in spatial_dims)
        raise ValueError(
            f"{name} must have shape (B, C, *spatial) with {dims} spatial dimensions, got shape {tuple(tensor.shape)}."
        )
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}).")


def check_same_shape(input: torch.Tensor, target: torch.Tensor, what: str = "") -> None:
    """Raise ``ValueError`` unless ``input`` and ``target`` have the same shape (no silent broadcasting)."""
    if input.shape != target.shape:
        extra = f" ({what})" if what else ""
        raise ValueError(
            f"ground truth has different shape ({tuple(target.shape)}) from input ({tuple(input.shape)}){extra}."
        )


def check_range(tensor: torch.Tensor, low: float, high: float, name: str) -> None:
    """Raise ``ValueError`` if any value of ``tensor`` lies outside ``[low, high]``."""
    lo, hi = float(tensor.min()), float(tensor.max())
    if lo < low or hi > high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got values in [{lo:.6g}, {hi:.6g}].")


def check_binary(tensor: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` unless every value of ``tensor`` is 0 or 1."""
    if not bool(((tensor == 0) | (tensor == 1)).all()):
        values = torch.unique(tensor)[:8].tolist()
        raise ValueError(f"{name} must be binary (0/1), got values such as {values}.")


def one_hot(labels: torch.Tensor, num_classes: int, ignore_index: Optional[int] = None) -> torch.Tensor:
    """One-hot encode a ``(B, 1, *spatial)`` label map into ``(B, num_classes, *spatial)``.

    Values must be integers in ``[0, num_classes)``; ``ignore_index`` voxels become all-zero columns (mask
    them separately). Unlike a silent clamp, anything else is an error.
    """
    if labels.ndim < 3 or labels.shape[1] != 1:
        raise ValueError(
            f"to_onehot_y expects a label map of shape (B, 1, *spatial), got shape {tuple(labels.shape)}."
        )
    lab = labels
    if lab.is_floating_point():
        if not bool((lab == torch.round(lab)).all()):
            raise ValueError("to_onehot_y expects integer class labels, got non-integer values.")
    lab = lab.long()
    valid = torch.ones_like(lab, dtype=torch.bool) if ignore_index is None else lab != ignore_index
    bad = valid & ((lab < 0) | (lab >= num_classes))
    if bool(bad.any()):
        values = torch.unique(lab[bad])[:8].tolist()
        raise ValueError(
            f"label values must be in [0, {num_classes - 1}] for {num_classes} predicted channels"
            f"{'' if ignore_index is None else f' (or ignore_index={ignore_index})'}, got {values}."
        )
    lab = torch.where(valid, lab, torch.zeros_like(lab))
    out = torch.zeros((lab.shape[0], num_classes) + tuple(lab.shape[2:]), dtype=torch.float32, device=lab.device)
    out.scatter_(1, lab, 1.0)
    return out * valid


def check_activation_args(sigmoid: bool, softmax: bool, other_act: Optional[Callable]) -> None:
    """Raise ``ValueError`` for mutually exclusive activation options (as MONAI does, but with ``ValueError``)."""
    if int(bool(sigmoid)) + int(bool(softmax)) > 1:
        raise ValueError("Incompatible values: more than 1 of [sigmoid=True, softmax=True].")
    if other_act is not None and (sigmoid or softmax):
        raise ValueError("Incompatible values: other_act is not None and sigmoid=True or softmax=True.")
    if other_act is not None and not callable(other_act):
        raise ValueError(f"other_act must be None or callable, got {type(other_act).__name__}.")


def prepare_input_target(
    input: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Optional[Callable] = None,
    ignore_index: Optional[int] = None,
    spatial_dims: Tuple[int, ...] = (2, 3),
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Activation, one-hot, background removal and checks, in MONAI's order.

    Args:
        input: logits or probabilities, ``(B, C, *spatial)``.
        target: ``(B, C, *spatial)`` (one-hot / soft) or ``(B, 1, *spatial)`` label map with ``to_onehot_y``.

    Returns:
        ``(probabilities, target, keep)`` with equal shapes; ``keep`` is a ``(B, 1, *spatial)`` float mask of the
        voxels that are not ``ignore_index`` (``None`` when no ignore index is given).
    """
    check_spatial_input(input, "input", spatial_dims)
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    if target.ndim != input.ndim or target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
        raise ValueError(
            f"ground truth has shape {tuple(target.shape)}, expected (B, C or 1, *spatial) matching input "
            f"{tuple(input.shape)}."
        )
    check_finite(input, "input")
    check_finite(target, "target")

    n_pred_ch = input.shape[1]
    keep = None
    if ignore_index is not None:
        if target.shape[1] != 1:
            raise ValueError("ignore_index needs a (B, 1, *spatial) label map as target.")
        keep = (target != ignore_index).to(input.dtype)

    if sigmoid:
        input = torch.sigmoid(input)
    if softmax:
        if n_pred_ch == 1:
            warnings.warn("single channel prediction, `softmax=True` ignored.")
        else:
            input = torch.softmax(input, 1)
    if other_act is not None:
        input = other_act(input)

    if to_onehot_y:
        if n_pred_ch == 1:
            warnings.warn("single channel prediction, `to_onehot_y=True` ignored.")
            if ignore_index is not None:
                target = torch.where(target == ignore_index, torch.zeros_like(target), target)
        else:
            target = one_hot(target, n_pred_ch, ignore_index)
    elif ignore_index is not None:
        target = torch.where(target == ignore_index, torch.zeros_like(target), target)
    target = target.to(input.dtype)

    if not include_background:
        if n_pred_ch == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.")
        else:
            input, target = input[:, 1:], target[:, 1:]

    check_same_shape(input, target)
    return input, target, keep


def reduce(loss: torch.Tensor, reduction: Union[LossReduction, str]) -> torch.Tensor:
    """Apply a MONAI ``reduction`` (``"mean"``, ``"sum"``, ``"none"``) to a per-item (or per-item-per-class) loss."""
    reduction = LossReduction(reduction).value
    if reduction == LossReduction.MEAN.value:
        return loss.mean()
    if reduction == LossReduction.SUM.value:
        return loss.sum()
    return loss
