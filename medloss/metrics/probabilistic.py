"""Metrics for a set of sampled segmentations against a set of rater masks (inter-rater variability).

``generalized_energy_distance`` (GED with d = 1 - IoU, Kohl et al. 2018) and ``max_dice`` (best sample per rater),
as reported by PULASki. Masks are binary arrays; numpy or torch in, a Python float out.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np

__all__ = ["generalized_energy_distance", "max_dice"]


def _as_mask_stack(masks, name: str) -> np.ndarray:
    """``(K, *spatial)`` binary array-like -> ``(K, V)`` float64 0/1 array, with clear errors."""
    if hasattr(masks, "detach"):  # torch tensor
        masks = masks.detach().cpu().numpy()
    arr = np.asarray(masks)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (K, *spatial) with K masks, got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one mask, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} masks are empty arrays (shape {arr.shape}).")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must be a numeric or boolean array, got dtype {arr.dtype}.")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN/Inf values; expected binary masks.")
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1), got values such as {np.unique(arr)[:8].tolist()}.")
    return arr.reshape(arr.shape[0], -1).astype(np.float64)


def _check_pair(samples, raters) -> Tuple[np.ndarray, np.ndarray]:
    s_shape = tuple(np.shape(samples.detach() if hasattr(samples, "detach") else samples))
    r_shape = tuple(np.shape(raters.detach() if hasattr(raters, "detach") else raters))
    if len(s_shape) != len(r_shape) or s_shape[1:] != r_shape[1:]:
        raise ValueError(
            f"samples {s_shape} and raters {r_shape} must be (N, *spatial) and (R, *spatial) with the same "
            "spatial shape."
        )
    return _as_mask_stack(samples, "samples"), _as_mask_stack(raters, "raters")


def _overlaps(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersections ``(K, L)`` and sizes of ``(K, V)`` / ``(L, V)`` 0/1 masks (exact in float64)."""
    return a @ b.T, a.sum(1), b.sum(1)


def _iou_distance(a: np.ndarray, b: np.ndarray, empty_distance: float) -> np.ndarray:
    inter, size_a, size_b = _overlaps(a, b)
    union = size_a[:, None] + size_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 - inter / union
    return np.where(union == 0, empty_distance, d)


def generalized_energy_distance(
    samples, raters, empty_distance: float = 0.0, return_components: bool = False
) -> Union[float, Tuple[float, float, float, float]]:
    """Generalised energy distance between sampled segmentations and rater masks, with d = 1 - IoU.

    Kohl et al., "A Probabilistic U-Net for Segmentation of Ambiguous Images", NeurIPS 2018
    (https://arxiv.org/abs/1806.05034); the variant used by PULASki (Chatterjee et al., Medical Image Analysis 2025).
    ``GED = 2 E[d(Y, S)] - E[d(S, S')] - E[d(Y, Y')]`` with the means over all pairs, including i = j (a
    V-statistic, as in PULASki; the i = j terms are 0). An empty and a non-empty mask have d = 1.

    Args:
        samples: ``(N, *spatial)`` N binary sampled segmentations (numpy or torch; any extra dims, e.g. channels,
            count as voxels).
        raters: ``(R, *spatial)`` R binary rater masks, same spatial shape.
        empty_distance: d for a pair of two empty masks, where IoU is 0/0. The default 0 treats them as identical,
            which keeps the GED finite. PULASki leaves IoU = NaN there, so one empty rater with one empty sample
            makes its GED NaN; pass ``float("nan")`` to reproduce that.
        return_components: also return the three means, ``(ged, d_YS, d_SS, d_YY)``.

    Returns:
        The GED as a float, or the tuple of four floats with ``return_components``.

    Raises:
        ValueError: N or R is zero, the spatial shapes differ, values are NaN or not binary.

    Example:
        >>> import numpy as np
        >>> y = np.zeros((2, 4, 4), bool); y[0, :2] = True; y[1, :3] = True
        >>> round(generalized_energy_distance(y, y), 12)
        0.0
        >>> s = np.zeros((1, 4, 4), bool); s[0, :2] = True  # d(S, Y_0) = 0, d(S, Y_1) = 1 - 8/12
        >>> round(generalized_energy_distance(s, y), 6)  # 2 * (1/3) / 2 - 0 - 2 * (1/3) / 4
        0.166667
    """
    s, y = _check_pair(samples, raters)
    d_ys = float(_iou_distance(y, s, empty_distance).mean())
    d_ss = float(_iou_distance(s, s, empty_distance).mean())
    d_yy = float(_iou_distance(y, y, empty_distance).mean())
    ged = 2.0 * d_ys - d_ss - d_yy
    return (ged, d_ys, d_ss, d_yy) if return_components else ged


def max_dice(samples, raters) -> float:
    """Best-sample Dice, averaged over raters: ``mean_r max_i Dice(S_i, Y_r)``.

    For each rater mask the sample that overlaps it best is found; the result is the mean of these best Dice
    scores over the raters. With a single reference mask (R = 1, e.g. PULASki's main label) it is the plain
    maximum Dice over the samples, as PULASki reports it.

    ``Dice(A, B) = 2 |A n B| / (|A| + |B|)``, and 1 when both masks are empty (a correct empty prediction).

    Args:
        samples: ``(N, *spatial)`` N binary sampled segmentations.
        raters: ``(R, *spatial)`` R binary reference masks.

    Returns:
        A float in ``[0, 1]``.

    Raises:
        ValueError: N or R is zero, the spatial shapes differ, values are NaN or not binary.

    Example:
        >>> import numpy as np
        >>> y = np.zeros((1, 4, 4), bool); y[0, :2] = True
        >>> s = np.stack([np.zeros((4, 4), bool), y[0]])
        >>> max_dice(s, y)
        1.0
    """
    s, y = _check_pair(samples, raters)
    inter, size_s, size_y = _overlaps(s, y)
    total = size_s[:, None] + size_y[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total == 0, 1.0, 2.0 * inter / total)
    return float(dice.max(axis=0).mean())
