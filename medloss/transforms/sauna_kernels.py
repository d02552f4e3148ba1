"""Numerical kernels of the SAUNA signed soft labels: distance transforms and the soft label of one binary mask.

Dang, V. N. et al. (2025) "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation",
WACV 2025, https://arxiv.org/abs/2405.16815. The 2D definition follows the released code
(https://github.com/Oulu-IMEDS/SAUNA, commit ``dd46324``, ``mlpipeline/utils/generate_uncertainty_masks.py``, default
mode ``'h'``, OpenCV's 5x5 chamfer distance); the exact Euclidean variant, spacing and 3D are medloss's generalisation
of it. The MONAI transforms built on these kernels are in :mod:`medloss.transforms.sauna`.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import numba
import numpy as np
import torch
from scipy import ndimage

__all__ = ["sauna_soft_label", "sauna_chamfer_maps", "chamfer_distance_cv2", "check_soft_label_options"]

_EPS = 1e-6  # the released code's epsilon, in units of the smallest voxel spacing
_K_TOL = 1e-6  # relative slack so that M / s = 3 + rounding noise still gives a window of 3, not 5
_DISTANCES = ("edt", "chamfer_cv2")
_MODES = ("nd", "2d_slicewise")


# --------------------------------------------------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _chamfer_5x5_kernel(obj: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    hv, diag, knight = np.float32(1.0), np.float32(1.4), np.float32(2.1969)
    h, w = obj.shape
    # cells outside the image hold FLT_MAX (+ a weight rounds back to FLT_MAX): they are never background
    tmp = np.full((h + 4, w + 4), np.float32(3.4028234663852886e38), dtype=np.float32)
    for i in range(2, h + 2):  # forward raster scan with the upper half of the 5x5 mask
        for j in range(2, w + 2):
            if not obj[i - 2, j - 2]:
                tmp[i, j] = 0
                continue
            t0 = tmp[i - 2, j - 1] + knight
            t = tmp[i - 2, j + 1] + knight
            if t0 > t:
                t0 = t
            t = tmp[i - 1, j - 2] + knight
            if t0 > t:
                t0 = t
            t = tmp[i - 1, j - 1] + diag
            if t0 > t:
                t0 = t
            t = tmp[i - 1, j] + hv
            if t0 > t:
                t0 = t
            t = tmp[i - 1, j + 1] + diag
            if t0 > t:
                t0 = t
            t = tmp[i - 1, j + 2] + knight
            if t0 > t:
                t0 = t
            t = tmp[i, j - 1] + hv
            if t0 > t:
                t0 = t
            tmp[i, j] = t0
    for i in range(h + 1, 1, -1):  # backward scan with the lower half
        for j in range(w + 1, 1, -1):
            t0 = tmp[i, j]
            if t0 > hv:
                t = tmp[i + 2, j + 1] + knight
                if t0 > t:
                    t0 = t
                t = tmp[i + 2, j - 1] + knight
                if t0 > t:
                    t0 = t
                t = tmp[i + 1, j + 2] + knight
                if t0 > t:
                    t0 = t
                t = tmp[i + 1, j + 1] + diag
                if t0 > t:
                    t0 = t
                t = tmp[i + 1, j] + hv
                if t0 > t:
                    t0 = t
                t = tmp[i + 1, j - 1] + diag
                if t0 > t:
                    t0 = t
                t = tmp[i + 1, j - 2] + knight
                if t0 > t:
                    t0 = t
                t = tmp[i, j + 1] + hv
                if t0 > t:
                    t0 = t
                tmp[i, j] = t0
    return tmp[2 : h + 2, 2 : w + 2].copy()


def chamfer_distance_cv2(mask: np.ndarray) -> np.ndarray:
    """OpenCV's ``distanceTransform(mask, DIST_L2, DIST_MASK_5)`` without OpenCV.

    Two raster passes of the 5x5 chamfer mask with weights 1 (axial), 1.4 (diagonal) and 2.1969 (knight move),
    summed in float32 in OpenCV's order, so the result is bit-identical to cv2 (5.x). Pixels outside the image are
    not background; a mask without any zero pixel gives ``FLT_MAX`` everywhere, as cv2 does.

    Args:
        mask: ``(H, W)`` array; non-zero pixels get their distance to the nearest zero pixel, zero pixels get 0.

    Returns:
        ``(H, W)`` float32 array.

    Example:
        >>> import numpy as np
        >>> chamfer_distance_cv2(np.array([[0, 1, 1, 1]])).tolist()
        [[0.0, 1.0, 2.0, 3.0]]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"chamfer_distance_cv2 expects a 2D mask, got shape {mask.shape}.")
    return _chamfer_5x5_kernel(np.ascontiguousarray(mask != 0))


def _edt(obj: np.ndarray, anisotropy: Tuple[float, ...], num_threads: int) -> np.ndarray:
    """Exact Euclidean distance (float32) of every non-zero voxel to the nearest zero voxel."""
    import edt  # imported here: only the exact-distance path needs it

    return edt.edt(np.ascontiguousarray(obj), anisotropy=anisotropy, black_border=False, parallel=num_threads)


def _odd_window(extent: float, tolerant: bool) -> int:
    # ceil(M / s) bumped to odd, as the released do_max_pooling; the tolerance absorbs float noise of physical units
    k = math.ceil(extent - _K_TOL * max(1.0, extent)) if tolerant else math.ceil(extent)
    k = max(k, 1)
    return k + 1 if k % 2 == 0 else k


# --------------------------------------------------------------------------------------------------------------------
# one binary mask
# --------------------------------------------------------------------------------------------------------------------
def sauna_chamfer_maps(mask: np.ndarray) -> dict:
    """The intermediate maps of the released 2D code ('h' mode) with the cv2 chamfer distance, in its float32
    operation order.

    Args:
        mask: ``(H, W)`` bool mask with at least one background pixel.

    Returns:
        ``{"d_in", "fg_max", "soft_label"}`` and, unless the mask is empty, ``"d_out"``, ``"boundary"``,
        ``"thickness"`` (float32 maps) and ``"kernel_size"`` (the max-pool window).
    """
    d_in = chamfer_distance_cv2(mask)
    fg_max = d_in.max()  # float32, like cv2's
    out = {"d_in": d_in, "fg_max": fg_max}
    if fg_max == 0:
        out["soft_label"] = np.full(mask.shape, -1.0, dtype=np.float32)
        return out
    d_out = chamfer_distance_cv2(~mask)
    d_cap = np.minimum(d_out, fg_max)
    denom = fg_max + np.float32(_EPS)
    boundary = (d_in - d_cap) / denom
    k = _odd_window(float(fg_max), tolerant=False)
    # maximum_filter pads with 0 here; distances are >= 0 and the centre is in the window, so padding never wins
    pool_in = ndimage.maximum_filter(d_in, size=k, mode="constant", cval=0.0)
    pool_out = ndimage.maximum_filter(d_cap, size=k, mode="constant", cval=0.0)
    thickness = np.where(mask, pool_in / denom, np.clip(pool_out / denom, 0.0, 1.0)).astype(np.float32)
    soft = boundary.copy()
    pos = (thickness > 0) & (boundary > 0)
    neg = (thickness > 0) & (boundary < 0)
    soft[pos] = boundary[pos] + (np.float32(1.0) - thickness[pos])
    soft[neg] = boundary[neg] - (np.float32(1.0) - thickness[neg])
    out.update(d_out=d_out, boundary=boundary, thickness=thickness, kernel_size=k,
               soft_label=np.clip(soft, -1.0, 1.0).astype(np.float32))
    return out


def _box(lo: np.ndarray, hi: np.ndarray, margin: Sequence[int], shape: Tuple[int, ...]) -> Tuple[slice, ...]:
    return tuple(slice(max(int(a) - m, 0), min(int(b) + 1 + m, n)) for a, b, m, n in zip(lo, hi, margin, shape))


@numba.njit(cache=True, nogil=True)
def _split_distances(dist, mask, fg_max):  # pragma: no cover - compiled
    # D_in on the object (0 elsewhere) and d = min(D_out, M) on the background (0 elsewhere), in one pass
    d_in = np.zeros(dist.shape, np.float32)
    d_cap = np.zeros(dist.shape, np.float32)
    fd, fm, fi, fc = dist.ravel(), mask.ravel(), d_in.ravel(), d_cap.ravel()
    for n in range(fd.size):
        if fm[n]:
            fi[n] = fd[n]
        else:
            fc[n] = min(fd[n], fg_max)
    return d_in, d_cap


@numba.njit(cache=True, nogil=True)
def _combine(mask, d_in, pool_in, d_cap, pool_out, inv_denom, out):  # pragma: no cover - compiled
    # object: 1 - (maxpool(D_in) - D_in) / (M + eps); background: -1 + (maxpool(d) - d) / (M + eps)
    fm, fi, fpi, fc, fpo, fo = mask.ravel(), d_in.ravel(), pool_in.ravel(), d_cap.ravel(), pool_out.ravel(), out.ravel()
    one = np.float32(1.0)
    for n in range(fm.size):
        if fm[n]:
            v = one - (fpi[n] - fi[n]) * inv_denom
        else:
            v = (fpo[n] - fc[n]) * inv_denom - one
        fo[n] = min(max(v, -one), one)


def _bbox(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        lo.append(hit[0])
        hi.append(hit[-1])
    return np.array(lo), np.array(hi)


def _radius_bound(spacing: float, lo: int, hi: int, n: int) -> float:
    """Upper bound of M from the bounding box along one axis.

    The voxels within distance < M of the deepest object voxel are object voxels, so along an axis the object run
    through it has at least ``2 ceil(M / s) - 1`` voxels when background closes it on both sides. A side at the
    image border is not background (the run may be cut there), which weakens the bound.
    """
    at_border = int(lo == 0) + int(hi == n - 1)
    extent = hi - lo + 1
    return (spacing * (extent + 1) / 2.0, spacing * extent, math.inf)[at_border]


def _soft_label_edt(mask: np.ndarray, anisotropy: Tuple[float, ...], num_threads: int, out: np.ndarray) -> None:
    """Closed form of 'h' mode with the exact EDT, computed on a crop around the mask.

    Outside ``bbox + ceil(M / s) + k // 2`` every window sees only the capped distance M, hence -1; inside, the
    crop changes nothing because the nearest object/background voxel of any voxel lies in the crop. M is not known
    before the distance transform, so the crop uses an upper bound of M from the bounding box
    (:func:`_radius_bound`) and is shrunk once M is known.
    """
    lo, hi = _bbox(mask)
    bound = min(_radius_bound(a, l, h, n) for a, l, h, n in zip(anisotropy, lo, hi, mask.shape))
    bound = min(bound, math.sqrt(sum((a * n) ** 2 for a, n in zip(anisotropy, mask.shape))))
    reach = [math.ceil(bound / a) + _odd_window(bound / a, tolerant=False) // 2 + 1 for a in anisotropy]
    box = _box(lo, hi, reach, mask.shape)
    sub = np.ascontiguousarray(mask[box])
    # two labels and no zero: edt gives each voxel its distance to the other label (D_in and D_out in one call)
    dist = _edt(sub.view(np.uint8) + np.uint8(1), anisotropy, num_threads)
    fg_max = float(dist[sub].max())
    size = [_odd_window(fg_max / a, tolerant=True) for a in anisotropy]
    reach = [math.ceil(fg_max / a) + k // 2 + 1 for a, k in zip(anisotropy, size)]
    # fg_max is a float32 distance: its ceil may exceed the float64 bound's by one step, so stay inside the crop
    inner = _box(lo, hi, reach, mask.shape)
    inner = tuple(slice(max(i.start, b.start), min(i.stop, b.stop)) for i, b in zip(inner, box))
    rel = tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(inner, box))
    sub, dist = np.ascontiguousarray(sub[rel]), np.ascontiguousarray(dist[rel])
    d_in, d_cap = _split_distances(dist, sub, np.float32(fg_max))
    del dist
    # padding with 0 never wins: distances are >= 0 and each window holds its centre
    pool_in = ndimage.maximum_filter(d_in, size=size, mode="constant", cval=0.0)
    pool_out = ndimage.maximum_filter(d_cap, size=size, mode="constant", cval=0.0)
    soft = np.empty(sub.shape, dtype=np.float32)
    _combine(sub, d_in, pool_in, d_cap, pool_out, np.float32(1.0 / (fg_max + _EPS)), soft)
    out.fill(-1.0)
    out[inner] = soft


def _soft_label_one(
    mask: np.ndarray,
    anisotropy: Tuple[float, ...],
    distance: str,
    full_value: Optional[float],
    num_threads: int,
    out: np.ndarray,
) -> None:
    """Write the soft label of one binary mask (one 2D or 3D window; ``anisotropy`` has min 1) into ``out``."""
    if not mask.any():
        out.fill(-1.0)
    elif mask.all():
        if full_value is None:
            raise ValueError(
                "the mask has no background voxel, so the SAUNA scale M (largest distance to background) is "
                "undefined; pass full_value (e.g. 1.0) to fill such masks."
            )
        out.fill(full_value)
    elif distance == "chamfer_cv2":
        out[...] = sauna_chamfer_maps(mask)["soft_label"]
    else:
        _soft_label_edt(mask, anisotropy, num_threads, out)


def _normalise_spacing(spacing, ndim: int) -> Tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, torch.Tensor):
        spacing = spacing.detach().cpu().numpy()
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64)).ravel()
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        got = np.asarray(spacing).tolist()
        raise ValueError(f"spacing must be one positive finite value or {ndim} of them, got {got}.")
    return tuple(float(s) for s in sp / sp.min())


def sauna_soft_label(
    mask: np.ndarray,
    spacing: Optional[Union[float, Sequence[float]]] = None,
    *,
    distance: str = "edt",
    mode: str = "nd",
    slice_axis: int = 0,
    full_value: Optional[float] = 1.0,
    num_threads: int = 1,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """SAUNA signed soft label of one binary mask (2D or 3D, no channel axis).

    With ``D_in`` the distance of a foreground voxel to the background, ``d = min(D_out, M)`` the capped distance of a
    background voxel to the foreground, ``M = max D_in`` and ``P_k`` a max-pool of odd window ``k`` ("same", padding
    never wins), the released default mode ('h') reduces to

    * foreground: ``1 - (P_k(D_in) - D_in) / (M + eps)``, in (0, 1];
    * background: ``-1 + (P_k(d) - d) / (M + eps)``, in [-1, 0);

    so thin structures and centre lines get +1, rims of thick structures and background squeezed next to them get
    values nearer 0. ``eps = 1e-6`` times the smallest spacing (the released code's ``1e-6`` in voxel units). An
    empty mask gives -1 everywhere. The label depends on M, i.e. on the whole image: compute it before patch
    sampling.

    With ``distance="chamfer_cv2"`` the released code's own float32 sequence (boundary map + thickness map, then
    clip) is evaluated, which makes the output bit-identical to it. With ``"edt"`` the closed form above is used
    (float32, within 1e-7 of the float64 formula), the window is ``odd(ceil(M / s_i))`` up to a relative tolerance
    of 1e-6 (so ``M / s = 3 + rounding noise`` gives 3, not 5), and the work is restricted to the bounding box of
    the mask grown by the window reach, beyond which the label is exactly -1. In ``"2d_slicewise"`` mode every
    slice is its own mask (an empty slice is -1, a full one ``full_value``).

    Args:
        mask: ``(H, W)`` or ``(H, W, D)`` binary mask (bool or 0/1); non-zero is foreground.
        spacing: physical voxel size per axis (a float or a sequence). Distances and M are physical, the max-pool
            window is ``k_i = odd(ceil(M / s_i))`` voxels along axis i. Only ratios matter: isotropic spacing gives
            the same result as ``None``.
        distance: ``"edt"`` (default): exact Euclidean distance (``edt`` package). ``"chamfer_cv2"``: OpenCV's 5x5
            chamfer distance, bit-compatible with the released 2D code; 2D only (use ``mode="2d_slicewise"`` for
            volumes), and the in-plane spacing must be isotropic.
        mode: ``"nd"``: one M and one window for the whole array. ``"2d_slicewise"``: the released 2D transform
            applied to every slice along ``slice_axis`` independently (M varies per slice); identical to ``"nd"``
            in 2D.
        slice_axis: axis that indexes the slices in ``"2d_slicewise"`` mode.
        full_value: value for a mask without any background voxel, where M is undefined (the released code
            crashes). Default +1; ``None`` raises ``ValueError``.
        num_threads: threads of the exact distance transform.
        out: optional float32 array of the mask's shape that receives the result (returned).

    Returns:
        float32 array of the mask's shape, values in [-1, 1]; ``result > 0`` equals ``mask`` exactly.

    Raises:
        ValueError: mask not 2D/3D, empty, not binary or not finite; unknown ``distance``/``mode``; bad ``spacing``;
            ``chamfer_cv2`` on a volume in ``"nd"`` mode or with anisotropic in-plane spacing; a mask without
            background when ``full_value=None``; an ``out`` array of another shape or dtype.

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((9, 9), dtype=bool); mask[4, 1:8] = True
        >>> y = sauna_soft_label(mask)
        >>> bool(((y > 0) == mask).all()), float(y[4, 4]), float(y[0, 0])
        (True, 1.0, -1.0)
    """
    check_soft_label_options(distance, mode, full_value, num_threads)
    mask = _as_binary(np.asarray(mask), "mask")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or 3D (no channel axis), got shape {mask.shape}.")
    if out is None:
        out = np.empty(mask.shape, dtype=np.float32)
    elif not isinstance(out, np.ndarray) or out.shape != mask.shape or out.dtype != np.float32:
        got = (out.shape, out.dtype) if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be a float32 array of shape {mask.shape}, got {got}.")
    _fill(mask, spacing, distance, mode, slice_axis, full_value, num_threads, out)
    return out


def check_soft_label_options(distance: str, mode: str, full_value: Optional[float], num_threads: int) -> None:
    """Raise ``ValueError`` for invalid options of :func:`sauna_soft_label` (checked once by the transforms)."""
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}.")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
    if full_value is not None and not (
        isinstance(full_value, numbers.Real) and -1.0 <= full_value <= 1.0 and full_value != 0
    ):
        raise ValueError(f"full_value must be None or a non-zero value in [-1, 1], got {full_value!r}.")
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}.")


def _fill(mask, spacing, distance, mode, slice_axis, full_value, num_threads, out: np.ndarray) -> None:
    """:func:`sauna_soft_label` of a validated bool ``mask``, written into the float32 view ``out``."""
    aniso = _normalise_spacing(spacing, mask.ndim)
    if mode == "2d_slicewise" and mask.ndim == 3:
        if not isinstance(slice_axis, int) or not -3 <= slice_axis < 3:
            raise ValueError(f"slice_axis must be an int in [-3, 2] for a 3D mask, got {slice_axis!r}.")
        axis = slice_axis % 3
        plane = tuple(a for i, a in enumerate(aniso) if i != axis)
        plane = tuple(a / min(plane) for a in plane)
        _check_chamfer_plane(distance, plane)
        out_slices = np.moveaxis(out, axis, 0)
        for i, sl in enumerate(np.moveaxis(mask, axis, 0)):
            _soft_label_one(sl, plane, distance, full_value, num_threads, out_slices[i])
        return
    if distance == "chamfer_cv2" and mask.ndim != 2:
        raise ValueError("distance='chamfer_cv2' is the 2D OpenCV distance; use mode='2d_slicewise' for 3D masks.")
    _check_chamfer_plane(distance, aniso)
    _soft_label_one(mask, aniso, distance, full_value, num_threads, out)


def _check_chamfer_plane(distance: str, plane: Tuple[float, ...]) -> None:
    if distance == "chamfer_cv2" and max(plane) > 1.0 + 1e-9:
        raise ValueError(f"distance='chamfer_cv2' needs isotropic in-plane spacing, got relative spacing {plane}.")


def _as_binary(mask: np.ndarray, name: str) -> np.ndarray:
    if mask.size == 0:
        raise ValueError(f"{name} is empty (shape {mask.shape}).")
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise ValueError(f"{name} must hold bool, integer or float values, got dtype {mask.dtype}.")
    if np.issubdtype(mask.dtype, np.floating) and not np.isfinite(mask).all():
        raise ValueError(f"{name} contains NaN/Inf values.")
    binary = mask != 0
    if not bool((mask[binary] == 1).all()):
        raise ValueError(f"{name} must be binary (0/1), got values such as {np.unique(mask)[:8].tolist()}.")
    return binary
