"""Input handling shared by the medloss losses, transforms and metrics.

The order follows MONAI's losses so that users see the same behaviour everywhere: activation, one-hot
conversion of the target, background removal, shape check, then the method's own computation and
:func:`reduce` at the end (one reduction check, :func:`check_reduction`, with one message). Every check raises
``ValueError`` saying what was expected and what came. Tensor-side checks come first, then the checks of
constructor arguments (:func:`check_number`, :func:`check_numbers`, :func:`check_bool`, :func:`check_choice`: type,
range and finiteness, with the argument's name in the message); the array side used by the metrics (numpy arrays or
tensors) is at the end of the module.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from monai.utils import LossReduction

__all__ = [
    "check_finite",
    "check_spatial_input",
    "check_same_shape",
    "check_range",
    "check_binary",
    "check_float_input",
    "check_class_labels",
    "check_axes",
    "check_class_weights",
    "check_one_hot_channels",
    "spatial_axes_to_dims",
    "one_hot",
    "prepare_probabilities",
    "prepare_input_target",
    "check_reduction",
    "reduce",
    "check_activation_args",
    "check_number",
    "check_numbers",
    "check_bool",
    "check_choice",
    "check_group_ids",
    "UNKNOWN_GROUP",
    "ArrayLike",
    "to_numpy",
    "binarize_pair",
    "binarize_image_pair",
]

#: group id of a sample whose attribute is unknown (fairness losses and metrics)
UNKNOWN_GROUP = -1


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


def check_float_input(tensor: torch.Tensor, name: str = "input") -> torch.Tensor:
    """Raise ``ValueError`` unless ``tensor`` is a floating point tensor; half precision comes back as float32.

    Sums over many voxels lose precision in float16/bfloat16, so the losses compute in float32 at least.

    Example:
        >>> check_float_input(torch.zeros(2, dtype=torch.float16)).dtype
        torch.float32
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got dtype {tensor.dtype}.")
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


def check_class_labels(
    labels: torch.Tensor, num_classes: int, name: str = "label", ignore_index: Optional[int] = None
) -> None:
    """Raise ``ValueError`` unless ``labels`` holds integer class indices in ``[0, num_classes)``.

    Floating point labels must be whole numbers; ``ignore_index`` values are allowed besides the classes. Unlike a
    silent clamp, anything else is an error.
    """
    if labels.is_floating_point():
        check_finite(labels, name)
        if not bool((labels == torch.round(labels)).all()):
            raise ValueError(f"{name} values must be integer class indices, got non-integer values.")
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(
            f"{name} values must be in [0, {num_classes - 1}] for {num_classes} classes"
            f"{'' if ignore_index is None else f' (or ignore_index={ignore_index})'}, got {values}."
        )


def one_hot(labels: torch.Tensor, num_classes: int, ignore_index: Optional[int] = None) -> torch.Tensor:
    """One-hot encode a ``(B, 1, *spatial)`` label map into ``(B, num_classes, *spatial)`` float32.

    Values must be integers in ``[0, num_classes)`` (:func:`check_class_labels`); ``ignore_index`` voxels become
    all-zero columns (mask them separately).

    Example:
        >>> one_hot(torch.tensor([[[0, 2]]]), 3)[0].tolist()
        [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    """
    if labels.ndim < 3 or labels.shape[1] != 1:
        raise ValueError(
            f"to_onehot_y expects a label map of shape (B, 1, *spatial), got shape {tuple(labels.shape)}."
        )
    check_class_labels(labels, num_classes, "label", ignore_index)
    lab = labels.long()
    valid = torch.ones_like(lab, dtype=torch.bool) if ignore_index is None else lab != ignore_index
    lab = torch.where(valid, lab, torch.zeros_like(lab))
    out = torch.zeros((lab.shape[0], num_classes) + tuple(lab.shape[2:]), dtype=torch.float32, device=lab.device)
    out.scatter_(1, lab, 1.0)
    return out * valid


def check_one_hot_channels(label: "ArrayLike", name: str = "label") -> None:
    """Raise ``ValueError`` unless a channel-first label ``(C, *spatial)`` with ``C > 1`` is a one-hot: 0/1 values
    and exactly one 1 per voxel. ``C = 1`` (a label map) passes.

    A label without its channel axis is the usual mistake this catches: a ``(D, H, W)`` mask read as a
    ``D``-channel 2D one-hot would give a result of the wrong shape without an error.

    Example:
        >>> check_one_hot_channels(np.eye(3)[:, :, None])  # (3, 3, 1): one class per voxel
        >>> try:
        ...     check_one_hot_channels(np.ones((12, 4, 4)))  # a 3D mask without its channel axis
        ... except ValueError as err:
        ...     print("got shape (12, 4, 4) whose channels are not one-hot" in str(err))
        True
    """
    if label.shape[0] <= 1:
        return
    values_ok = bool(((label == 0) | (label == 1)).all())
    bad = int((label.sum(0) != 1).sum())  # bool and small integer dtypes sum in a wider integer type
    if values_ok and bad == 0:
        return
    n_vox = int(np.prod(tuple(label.shape[1:])))
    detail = (f"{bad} of {n_vox} voxels do not hold exactly one 1" if values_ok else
              f"not binary (0/1): values such as {np.unique(to_numpy(label, name))[:8].tolist()}")
    raise ValueError(
        f"{name} must be a channel-first (1, *spatial) label map or a one-hot (C, *spatial), got shape "
        f"{tuple(label.shape)} whose channels are not one-hot ({detail}); a volume without its channel axis needs "
        "one, e.g. label[None]."
    )


def check_class_weights(class_weights: Optional[Union[Sequence[float], torch.Tensor]]) -> Optional[torch.Tensor]:
    """Class (channel) weights of a loss as a flat float64 tensor (``None`` stays ``None``), or ``ValueError``.

    The weights must be finite, ``>= 0`` and not all 0 (the loss would be constant).
    """
    if class_weights is None:
        return None
    values = class_weights
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.flatten().tolist()
    try:
        w = torch.tensor(check_numbers("class_weights", values, low=0.0), dtype=torch.float64)
    except ValueError:
        raise ValueError(f"class_weights must be finite, >= 0 and not all 0, got {values!r}.") from None
    if float(w.sum()) <= 0:
        raise ValueError(f"class_weights must be finite, >= 0 and not all 0, got {w.tolist()}.")
    return w


def check_axes(axes: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    """``axes`` (an int or a non-empty sequence of ints) as a tuple, or ``ValueError``."""

    def is_int(a) -> bool:
        return isinstance(a, (int, np.integer)) and not isinstance(a, bool)

    if is_int(axes):
        return (int(axes),)
    if not isinstance(axes, Sequence) or isinstance(axes, str) or len(axes) == 0 or not all(map(is_int, axes)):
        raise ValueError(f"axes must be an int or a non-empty sequence of ints, got {axes!r}.")
    return tuple(int(a) for a in axes)


def spatial_axes_to_dims(axes: Tuple[int, ...], n_spatial: int, first_dim: int) -> Tuple[int, ...]:
    """Tensor dims of spatial ``axes`` (0 = first spatial axis, negative from the last) for ``n_spatial`` spatial
    dims starting at tensor dim ``first_dim`` (2 for ``(B, C, *spatial)``, 1 for ``(C, *spatial)``).

    Example:
        >>> spatial_axes_to_dims((0, -1), 3, first_dim=2)
        (2, 4)
    """
    dims = []
    for a in axes:
        if not -n_spatial <= a < n_spatial:
            raise ValueError(f"axes must lie in [{-n_spatial}, {n_spatial - 1}] for {n_spatial}D input, got {axes}.")
        dims.append(first_dim + a % n_spatial)
    if len(set(dims)) != len(dims):
        raise ValueError(f"axes must name distinct spatial axes, got {axes} for {n_spatial}D input.")
    return tuple(dims)


def check_activation_args(sigmoid: bool, softmax: bool, other_act: Optional[Callable]) -> None:
    """Raise ``ValueError`` for mutually exclusive activation options (as MONAI does, but with ``ValueError``), or
    ``sigmoid``/``softmax`` that are not bools."""
    check_bool("sigmoid", sigmoid)
    check_bool("softmax", softmax)
    if int(bool(sigmoid)) + int(bool(softmax)) > 1:
        raise ValueError("Incompatible values: more than 1 of [sigmoid=True, softmax=True].")
    if other_act is not None and (sigmoid or softmax):
        raise ValueError("Incompatible values: other_act is not None and sigmoid=True or softmax=True.")
    if other_act is not None and not callable(other_act):
        raise ValueError(f"other_act must be None or callable, got {type(other_act).__name__}.")


# ----------------------------------------------------------------------------------------------------------------------
# hyper-parameters: the checks of the losses' (and transforms') constructor arguments, one message format
def _describe(low, high, low_open: bool, high_open: bool, integer: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return kind


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_number(
    name: str,
    value,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    allow_none: bool = False,
):
    """A hyper-parameter as a ``float`` (``int`` with ``integer=True``), or ``ValueError`` naming it, its value and
    the expected range.

    The value must be a real number (not a bool or a string), finite, and lie in the range ``low``..``high``
    (bounds included unless ``low_open``/``high_open``; ``None`` is no bound). With ``integer=True`` it must be an
    ``int`` (a float such as ``1.5`` or ``2.0`` is refused: sizes and counts are never rounded silently).

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        low, high: the bounds (``None``: unbounded).
        low_open, high_open: exclude the bound.
        integer: require an integer.
        allow_none: ``None`` passes (and is returned).

    Example:
        >>> check_number("gamma", 2), check_number("size", 3, low=1, integer=True)
        (2.0, 3)
        >>> check_number("alpha", float("nan"), low=0)
        Traceback (most recent call last):
            ...
        ValueError: alpha must be a finite number >= 0, got nan.
        >>> check_number("scaling", 1.0, 0, 1, low_open=True, high_open=True)
        Traceback (most recent call last):
            ...
        ValueError: scaling must be a finite number in (0, 1), got 1.0.
    """
    if value is None and allow_none:
        return None
    ok = _is_int(value) if integer else _is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        what = _describe(low, high, low_open, high_open, integer)
        raise ValueError(f"{name} must be {'None or ' if allow_none else ''}{what}, got {value!r}.")
    return int(value) if integer else float(value)


def check_numbers(
    name: str,
    values,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    length: Optional[int] = None,
) -> tuple:
    """A sequence of hyper-parameters (e.g. per-layer weights) as a tuple, each checked as :func:`check_number`.

    Args:
        name: the argument's name, used in the message.
        values: a non-empty sequence, or a 1-D numpy array / tensor.
        low, high, low_open, high_open, integer: as :func:`check_number`, for every entry.
        length: the required number of entries (``None``: any, at least one).

    Example:
        >>> check_numbers("weights", [1, 0.5])
        (1.0, 0.5)
        >>> check_numbers("sizes", (4, 2.5), low=1, integer=True)
        Traceback (most recent call last):
            ...
        ValueError: sizes[1] must be an integer >= 1, got 2.5.
    """
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.tolist() if values.ndim == 1 else values
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of numbers, got {values!r}.")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must hold {length} values, got {len(values)}: {list(values)!r}.")
    return tuple(
        check_number(f"{name}[{i}]", v, low, high, low_open, high_open, integer) for i, v in enumerate(values)
    )


def check_bool(name: str, value, allow_none: bool = False) -> Optional[bool]:
    """A switch as a ``bool`` (``None`` passes with ``allow_none``), or ``ValueError``: a string such as ``"False"``
    or a number would otherwise be read by its truth value.

    Example:
        >>> check_bool("sigmoid", "False")
        Traceback (most recent call last):
            ...
        ValueError: sigmoid must be True or False, got 'False'.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {'None, ' if allow_none else ''}True or False, got {value!r}.")
    return bool(value)


def check_bools(**switches) -> None:
    """:func:`check_bool` for each keyword (name = value), in the order given.

    Example:
        >>> check_bools(include_background=True, batch=0)
        Traceback (most recent call last):
            ...
        ValueError: batch must be True or False, got 0.
    """
    for name, value in switches.items():
        check_bool(name, value)


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """A string option that must be one of ``choices``, or ``ValueError`` listing them.

    Example:
        >>> check_choice("mode", "nd", ("nd", "2d_slicewise"))
        'nd'
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
    return value


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


def prepare_probabilities(
    input: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Optional[Callable] = None,
    ignore_index: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """:func:`prepare_input_target` for losses of probabilities and labels in ``[0, 1]``, with range checks.

    Half precision input and target are computed in float32. The prediction after the activation must lie in
    ``[0, 1]`` (not checked after a sigmoid or a multi-channel softmax, which guarantee it); a soft target must lie
    in ``[0, 1]``, and the label map of a single-channel prediction (``to_onehot_y`` ignored) must be binary.

    Returns:
        ``(probabilities, target, keep)`` as :func:`prepare_input_target`.

    Raises:
        ValueError: as :func:`prepare_input_target`, an input that is not floating point, and values out of range.
    """
    input = check_float_input(input)
    if isinstance(target, torch.Tensor) and target.dtype in (torch.float16, torch.bfloat16):
        target = target.float()
    prob, target, keep = prepare_input_target(
        input, target, include_background, to_onehot_y, sigmoid, softmax, other_act, ignore_index
    )
    if not (sigmoid or (softmax and input.shape[1] > 1)):
        check_range(prob.detach(), 0.0, 1.0, "prediction (input after the activation)")
    if not to_onehot_y:
        check_range(target, 0.0, 1.0, "soft target")
    elif input.shape[1] == 1:
        check_binary(target, "label map of a single-channel prediction (to_onehot_y=True)")
    return prob, target, keep


def check_reduction(reduction: Union[LossReduction, str]) -> str:
    """Return the value (``"mean"``, ``"sum"`` or ``"none"``) of a MONAI ``reduction``, or raise ``ValueError``.

    Example:
        >>> check_reduction("none"), check_reduction(LossReduction.SUM)
        ('none', 'sum')
    """
    try:
        return LossReduction(reduction).value
    except (ValueError, TypeError):
        raise ValueError(f'reduction must be one of "mean", "sum", "none", got {reduction!r}.') from None


def reduce(loss: torch.Tensor, reduction: Union[LossReduction, str], input_ndim: Optional[int] = None) -> torch.Tensor:
    """Apply a MONAI ``reduction`` (``"mean"``, ``"sum"``, ``"none"``) to per-item losses.

    Args:
        loss: per-item losses, e.g. ``(B, C)`` per sample and class, ``(C,)`` per class or ``(B,)`` per sample.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        input_ndim: with ``"none"``, the number of dims of the loss input ``(B, C, *spatial)``: the losses then get
            the broadcastable shape of MONAI's ``DiceLoss`` (``list(loss.shape[0:2]) + [1] * (input_ndim - 2)``),
            i.e. ``(B, C, 1, 1[, 1])`` per sample and class, ``(C, 1, 1[, 1])`` per class. ``None`` keeps the shape.

    Example:
        >>> per_item = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
        >>> float(reduce(per_item, "mean")), reduce(per_item, "none", input_ndim=5).shape
        (0.5, torch.Size([2, 2, 1, 1, 1]))
    """
    reduction = check_reduction(reduction)
    if reduction == LossReduction.MEAN.value:
        return loss.mean()
    if reduction == LossReduction.SUM.value:
        return loss.sum()
    if input_ndim is not None:
        return loss.reshape(list(loss.shape[0:2]) + [1] * (input_ndim - 2))
    return loss


def distributed_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks of the default process group (no-op without ``torch.distributed``).

    Used by every loss that pools statistics over the batch (``batch=True``, FEBS's group statistics).

    The sum is not differentiated through the other ranks: each rank's gradient flows through its own share, as
    with DDP's gradient averaging this is the gradient of the global loss up to the factor ``1 / world_size``.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        total = tensor.detach().clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        # the global value with the local gradient
        tensor = tensor + (total - tensor.detach())
    return tensor


def check_group_ids(groups, batch_size: int, num_groups: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Validate one group id per sample and return them as a ``(B,)`` long tensor.

    Args:
        groups: ``(B,)`` (or ``(B, 1)``) integer ids in ``[0, num_groups)``, or ``-1`` for an unknown attribute;
            a tensor, numpy array or sequence. Floating values are accepted only when they are whole numbers.
        batch_size: expected number of samples ``B``.
        num_groups: number of groups ``G``.
        device: device of the returned tensor.

    Raises:
        ValueError: non-integer, NaN/Inf or out-of-range ids, or a length different from ``batch_size``.
    """
    if groups is None:
        raise ValueError("groups is required: one group id per sample, shape (B,).")
    if not isinstance(groups, torch.Tensor):
        arr = np.asarray(groups)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"groups must hold integer group ids, got dtype {arr.dtype}.")
        groups = torch.as_tensor(arr)
    if groups.ndim == 2 and groups.shape[1] == 1:
        groups = groups[:, 0]
    if groups.ndim != 1 or groups.shape[0] != batch_size:
        raise ValueError(
            f"groups must have shape ({batch_size},) (one id per sample of the batch), got shape {tuple(groups.shape)}."
        )
    if groups.is_complex():
        raise ValueError("groups must hold integer group ids, got complex values.")
    if groups.is_floating_point():
        check_finite(groups, "groups")
        if not bool((groups == torch.round(groups)).all()):
            bad = groups[groups != torch.round(groups)][:5].tolist()
            raise ValueError(f"groups must hold integer group ids, got non-integer values such as {bad}.")
    groups = groups.to(device=device, dtype=torch.long)
    bad = (groups < UNKNOWN_GROUP) | (groups >= num_groups)
    if bool(bad.any()):
        values = torch.unique(groups[bad])[:8].tolist()
        raise ValueError(
            f"group ids must be in [0, {num_groups - 1}] (num_groups={num_groups}) or {UNKNOWN_GROUP} for unknown, "
            f"got {values}."
        )
    return groups


# ----------------------------------------------------------------------------------------------------------------------
# array side: the input handling of the metrics, which take numpy arrays or torch tensors
ArrayLike = Union[np.ndarray, torch.Tensor]


def to_numpy(array: ArrayLike, name: str) -> np.ndarray:
    """``array`` as a numpy array: tensors are detached and moved to the CPU, numpy arrays pass unchanged.

    Raises:
        ValueError: ``array`` is neither a numpy array nor a torch tensor.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()  # numpy has no bfloat16
        array = array.numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(array).__name__}.")
    return array


def binarize_pair(
    prediction: ArrayLike, target: ArrayLike, threshold: float = 0.5, include_background: bool = True
) -> Tuple[np.ndarray, np.ndarray, Tuple[int, ...]]:
    """Check and binarise a prediction/target pair of one image or a batch.

    Args:
        prediction: probabilities or a binary mask, ``(*spatial)`` (2D/3D) or ``(B, C, *spatial)``; foreground is
            ``prediction > threshold``.
        target: binary mask (bool or 0/1) of the same shape.
        threshold: binarisation threshold of ``prediction``.
        include_background: for batched input with ``C > 1``, keep channel 0.

    Returns:
        ``(prediction_mask, target_mask, lead)``: boolean arrays of shape ``(N, *spatial)`` and the leading shape
        of the result, ``()`` for a single image (``N = 1``) or ``(B, C')`` for a batch (``N = B * C'``, ``C'`` the
        channels kept).

    Raises:
        ValueError: not a numpy array or tensor, different shapes, not 2D/3D, empty, non-real values, NaN/Inf,
            or a target that is not binary.
    """
    pred = to_numpy(prediction, "prediction")
    gt = to_numpy(target, "target")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and target must have the same shape, got {pred.shape} and {gt.shape}.")
    if pred.ndim not in (2, 3, 4, 5):
        raise ValueError(
            f"expected a 2D/3D image (*spatial) or a batch (B, C, *spatial) with 2 or 3 spatial dims, "
            f"got shape {pred.shape}."
        )
    if pred.size == 0:
        raise ValueError(f"prediction is empty (shape {pred.shape}).")
    for name, arr in (("prediction", pred), ("target", gt)):
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
        # boolean and integer masks (the common case for large volumes) need no finiteness check
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/Inf value(s).")
    if gt.dtype != np.bool_ and not ((gt == 0) | (gt == 1)).all():
        raise ValueError(f"target must be binary (0/1), got values such as {np.unique(gt)[:8].tolist()}.")
    lead: Tuple[int, ...] = ()
    if pred.ndim >= 4:
        if not include_background and pred.shape[1] > 1:
            pred, gt = pred[:, 1:], gt[:, 1:]
        lead = pred.shape[:2]
    spatial = pred.shape[2:] if lead else pred.shape
    pred_mask = pred if pred.dtype == np.bool_ and threshold == 0.5 else pred > threshold
    gt_mask = gt if gt.dtype == np.bool_ else gt > 0.5
    return pred_mask.reshape((-1,) + spatial), gt_mask.reshape((-1,) + spatial), lead


def binarize_image_pair(
    prediction: ArrayLike, target: ArrayLike, threshold: float = 0.5
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`binarize_pair` for exactly one image: two boolean masks of the input's shape ``(*spatial)`` (2D/3D).

    Raises:
        ValueError: as :func:`binarize_pair`, and for batched ``(B, C, *spatial)`` input.
    """
    pred = to_numpy(prediction, "prediction")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected one 2D or 3D image (*spatial), got prediction of shape {pred.shape}.")
    pred, gt, _ = binarize_pair(pred, target, threshold)
    return pred[0], gt[0]
