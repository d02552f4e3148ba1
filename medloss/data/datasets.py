"""Case lists for training and inference: a given dataset folder, or synthetic cases written to a cache first.

The MONAI bundles (``medloss bundle list``) call these functions in their configs: with a ``dataset_dir`` they list
that folder (:func:`medloss.data.layout.list_nnunet_cases`); without one they write synthetic vessel cases
(:func:`medloss.data.synthetic.write_synthetic_dataset`) into a sub-folder of ``cache_dir`` once and list them the
same way, so the synthetic path and the real-data path run the same listing and loading code.

Example:
    >>> import tempfile
    >>> cases = vessel_dataset(None, tempfile.mkdtemp(), n_cases=2, size=8, with_groups=True, num_groups=2)
    >>> [(c["case"], c["group"]) for c in cases]
    [('vessel_tr000', 0), ('vessel_tr001', 1)]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Union

from medloss.data.layout import check_split, list_nnunet_cases
from medloss.data.synthetic import write_synthetic_dataset

__all__ = ["vessel_dataset", "synthesis_dataset"]

PathLike = Union[str, Path]


def _synthetic_root(cache_dir: Optional[PathLike], split: str, **params) -> Path:
    """The cache folder of one parameter set; its cases are written once and reused (a marker file says so)."""
    if cache_dir is None:
        raise ValueError("cache_dir is required when no dataset_dir is given (synthetic cases are written there).")
    check_split(split)
    name = "synthetic_{spatial_dims}d_n{n_cases}_s{size}_seed{seed}_r{n_raters}_g{num_groups}".format(**params)
    root = Path(cache_dir) / (name + ("_synth" if params["with_target"] else ""))
    marker = root / f"complete{split}.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == params):
        write_synthetic_dataset(root, split=split, **params)
        marker.write_text(json.dumps(params))
    return root


def vessel_dataset(
    dataset_dir: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
    n_cases: int = 4,
    size: int = 32,
    seed: int = 0,
    split: str = "Tr",
    n_raters: int = 0,
    with_groups: bool = False,
    num_groups: int = 2,
    spatial_dims: int = 3,
    require_labels: bool = True,
) -> List[Dict]:
    """Data dicts for vessel segmentation: ``dataset_dir`` listed, or synthetic phantoms written to ``cache_dir``.

    Args:
        dataset_dir: dataset folder (layout of :mod:`medloss.data.layout`); ``None`` (or ``""``) makes synthetic
            cases instead.
        cache_dir: where synthetic cases are written (one sub-folder per parameter set, reused when complete).
        n_cases: synthetic only: number of cases.
        size: synthetic only: edge length in voxels.
        seed: synthetic only: base seed.
        split: ``"Tr"`` (training) or ``"Ts"`` (inference; other seeds for synthetic cases).
        n_raters: > 0 adds the ``"raters"`` key (synthetic: that many simulated raters; a given dataset: every
            rater found, see :func:`medloss.data.layout.list_rater_files`).
        with_groups: add the ``"group"`` key (synthetic: ``i % num_groups``; a given dataset: its group file).
        num_groups: synthetic only: number of groups.
        spatial_dims: synthetic only: 2 or 3.
        require_labels: see :func:`medloss.data.layout.list_nnunet_cases` (synthetic cases always have labels).

    Returns:
        A list of dicts with file paths, sorted by case (see :func:`medloss.data.layout.list_nnunet_cases`).

    Raises:
        ValueError: as :func:`medloss.data.layout.list_nnunet_cases` and
            :func:`medloss.data.synthetic.write_synthetic_dataset`; no ``cache_dir`` for synthetic cases.
    """
    if dataset_dir in (None, ""):
        dataset_dir = _synthetic_root(cache_dir, split, n_cases=int(n_cases), size=int(size), seed=int(seed),
                                      n_raters=int(n_raters), num_groups=int(num_groups), with_target=False,
                                      spatial_dims=int(spatial_dims))
    return list_nnunet_cases(dataset_dir, split, require_labels, n_raters, with_groups)


def synthesis_dataset(
    dataset_dir: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
    n_cases: int = 4,
    size: int = 32,
    seed: int = 0,
    split: str = "Tr",
    spatial_dims: int = 3,
    require_targets: bool = True,
) -> List[Dict]:
    """Data dicts ``{"case", "image": source, "target": image to synthesise}`` for image-to-image synthesis.

    Synthetic cases pair a bright-vessel image with a dark-vessel image of the same phantom. A given dataset uses
    ``images{split}/<case>_0000.nii.gz`` as the source and ``targets{split}/<case>.nii.gz`` as the target.

    Args:
        dataset_dir: dataset folder; ``None`` (or ``""``) makes synthetic cases instead.
        cache_dir: where synthetic cases are written.
        n_cases: synthetic only: number of cases.
        size: synthetic only: edge length in voxels.
        seed: synthetic only: base seed.
        split: ``"Tr"`` or ``"Ts"``.
        spatial_dims: synthetic only: 2 or 3.
        require_targets: False lists only the source images (inference on cases without targets).

    Returns:
        A list of dicts with file paths, sorted by case (no ``"label"`` key).

    Raises:
        ValueError: as :func:`vessel_dataset`.
    """
    if dataset_dir in (None, ""):
        dataset_dir = _synthetic_root(cache_dir, split, n_cases=int(n_cases), size=int(size), seed=int(seed),
                                      n_raters=0, num_groups=1, with_target=True, spatial_dims=int(spatial_dims))
    cases = list_nnunet_cases(dataset_dir, split, require_labels=False, with_target=require_targets)
    for case in cases:
        case.pop("label", None)  # a synthesis model has no segmentation label
    return cases
