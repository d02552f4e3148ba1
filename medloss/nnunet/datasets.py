"""Small synthetic nnU-Net v2 raw datasets and plans edits, for tutorials, tests and trying trainers out.

:func:`write_synthetic_dataset` writes the nnU-Net raw layout (``imagesTr/<case>_0000.nii.gz``, ``labelsTr``,
``imagesTs``, ``labelsTs``, ``dataset.json``) with vessel-tree phantoms from :mod:`medloss.data.synthetic`;
:func:`add_plans_configuration` adds a configuration inheriting ``3d_fullres`` (narrower network, shorter schedule,
a ``medloss`` entry) to a preprocessed plans file without re-preprocessing.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ["write_synthetic_dataset", "add_plans_configuration", "write_splits"]


def _write_nifti(array: np.ndarray, path: str, spacing: Sequence[float]) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine=np.diag(list(spacing) + [1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def write_synthetic_dataset(
    raw_root: str,
    dataset_id: int = 501,
    name: str = "Vessels",
    n_train: int = 5,
    n_test: int = 2,
    size: int = 32,
    seed: int = 0,
    two_classes: bool = False,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> str:
    """Write ``Dataset<ID>_<name>`` under ``raw_root`` and return its folder.

    Each case is a ``size``\\ ³ vessel-tree phantom and an angiography-like image. With ``two_classes`` the thin
    vessels (radius < 1.5 voxels) get label 2, which makes a multi-class problem.
    """
    from scipy.ndimage import distance_transform_edt

    from medloss.data.synthetic import vessel_image, vessel_phantom

    folder = os.path.join(raw_root, f"Dataset{dataset_id:03d}_{name}")
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    cases = [("imagesTr", "labelsTr", f"vessel_{i:03d}") for i in range(n_train)]
    cases += [("imagesTs", "labelsTs", f"vesselts_{i:03d}") for i in range(n_test)]
    for k, (img_dir, lab_dir, case) in enumerate(cases):
        label = vessel_phantom((size,) * 3, seed=seed * 1000 + k, n_trees=2, max_depth=2, root_radius=(1.5, 3.0))
        image = vessel_image(label, seed=seed * 1000 + k) * 100.0
        if two_classes:
            thick = distance_transform_edt(label) >= 1.5
            label = np.where(label > 0, np.where(thick, 1, 2), 0)
        _write_nifti(image.astype(np.float32), os.path.join(folder, img_dir, f"{case}_0000.nii.gz"), spacing)
        _write_nifti(label.astype(np.uint8), os.path.join(folder, lab_dir, f"{case}.nii.gz"), spacing)
    labels = {"background": 0, "vessel": 1}
    if two_classes:
        labels["thin_vessel"] = 2
    dataset_json = {"channel_names": {"0": "MRA"}, "labels": labels, "numTraining": n_train,
                    "file_ending": ".nii.gz", "name": name}
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dataset_json, f, indent=2)
    return folder


def add_plans_configuration(
    plans_file: str,
    name: str,
    inherits_from: str = "3d_fullres",
    width: Optional[int] = None,
    medloss: Optional[Dict[str, Any]] = None,
) -> None:
    """Add configuration ``name`` to an nnU-Net plans file (in place).

    Args:
        width: features of the first stage (doubling per stage); ``None`` keeps the network.
        medloss: the ``medloss`` entry read by medloss trainers (method hyperparameters and nnU-Net schedule
            attributes such as ``num_epochs``).
    """
    with open(plans_file) as f:
        plans = json.load(f)
    if inherits_from not in plans["configurations"]:
        raise ValueError(f"plans file {plans_file} has no configuration {inherits_from!r} to inherit from.")
    config: Dict[str, Any] = {"inherits_from": inherits_from}
    if width is not None:
        # plans inheritance is a shallow update: the whole architecture entry must be given
        arch = copy.deepcopy(plans["configurations"][inherits_from]["architecture"])
        n = arch["arch_kwargs"]["n_stages"]
        arch["arch_kwargs"]["features_per_stage"] = [min(width * 2 ** i, 320) for i in range(n)]
        config["architecture"] = arch
    if medloss:
        config["medloss"] = dict(medloss)
    plans["configurations"][name] = config
    with open(plans_file, "w") as f:
        json.dump(plans, f, indent=1)


def write_splits(preprocessed_dataset_dir: str, train: Sequence[str], val: Sequence[str]) -> str:
    """Write a one-fold ``splits_final.json`` (needed when a dataset has fewer than 5 training cases)."""
    path = os.path.join(preprocessed_dataset_dir, "splits_final.json")
    with open(path, "w") as f:
        json.dump([{"train": list(train), "val": list(val)}], f, indent=1)
    return path
