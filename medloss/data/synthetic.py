"""Synthetic vessel phantoms for examples, tests and the demo (no download needed).

A phantom is a tree of tortuous tubes whose radius shrinks at every bifurcation, down to 1-voxel-wide
vessels. Centre lines are rasterised as 6-connected voxel paths so that even the thinnest vessel is one
connected component in the V-construction used by Betti matching (foreground 4/6-connected).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["vessel_phantom", "vessel_image", "rater_masks"]


def _six_connected_path(a: np.ndarray, b: np.ndarray) -> List[np.ndarray]:
    """Voxels from ``a`` to ``b`` (integer, 26-adjacent or equal) changing one coordinate at a time."""
    out, cur = [], a.copy()
    for axis in np.flatnonzero(b != a):
        cur = cur.copy()
        cur[axis] = b[axis]
        out.append(cur)
    return out


def _grow_branch(rng, shape, start, direction, radius, depth, max_depth, tortuosity, min_radius, out):
    pos = np.asarray(start, dtype=float)
    d = direction / np.linalg.norm(direction)
    length = rng.uniform(0.35, 0.7) * min(shape)
    last = np.round(pos).astype(int)
    steps = int(length / 0.5)
    for i in range(steps):
        d = d + tortuosity * rng.standard_normal(len(shape)) * 0.35
        d /= np.linalg.norm(d)
        pos = pos + 0.5 * d
        if np.any(pos < 0) or np.any(pos > np.asarray(shape) - 1):
            return
        vox = np.round(pos).astype(int)
        if np.any(vox != last):
            r = radius * (1.0 - 0.3 * i / steps)  # gentle tapering along the branch
            for v in _six_connected_path(last, vox):
                out.append((v, max(r, min_radius)))
            last = vox
    if depth >= max_depth or radius * 0.75 < min_radius * 0.99:
        return
    for _ in range(2):
        # children leave at 25-60 degrees from the parent, Murray-like radius reduction
        turn = rng.standard_normal(len(shape))
        turn -= turn.dot(d) * d
        turn /= np.linalg.norm(turn) + 1e-12
        angle = rng.uniform(0.45, 1.05)
        child = np.cos(angle) * d + np.sin(angle) * turn
        _grow_branch(rng, shape, pos, child, radius * rng.uniform(0.6, 0.8), depth + 1, max_depth, tortuosity,
                     min_radius, out)


def vessel_phantom(
    shape: Sequence[int] = (64, 64, 64),
    seed: Optional[int] = 0,
    n_trees: int = 2,
    max_depth: int = 3,
    root_radius: Tuple[float, float] = (2.0, 3.5),
    min_radius: float = 0.5,
    tortuosity: float = 0.3,
) -> np.ndarray:
    """Binary vessel tree phantom.

    Parameters
    ----------
    shape : sequence of int
        2D ``(H, W)`` or 3D ``(H, W, D)`` output shape.
    seed : int or None
        Seed of ``numpy.random.default_rng``.
    n_trees : int
        Number of trees, each entering from a random face of the volume.
    max_depth : int
        Number of bifurcation levels.
    root_radius : (float, float)
        Range of the root radius in voxels; children get 0.6-0.8 of their parent's radius.
    min_radius : float
        Radius floor in voxels. Radii below 1 give 1-voxel-wide vessels.
    tortuosity : float
        Strength of the random walk of the centre-line direction (0 = straight tubes).

    Returns
    -------
    numpy.ndarray of uint8, shape ``shape``, values {0, 1}.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 8:
        raise ValueError(f"shape must be 2D or 3D with every size >= 8, got {shape}.")
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    centres: List[Tuple[np.ndarray, float]] = []
    for _ in range(n_trees):
        axis, side = rng.integers(ndim), rng.integers(2)
        start = rng.uniform(0.25, 0.75, ndim) * (np.asarray(shape) - 1)
        start[axis] = 0.0 if side == 0 else shape[axis] - 1.0
        direction = (np.asarray(shape) - 1) / 2.0 - start + rng.standard_normal(ndim) * min(shape) * 0.1
        _grow_branch(rng, shape, start, direction, rng.uniform(*root_radius), 0, max_depth, tortuosity, min_radius,
                     centres)
    label = np.zeros(shape, dtype=np.uint8)
    for c, r in centres:
        label[tuple(c)] = 1
        if r < 1.0:
            continue
        rr = int(np.ceil(r))
        lo = np.maximum(c - rr, 0)
        hi = np.minimum(c + rr + 1, shape)
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        dist2 = sum((g - ci) ** 2 for g, ci in zip(grid, c))
        label[tuple(slice(a, b) for a, b in zip(lo, hi))] |= (dist2 <= r * r).astype(np.uint8)
    return label


def vessel_image(
    label: np.ndarray,
    seed: Optional[int] = 0,
    contrast: float = 1.0,
    noise: float = 0.25,
    inhomogeneity: float = 0.3,
    blur: float = 0.7,
) -> np.ndarray:
    """Angiography-like image of a phantom: bright vessels, smooth bias field, partial volume blur and noise.

    Returns a float32 array of the label's shape, roughly in [0, 1].
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = gaussian_filter(label.astype(np.float32) * contrast, blur)
    bias = gaussian_filter(rng.standard_normal(label.shape).astype(np.float32), max(label.shape) / 6)
    bias = 1.0 + inhomogeneity * bias / (np.abs(bias).max() + 1e-8)
    img = img * bias + 0.1 + noise * rng.standard_normal(label.shape).astype(np.float32)
    return img.astype(np.float32)


def rater_masks(label: np.ndarray, n_raters: int = 3, seed: Optional[int] = 0) -> np.ndarray:
    """Simulated annotators: each rater dilates or erodes the vessels a little and may miss thin branch tips.

    Returns ``(n_raters, *label.shape)`` uint8.
    """
    from scipy.ndimage import binary_dilation, binary_erosion

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_raters):
        op = rng.integers(3)
        m = label.astype(bool)
        if op == 1:
            m = binary_dilation(m)
        elif op == 2:
            eroded = binary_erosion(m)
            m = eroded if eroded.sum() > 0.5 * m.sum() else m
        out.append(m.astype(np.uint8))
    return np.stack(out)
