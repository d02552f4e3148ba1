"""Writing NIfTI images with their voxel spacing.

Example:
    >>> import os, tempfile
    >>> import nibabel as nib
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "case.nii.gz")
    >>> save_nifti(np.zeros((4, 5, 6), np.uint8), path, spacing=(0.5, 0.5, 2.0))
    >>> [float(z) for z in nib.load(path).header.get_zooms()]
    [0.5, 0.5, 2.0]
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["save_nifti"]


def save_nifti(array: np.ndarray, path: Union[str, Path], spacing: Optional[Sequence[float]] = None) -> None:
    """Save ``array`` as a NIfTI file whose affine holds the voxel spacing (in millimetres).

    The affine is ``diag(spacing..., 1)`` with a zero origin, the convention of nnU-Net's and MONAI's NIfTI readers:
    both read the spacing back from it. A 2D array gets a unit third spacing.

    Args:
        array: a 2D ``(H, W)`` or 3D ``(H, W, D)`` array, saved with its dtype.
        path: the file to write (``.nii`` or ``.nii.gz``); the parent folder must exist.
        spacing: one positive finite spacing per axis of ``array``; ``None`` = all 1.

    Raises:
        ValueError: ``array`` not 2D or 3D, or a ``spacing`` of the wrong length or with a non-positive or
            non-finite value.
    """
    import nibabel as nib

    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"array must be 2D or 3D, got shape {array.shape}.")
    spacing = (1.0,) * array.ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != array.ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must hold {array.ndim} positive finite values, got {spacing}.")
    affine = np.diag(list(spacing) + [1.0] * (4 - array.ndim))
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
