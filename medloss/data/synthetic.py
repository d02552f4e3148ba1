"""Synthetic vessel phantoms and datasets for examples, tests, the demo and the bundles (no download needed).

A phantom (:func:`vessel_phantom`) is a tree of tortuous tubes whose radius shrinks at every bifurcation, down to
1-voxel-wide vessels. Centre lines are rasterised as 6-connected voxel paths so that even the thinnest vessel is one
connected component in the V-construction used by Betti matching (foreground 4/6-connected).
:func:`vessel_image` renders an angiography-like image of it, :func:`rater_masks` simulates annotators, and
:func:`write_synthetic_dataset` writes whole datasets in the layout of :mod:`medloss.data.layout`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["vessel_phantom", "vessel_image", "rater_masks", "synthesis_target", "write_synthetic_dataset"]

# test cases use other seeds than training cases, so that a model is never tested on a training phantom
_TEST_SEED_OFFSET = 500


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

    Args:
        shape: 2D ``(H, W)`` or 3D ``(H, W, D)`` output shape, every size ``>= 8``.
        seed: seed of ``numpy.random.default_rng``.
        n_trees: number of trees, each entering from a random face of the volume.
        max_depth: number of bifurcation levels.
        root_radius: range of the root radius in voxels; children get 0.6-0.8 of their parent's radius.
        min_radius: radius floor in voxels. Radii below 1 give 1-voxel-wide vessels.
        tortuosity: strength of the random walk of the centre-line direction (0 = straight tubes).

    Returns:
        A ``uint8`` array of shape ``shape`` with values in {0, 1}.

    Raises:
        ValueError: ``shape`` not 2D or 3D, or a size below 8.

    Example:
        >>> label = vessel_phantom((16, 16, 16), seed=0)
        >>> label.shape, label.dtype, bool(label.any())
        ((16, 16, 16), dtype('uint8'), True)
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

    Args:
        label: the phantom (or any binary mask).
        seed: seed of ``numpy.random.default_rng``.
        contrast: vessel intensity above the background.
        noise: standard deviation of the Gaussian noise.
        inhomogeneity: relative strength of the smooth multiplicative bias field.
        blur: standard deviation (voxels) of the partial-volume blur.

    Returns:
        A ``float32`` array of the label's shape, roughly in [0, 1].
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

    Args:
        label: the reference mask (values > 0 are foreground).
        n_raters: number of raters.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(n_raters, *label.shape)`` ``uint8`` masks.
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


def synthesis_target(label: np.ndarray, seed: Optional[int] = 0) -> np.ndarray:
    """A second contrast of the same anatomy: dark vessels on a brighter, smoother background.

    Args:
        label: the phantom.
        seed: seed of ``numpy.random.default_rng`` (the noise).

    Returns:
        A ``float32`` array of the label's shape.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    vessels = gaussian_filter(label.astype(np.float32), 0.8)
    noise = 0.02 * rng.standard_normal(label.shape).astype(np.float32)
    return (0.8 - 0.6 * vessels + noise).astype(np.float32)


def write_synthetic_dataset(
    root: Union[str, Path],
    n_cases: int = 4,
    size: int = 32,
    seed: int = 0,
    split: str = "Tr",
    spatial_dims: int = 3,
    n_raters: int = 0,
    num_groups: int = 1,
    with_target: bool = False,
    two_classes: bool = False,
    spacing: Optional[Sequence[float]] = None,
    phantom: Optional[Mapping[str, Any]] = None,
    case_prefix: Optional[str] = None,
) -> Path:
    """Write synthetic vessel cases in the dataset layout of :mod:`medloss.data.layout` under ``root``.

    Case ``i`` (named ``f"{case_prefix}{i:03d}"``) is ``vessel_phantom((size,) * spatial_dims, seed=s, **phantom)``
    with ``s = seed * 1000 + i`` for training cases and ``seed * 1000 + 500 + i`` for test cases (so a test phantom
    is never a training phantom), and ``vessel_image(label, seed=s)`` as its image ``images{split}/<case>_0000``.
    Every case gets the group ``i % num_groups``; group ``g`` images have a lower contrast and more noise
    (``contrast = 1 / (1 + 0.5 g)``, ``noise = 0.25 + 0.05 g``), so that the groups differ in difficulty (group 0 is
    ``vessel_image``'s default). Optional: ``n_raters`` masks ``rater_masks(label, n_raters, seed=s)`` in
    ``raters{split}/``, a second-contrast target image :func:`synthesis_target` in ``targets{split}/``.

    ``groups.json`` (merged with an existing one) and, for the training split, ``dataset.json`` (nnU-Net v2: one
    ``"MRA"`` channel, the labels, ``numTraining``, ``file_ending`` ``.nii.gz``, the folder name as ``name``) are
    written, so that ``root`` named ``Dataset<ID>_<Name>`` under ``nnUNet_raw`` is an nnU-Net raw dataset.
    Existing case files are overwritten.

    Args:
        root: the dataset folder (created if needed).
        n_cases: number of cases, ``1 <= n_cases <= 500``.
        size: edge length in voxels (``>= 8``).
        seed: base seed (see above).
        split: ``"Tr"`` (training) or ``"Ts"`` (test).
        spatial_dims: 2 or 3.
        n_raters: number of simulated raters (0 = none).
        num_groups: number of groups.
        with_target: also write a target image for image-to-image synthesis.
        two_classes: label thin vessels (distance to the background below 1.5 voxels) 2, the others 1.
        spacing: voxel spacing written into every file's affine (see :func:`medloss.data.nifti.save_nifti`).
        phantom: keyword arguments of :func:`vessel_phantom` (``n_trees``, ``max_depth``, ``root_radius``...).
        case_prefix: case name prefix; default ``"vessel_tr"`` / ``"vessel_ts"``.

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: ``n_cases`` outside ``[1, 500]``, ``size < 8``, ``n_raters < 0``, ``num_groups < 1``, an unknown
            ``split``, ``spatial_dims`` not 2 or 3, or a ``spacing`` of the wrong length.

    Example:
        >>> import tempfile
        >>> from medloss.data import list_nnunet_cases
        >>> root = write_synthetic_dataset(tempfile.mkdtemp(), n_cases=2, size=8, num_groups=2)
        >>> [(c["case"], c["group"]) for c in list_nnunet_cases(root, with_groups=True)]
        [('vessel_tr000', 0), ('vessel_tr001', 1)]
    """
    from medloss.data.layout import NIFTI_ENDING, check_split, rater_path
    from medloss.data.nifti import save_nifti

    check_split(split)
    if not 1 <= int(n_cases) <= _TEST_SEED_OFFSET:
        raise ValueError(f"n_cases must be in [1, {_TEST_SEED_OFFSET}], got {n_cases}.")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 voxels (vessel_phantom's minimum), got {size}.")
    if int(n_raters) < 0:
        raise ValueError(f"n_raters must be >= 0, got {n_raters}.")
    if int(num_groups) < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    if spacing is not None and len(spacing) != spatial_dims:
        raise ValueError(f"spacing must hold {spatial_dims} values, got {tuple(spacing)}.")
    root = Path(root)
    prefix = f"vessel_{split.lower()}" if case_prefix is None else case_prefix
    folders = ["images", "labels"] + (["raters"] if n_raters else []) + (["targets"] if with_target else [])
    for folder in folders:
        (root / f"{folder}{split}").mkdir(parents=True, exist_ok=True)
    first_seed = int(seed) * 1000 + (_TEST_SEED_OFFSET if split == "Ts" else 0)
    groups = {}
    for i in range(int(n_cases)):
        case, case_seed, group = f"{prefix}{i:03d}", first_seed + i, i % int(num_groups)
        label = vessel_phantom((int(size),) * spatial_dims, seed=case_seed, **dict(phantom or {}))
        image = vessel_image(label, seed=case_seed, contrast=1.0 / (1.0 + 0.5 * group), noise=0.25 + 0.05 * group)
        save_nifti(image, root / f"images{split}" / f"{case}_0000{NIFTI_ENDING}", spacing)
        save_nifti(_two_classes(label) if two_classes else label, root / f"labels{split}" / f"{case}{NIFTI_ENDING}",
                   spacing)
        if n_raters:
            for k, mask in enumerate(rater_masks(label, int(n_raters), seed=case_seed)):
                save_nifti(mask, rater_path(root, case, k, split), spacing)
        if with_target:
            save_nifti(synthesis_target(label, case_seed), root / f"targets{split}" / f"{case}{NIFTI_ENDING}",
                       spacing)
        groups[case] = group
    groups_file = root / "groups.json"
    known = json.loads(groups_file.read_text()) if groups_file.is_file() else {}
    groups_file.write_text(json.dumps({**known, **groups}, indent=1, sort_keys=True))
    if split == "Tr":
        labels = {"background": 0, "vessel": 1, **({"thin_vessel": 2} if two_classes else {})}
        dataset_json = {"channel_names": {"0": "MRA"}, "labels": labels,
                        "numTraining": len(list((root / "imagesTr").glob(f"*_0000{NIFTI_ENDING}"))),
                        "file_ending": NIFTI_ENDING, "name": root.name}
        (root / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return root


def _two_classes(label: np.ndarray) -> np.ndarray:
    """Label 1 for vessel voxels at least 1.5 voxels from the background, 2 for the thinner ones."""
    from scipy.ndimage import distance_transform_edt

    thick = distance_transform_edt(label) >= 1.5
    return np.where(label > 0, np.where(thick, 1, 2), 0).astype(np.uint8)
