"""SAUNA signed soft labels as MONAI transforms: label map -> ``(C', *spatial)`` float32 in [-1, 1], and back.

Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
WACV 2025, https://arxiv.org/abs/2405.16815. The soft label of one binary mask is computed by
:func:`medloss.transforms.sauna_kernels.sauna_soft_label`; one-vs-rest multi-class labels, spacing from MONAI
metadata and the decoding of network outputs (:func:`sauna_to_label`, :class:`SAUNADecode`) are here.
"""

from __future__ import annotations

import math
import numbers
from typing import Hashable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from medloss.transforms.sauna_kernels import check_soft_label_options, sauna_soft_label
from medloss.validation import check_one_hot_channels, to_numpy

__all__ = ["sauna_to_label", "SAUNATransform", "SAUNATransformd", "SAUNADecode", "SAUNADecoded"]

SpacingLike = Union[None, float, Sequence[float], str]


def _class_masks(
    label: np.ndarray, classes: Optional[Sequence[int]], num_classes: Optional[int], include_background: bool
) -> Tuple[np.ndarray, list]:
    """Validate a channel-first label and return it plus the list of (channel or class) ids, one per output."""
    if label.ndim not in (3, 4):
        raise ValueError(f"label must be channel-first (C, H, W) or (C, H, W, D), got shape {label.shape}.")
    if label.size == 0:
        raise ValueError(f"label is empty (shape {label.shape}).")
    if label.dtype != bool and not (np.issubdtype(label.dtype, np.integer) or np.issubdtype(label.dtype, np.floating)):
        raise ValueError(f"label must hold bool, integer or float values, got dtype {label.dtype}.")
    if label.dtype.kind == "f":
        if not np.isfinite(label).all():
            raise ValueError("label contains NaN/Inf values.")
        if not bool((label == np.round(label)).all()):
            raise ValueError("label must hold integer class values (or a 0/1 one-hot), got non-integer values.")
    if label.dtype != bool and bool((label < 0).any()):
        raise ValueError(f"label values must be >= 0, got minimum {label.min()}.")
    n_ch = label.shape[0]
    if n_ch > 1:  # one-hot: one binary channel per class, one class per voxel
        check_one_hot_channels(label, "label")
        if num_classes is not None and num_classes != n_ch:
            raise ValueError(f"num_classes={num_classes} but the one-hot label has {n_ch} channels.")
        ids = list(classes) if classes is not None else list(range(0 if include_background else 1, n_ch))
        bad = [c for c in ids if not 0 <= int(c) < n_ch]
        if bad:
            raise ValueError(f"classes {bad} are not channels of a one-hot label with {n_ch} channels.")
        return label, ids
    top = int(label.max())
    if classes is not None:
        ids = [int(c) for c in classes]
    elif num_classes is not None:
        if top >= num_classes:
            raise ValueError(
                f"label values must be in [0, {num_classes - 1}] for num_classes={num_classes}, got {top}."
            )
        ids = list(range(0 if include_background else 1, num_classes))
    else:
        if top > 1:
            raise ValueError(
                f"the label map holds values up to {top}; pass num_classes (or classes) so that the number of "
                "output channels does not depend on which classes a case contains."
            )
        ids = [0, 1] if include_background else [1]
    return label, ids


class SAUNATransform(Transform):
    """SAUNA signed soft label of a channel-first label (one-vs-rest, one signed channel per class).

    Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
    WACV 2025, https://arxiv.org/abs/2405.16815. See :func:`sauna_soft_label` for the formula. Each class c gets the
    transform of ``label == c`` with its own scale ``M_c`` and window ``k_c``; a class absent from the image gives
    -1 everywhere. Train one ``tanh`` channel per class (e.g. :class:`medloss.losses.SAUNALoss`) and decode with
    :func:`sauna_to_label`.

    The label is global to the case (M is the thickest structure anywhere): apply this transform to the full volume
    **before** patch sampling, and make spatial augmentations that follow pad the soft label with -1, not 0.

    Args:
        spacing: physical voxel size per spatial axis (a float or a sequence), ``None`` for voxel units, or
            ``"auto"`` to read ``pixdim`` from a MONAI ``MetaTensor`` input (``ValueError`` for other inputs).
            Windows are ``k_i = odd(ceil(M / s_i))`` voxels with M in physical units.
        classes: label values (for a ``(1, *spatial)`` label map) or channel indices (for a one-hot label) to encode,
            one output channel each, in this order. Overrides ``num_classes``/``include_background``.
        num_classes: number of classes of a label map, so the channel count does not depend on the image. Needed
            when the map holds values > 1; for one-hot input it must equal C.
        include_background: also encode class/channel 0. Default ``False``: one channel per foreground class.
        distance: ``"edt"`` (exact Euclidean, default) or ``"chamfer_cv2"`` (the released code's OpenCV 5x5
            chamfer distance, bit-compatible in 2D).
        mode: ``"nd"`` (one M per class over the whole array) or ``"2d_slicewise"`` (the released 2D code applied
            slice by slice along ``slice_axis``).
        slice_axis: spatial axis (0-based, without the channel axis) of the slices in ``"2d_slicewise"`` mode.
        full_value: value of a class that fills the whole image (M undefined); ``None`` raises ``ValueError``.
        num_threads: threads of the exact distance transform.

    Shapes:
        input ``(1, H, W[, D])`` integer label map (bool/int/float with integer values) or ``(C, H, W[, D])``
        one-hot (0/1, exactly one 1 per voxel; a volume without its channel axis is refused, not read as a
        multi-channel 2D label); output ``(C', H, W[, D])`` float32 in [-1, 1], of the input's type (numpy array, tensor on the
        input's device, or ``MetaTensor`` keeping its metadata). ``output[i] > 0`` equals ``label == classes[i]``.

    Raises:
        ValueError: wrong number of dimensions, empty input, NaN/Inf, non-integer labels, negative labels, labels
            >= ``num_classes``, a multi-channel label that is not one-hot, a map with values > 1 and neither ``classes`` nor
            ``num_classes``, bad ``spacing``/``distance``/``mode``, and see :func:`sauna_soft_label`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 9, 9), np.uint8); label[0, 4, 1:8] = 1  # a thin vessel
        >>> soft = SAUNATransform()(label)
        >>> soft.shape, bool(((soft[0] > 0) == (label[0] == 1)).all()), float(soft[0, 4, 4]), float(soft[0, 0, 0])
        ((1, 9, 9), True, 1.0, -1.0)
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        spacing: SpacingLike = None,
        classes: Optional[Sequence[int]] = None,
        num_classes: Optional[int] = None,
        include_background: bool = False,
        distance: str = "edt",
        mode: str = "nd",
        slice_axis: int = 0,
        full_value: Optional[float] = 1.0,
        num_threads: int = 1,
    ) -> None:
        check_soft_label_options(distance, mode, full_value, num_threads)
        if isinstance(spacing, str) and spacing not in ("auto", "meta"):
            raise ValueError(f"spacing must be None, a float, a sequence of floats or 'auto', got {spacing!r}.")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
        if classes is not None and (len(classes) == 0 or any(int(c) != c or c < 0 for c in classes)):
            raise ValueError(f"classes must be a non-empty sequence of non-negative ints, got {classes!r}.")
        self.spacing = spacing
        self.classes = classes
        self.num_classes = num_classes
        self.include_background = include_background
        self.distance = distance
        self.mode = mode
        self.slice_axis = slice_axis
        self.full_value = full_value
        self.num_threads = num_threads

    def _spacing(self, img, n_spatial: int):
        if isinstance(self.spacing, str):
            if not isinstance(img, MetaTensor):
                raise ValueError(
                    f"spacing='{self.spacing}' reads pixdim from a MONAI MetaTensor, got {type(img).__name__}; "
                    "pass the spacing explicitly."
                )
            pixdim = np.asarray(img.pixdim, dtype=np.float64).ravel()
            if pixdim.size < n_spatial:
                raise ValueError(f"MetaTensor pixdim {pixdim.tolist()} has fewer than {n_spatial} entries.")
            return pixdim[:n_spatial]
        return self.spacing

    def __call__(self, img):
        """``img``: ``(1, *spatial)`` label map or ``(C, *spatial)`` one-hot; returns ``(C', *spatial)`` float32."""
        label, ids = _class_masks(to_numpy(img, "label"), self.classes, self.num_classes, self.include_background)
        spacing = self._spacing(img, label.ndim - 1)
        one_hot = label.shape[0] > 1
        out = np.empty((len(ids),) + label.shape[1:], dtype=np.float32)
        for i, c in enumerate(ids):
            mask = label[c] != 0 if one_hot else label[0] == c
            sauna_soft_label(mask, spacing, distance=self.distance, mode=self.mode, slice_axis=self.slice_axis,
                             full_value=self.full_value, num_threads=self.num_threads, out=out[i])
        dtype = torch.float32 if isinstance(img, torch.Tensor) else np.float32
        return convert_to_dst_type(out, dst=img, dtype=dtype)[0]


class SAUNATransformd(MapTransform):
    """Dictionary version of :class:`SAUNATransform`.

    Compute it on the full case before any patch sampling (``RandCropByPosNegLabeld``...): the soft label depends on
    the thickest structure of the whole image. Spatial augmentations applied afterwards must pad the soft-label key
    with -1, not 0, because 0 is the decision boundary: ``SpatialPadd(..., mode="constant", constant_values=-1)``,
    or for resampling transforms (``RandAffined``, ``RandRotated``, ``Rand3DElasticd``, zero padding) shift the key
    by +1 before and by -1 after (then clip to [-1, 1]), as the SAUNA loader does.

    Args:
        keys: keys of the labels to transform.
        output_key: ``None`` to overwrite each key, or the new key(s) (one per key) that receive the soft labels,
            keeping the hard labels (e.g. for metrics).
        spacing: as in :class:`SAUNATransform`; ``"auto"`` (alias ``"meta"``) reads ``pixdim`` from the
            ``MetaTensor`` under each key.
        classes, num_classes, include_background, distance, mode, slice_axis, full_value, num_threads:
            see :class:`SAUNATransform`.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: ``output_key`` count differs from ``keys``; see :class:`SAUNATransform`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 9, 9), np.uint8); label[0, 4, 1:8] = 1
        >>> data = SAUNATransformd(keys="label", output_key="soft")({"label": label})
        >>> sorted(data), data["soft"].shape
        (['label', 'soft'], (1, 9, 9))
    """

    backend = SAUNATransform.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_key: Optional[KeysCollection] = None,
        spacing: SpacingLike = None,
        classes: Optional[Sequence[int]] = None,
        num_classes: Optional[int] = None,
        include_background: bool = False,
        distance: str = "edt",
        mode: str = "nd",
        slice_axis: int = 0,
        full_value: Optional[float] = 1.0,
        num_threads: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is None:
            self.output_keys = self.keys
        else:
            self.output_keys = tuple(output_key) if isinstance(output_key, (list, tuple)) else (output_key,)
            if len(self.output_keys) != len(self.keys):
                raise ValueError(
                    f"output_key must give one key per key: {len(self.keys)} keys, got {self.output_keys}."
                )
        self.transform = SAUNATransform(
            spacing, classes, num_classes, include_background, distance, mode, slice_axis, full_value, num_threads
        )

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.transform(d[key])
        return d


def sauna_to_label(
    signed,
    threshold: float = 0.0,
    exclusive: bool = True,
    classes: Optional[Sequence[int]] = None,
    channel_dim: int = 0,
):
    """Decode signed soft labels or logits (SAUNA outputs) into a label map or per-class masks.

    A voxel belongs to class c when ``signed[c] >= threshold`` (the released inference rule ``tanh(z) >= 0``; on
    logits, 0 is the same threshold).

    Args:
        signed: ``(C, *spatial)`` or batched ``(B, C, *spatial)`` (then ``channel_dim=1``), numpy array or tensor.
        threshold: decision threshold (0 for tanh outputs and for logits).
        exclusive: ``True`` for mutually exclusive classes: argmax over channels, background (0) wherever every
            channel is below ``threshold``; returns an int64 label map with a singleton channel axis.
            ``False`` for multi-label problems: per-channel threshold; returns a bool mask of the input's shape.
        classes: label value of each channel for ``exclusive=True``; default ``1..C`` (the channels of
            :class:`SAUNATransform` with ``include_background=False``). Use ``range(C)`` when channel 0 is background.
        channel_dim: axis of the channels.

    Returns:
        Same type (and device) as ``signed``, a MetaTensor keeping ``signed.meta``: ``(1, *spatial)`` /
        ``(B, 1, *spatial)`` int64 labels, or bool masks.

    Raises:
        ValueError: not an array/tensor, empty, NaN, non-real dtype, bad ``channel_dim`` or ``classes`` length.

    Example:
        >>> import torch
        >>> tanh_out = torch.tensor([[[0.7, -0.3]], [[0.9, -0.8]]])  # (C=2, 1, 2): two foreground classes
        >>> sauna_to_label(tanh_out).tolist()  # argmax where some channel is >= 0, background elsewhere
        [[[2, 0]]]
    """
    if not isinstance(signed, (torch.Tensor, np.ndarray)):
        raise ValueError(f"signed must be a numpy array or a torch tensor, got {type(signed).__name__}.")
    if signed.ndim < 2 or not -signed.ndim <= channel_dim < signed.ndim:
        raise ValueError(
            f"signed must have a channel axis {channel_dim} and spatial axes, got shape {tuple(signed.shape)}."
        )
    if any(n == 0 for n in signed.shape):
        raise ValueError(f"signed is empty (shape {tuple(signed.shape)}).")
    is_torch = isinstance(signed, torch.Tensor)
    x = signed.as_tensor() if isinstance(signed, MetaTensor) else signed
    if is_torch:
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"signed must be a real floating point tensor, got dtype {x.dtype}.")
        if x.is_floating_point() and bool(torch.isnan(x).any()):
            raise ValueError("signed contains NaN values.")
    else:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"signed must be a real floating point array, got dtype {x.dtype}.")
        if np.issubdtype(x.dtype, np.floating) and bool(np.isnan(x).any()):
            raise ValueError("signed contains NaN values.")
    # a MetaTensor input keeps its metadata (affine, filename) so that MONAI's SaveImage can write the labels
    keep_meta = (lambda out: MetaTensor(out, meta=signed.meta)) if isinstance(signed, MetaTensor) else (lambda out: out)
    above = x >= threshold
    if not exclusive:
        return keep_meta(above)
    n_ch = x.shape[channel_dim]
    ids = list(range(1, n_ch + 1)) if classes is None else [int(c) for c in classes]
    if len(ids) != n_ch:
        raise ValueError(f"classes must give one label per channel ({n_ch}), got {len(ids)}.")
    if is_torch:
        best = torch.argmax(x, dim=channel_dim, keepdim=True)
        lut = torch.as_tensor(ids, dtype=torch.long, device=x.device)
        labels = keep_meta(torch.where(above.any(dim=channel_dim, keepdim=True), lut[best], torch.zeros_like(best)))
    else:
        best = np.argmax(x, axis=channel_dim)
        best = np.expand_dims(best, channel_dim)
        labels = np.where(above.any(axis=channel_dim, keepdims=True), np.asarray(ids, dtype=np.int64)[best], 0)
        labels = labels.astype(np.int64)
    return labels


class SAUNADecode(Transform):
    """Decode a SAUNA network output (signed soft labels, ``tanh`` outputs or logits) into labels.

    Array transform wrapping :func:`sauna_to_label` on a channel-first ``(C, *spatial)`` input, for MONAI
    post-processing chains (the dictionary version is :class:`SAUNADecoded`).

    Args:
        threshold: decision threshold (0 for ``tanh`` outputs and for logits, the released inference rule).
        exclusive: ``True``: argmax over channels with background (0) where every channel is below ``threshold``,
            an int64 ``(1, *spatial)`` label map. ``False``: per-channel threshold, a bool ``(C, *spatial)`` mask.
        classes: label value of each channel with ``exclusive=True``; default ``1..C`` (the channels of
            :class:`SAUNATransform` with ``include_background=False``).

    Shapes:
        input ``(C, H, W[, D])``; output ``(1, H, W[, D])`` int64 or ``(C, H, W[, D])`` bool, of the input's type
        (numpy array, tensor on the input's device, or ``MetaTensor`` keeping its metadata).

    Raises:
        ValueError: see :func:`sauna_to_label`.

    Example:
        >>> import torch
        >>> out = torch.tensor([[[0.9, -0.2], [-0.8, 0.1]], [[0.3, -0.5], [0.4, -0.1]]])
        >>> SAUNADecode()(out).tolist()
        [[[1, 0], [2, 1]]]
        >>> SAUNADecode(exclusive=False)(out)[1].tolist()
        [[True, False], [True, False]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = 0.0, exclusive: bool = True, classes: Optional[Sequence[int]] = None) -> None:
        if not isinstance(threshold, numbers.Real) or not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}.")
        if classes is not None and (len(classes) == 0 or any(int(c) != c or c < 0 for c in classes)):
            raise ValueError(f"classes must be a non-empty sequence of non-negative ints, got {classes!r}.")
        self.threshold = float(threshold)
        self.exclusive = bool(exclusive)
        self.classes = None if classes is None else [int(c) for c in classes]

    def __call__(self, img):
        """``img``: ``(C, *spatial)`` SAUNA output; returns the labels (see the class docstring)."""
        return sauna_to_label(img, threshold=self.threshold, exclusive=self.exclusive, classes=self.classes)


class SAUNADecoded(MapTransform):
    """Dictionary version of :class:`SAUNADecode` (e.g. ``keys="pred"`` in a bundle's inference postprocessing).

    Args:
        keys: keys of the SAUNA outputs to decode.
        threshold, exclusive, classes: see :class:`SAUNADecode`.
        allow_missing_keys: don't raise if a key is missing.

    Example:
        >>> import torch
        >>> d = SAUNADecoded(keys="pred")({"pred": torch.tensor([[[0.5, -0.5]]])})
        >>> d["pred"].tolist()
        [[[1, 0]]]
    """

    backend = SAUNADecode.backend

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float = 0.0,
        exclusive: bool = True,
        classes: Optional[Sequence[int]] = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decoder = SAUNADecode(threshold, exclusive, classes)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.decoder(d[key])
        return d
