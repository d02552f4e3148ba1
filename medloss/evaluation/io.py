"""Reading label volumes and pairing prediction/reference files by case name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["LabelVolume", "read_label_volume", "case_name", "pair_cases", "check_same_geometry", "KNOWN_ENDINGS"]

# longest first so that ".nii.gz" wins over ".gz"
KNOWN_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif", ".tiff", ".png", ".gipl", ".hdr")


@dataclass
class LabelVolume:
    """An integer label array in SimpleITK's axis order ``(z, y, x)`` and its physical geometry."""

    array: np.ndarray
    spacing: Tuple[float, ...]  # per array axis, in mm
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    path: str


def case_name(filename: str, endings: Sequence[str] = KNOWN_ENDINGS) -> Optional[str]:
    """The case identifier of ``filename`` (nnU-Net naming: ``<case><ending>``), or ``None`` if not an image."""
    for ending in endings:
        if filename.lower().endswith(ending):
            return filename[: -len(ending)]
    return None


def read_label_volume(path: str) -> LabelVolume:
    """Read a label image with SimpleITK; non-integer values are an error (labels, not probabilities)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(path)
    except RuntimeError as err:
        raise ValueError(f"cannot read {path}: {str(err).strip().splitlines()[-1]}") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: expected a single-component label image, got "
                         f"{image.GetNumberOfComponentsPerPixel()} components per voxel.")
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{path}: label images must hold integer values, found non-integer or NaN values.")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iub":
        raise ValueError(f"{path}: unsupported voxel type {array.dtype}.")
    # SimpleITK's geometry is (x, y, z); the array is (z, y, x)
    return LabelVolume(array, tuple(image.GetSpacing())[::-1], tuple(image.GetOrigin()), tuple(image.GetDirection()),
                       path)


def check_same_geometry(pred: LabelVolume, ref: LabelVolume, rtol: float = 1e-4, atol: float = 1e-3) -> None:
    """Raise ``ValueError`` if the two volumes do not lie on the same voxel grid."""
    problems = []
    if pred.array.shape != ref.array.shape:
        problems.append(f"shape {pred.array.shape} vs {ref.array.shape}")
    if not np.allclose(pred.spacing, ref.spacing, rtol=rtol, atol=atol):
        problems.append(f"spacing {np.round(pred.spacing, 5).tolist()} vs {np.round(ref.spacing, 5).tolist()}")
    if not np.allclose(pred.origin, ref.origin, rtol=rtol, atol=atol):
        problems.append(f"origin {np.round(pred.origin, 4).tolist()} vs {np.round(ref.origin, 4).tolist()}")
    if not np.allclose(pred.direction, ref.direction, atol=atol):
        problems.append(f"orientation (direction cosines) {np.round(pred.direction, 4).tolist()} vs "
                        f"{np.round(ref.direction, 4).tolist()}")
    if problems:
        raise ValueError(f"prediction {pred.path} and reference {ref.path} differ in " + "; ".join(problems) + ".")


def pair_cases(pred_dir: str, ref_dir: str, chill: bool = False) -> Tuple[List[Tuple[str, str, str]], List[str]]:
    """``([(case, prediction_path, reference_path), ...], missing_cases)``, sorted by case.

    Raises ``ValueError`` for predictions without a reference, and for references without a prediction unless
    ``chill`` (like nnU-Net's ``--chill``: those cases are skipped, and returned in ``missing_cases``).
    """
    def index(folder: str) -> Dict[str, str]:
        if not os.path.isdir(folder):
            raise ValueError(f"folder not found: {folder}")
        out: Dict[str, str] = {}
        for fn in sorted(os.listdir(folder)):
            case = case_name(fn)
            if case is None or not os.path.isfile(os.path.join(folder, fn)):
                continue
            if case in out:
                raise ValueError(f"{folder}: case {case!r} appears twice ({os.path.basename(out[case])}, {fn}).")
            out[case] = os.path.join(folder, fn)
        return out

    preds, refs = index(pred_dir), index(ref_dir)
    if not refs:
        raise ValueError(f"no reference images found in {ref_dir} (known endings: {', '.join(KNOWN_ENDINGS)}).")
    extra = sorted(set(preds) - set(refs))
    if extra:
        raise ValueError(f"{len(extra)} prediction(s) without a reference in {ref_dir}: {extra[:10]}")
    missing = sorted(set(refs) - set(preds))
    if missing and not chill:
        raise ValueError(f"{len(missing)} reference case(s) without a prediction in {pred_dir}: {missing[:10]} "
                         "(use --chill to evaluate the cases that exist).")
    return [(case, preds[case], refs[case]) for case in sorted(refs) if case in preds], missing
