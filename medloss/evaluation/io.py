"""Reading label volumes and pairing prediction/reference files by case name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["LabelVolume", "read_label_volume", "read_label_geometry", "case_name", "pair_cases", "check_same_geometry",
           "KNOWN_ENDINGS"]

# longest first so that ".nii.gz" wins over ".gz"
KNOWN_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif", ".tiff", ".png", ".gipl", ".hdr")


@dataclass
class LabelVolume:
    """An integer label array in SimpleITK's axis order ``(z, y, x)`` and its physical geometry.

    :func:`read_label_geometry` returns one without voxels (``array`` is ``None``); ``shape`` is always set.
    """

    array: Optional[np.ndarray]
    spacing: Tuple[float, ...]  # per array axis, in mm
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    path: str
    shape: Tuple[int, ...] = ()

    def __post_init__(self):
        if self.array is not None:
            self.shape = tuple(self.array.shape)


def case_name(filename: str, endings: Sequence[str] = KNOWN_ENDINGS) -> Optional[str]:
    """The case identifier of ``filename`` (nnU-Net naming: ``<case><ending>``), or ``None`` if not an image."""
    for ending in endings:
        if filename.lower().endswith(ending):
            return filename[: -len(ending)]
    return None


def _open_image(path: str):
    """A SimpleITK reader of ``path`` with its header read and checked: one component, 2D or 3D."""
    import SimpleITK as sitk

    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"cannot read {path}: the file is empty.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"cannot read {path}: {_sitk_reason(err)}") from None
    shape = tuple(reader.GetSize())[::-1]
    if reader.GetNumberOfComponents() != 1:
        raise ValueError(f"{path}: expected a single-component label image, got "
                         f"{reader.GetNumberOfComponents()} components per voxel.")
    # the distance and topology metrics are defined for 2D and 3D label maps only
    if len(shape) not in (2, 3):
        raise ValueError(f"{path}: expected a 2D or 3D label image, got {len(shape)}D with shape {shape}.")
    return reader


def _sitk_reason(err: RuntimeError) -> str:
    """The last line of a SimpleITK error, without its ``sitk::ERROR:`` prefix."""
    reason = str(err).strip().splitlines()[-1].replace("sitk::ERROR:", "").strip()
    if reason.startswith("Unable to determine ImageIO reader"):
        return "not an image SimpleITK can read (corrupt, or an unknown format)"
    return reason


def _geometry(reader) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    # SimpleITK's geometry is (x, y, z); the array is (z, y, x)
    return tuple(reader.GetSpacing())[::-1], tuple(reader.GetOrigin()), tuple(reader.GetDirection())


def read_label_geometry(path: str) -> LabelVolume:
    """The geometry of a label image from its header only (``array`` is ``None``): cheap checks before any metric.

    Raises:
        ValueError: unreadable or empty file, several components per voxel, not 2D or 3D.
    """
    reader = _open_image(path)
    return LabelVolume(None, *_geometry(reader), path, shape=tuple(reader.GetSize())[::-1])


def read_label_volume(path: str) -> LabelVolume:
    """Read a label image with SimpleITK; non-integer values are an error (labels, not probabilities).

    Raises:
        ValueError: unreadable or empty file, several components per voxel, not 2D or 3D, non-integer or NaN
            values, a voxel type that is not a number.
    """
    import SimpleITK as sitk

    reader = _open_image(path)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise ValueError(f"cannot read {path}: {_sitk_reason(err)}") from None
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{path}: label images must hold integer values, found non-integer or NaN values.")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iub":
        raise ValueError(f"{path}: unsupported voxel type {array.dtype}.")
    return LabelVolume(array, *_geometry(image), path)


def check_same_geometry(pred: LabelVolume, ref: LabelVolume, rtol: float = 1e-4, atol: float = 1e-3) -> None:
    """Raise ``ValueError`` if the two volumes do not lie on the same voxel grid (``array`` may be ``None``)."""
    if len(pred.shape) != len(ref.shape):
        # spacing, origin and direction cannot be compared across dimensions: the shapes say it all
        raise ValueError(f"prediction {pred.path} has shape {pred.shape} ({len(pred.shape)}D) but reference "
                         f"{ref.path} has shape {ref.shape} ({len(ref.shape)}D).")
    problems = []
    if pred.shape != ref.shape:
        problems.append(f"shape {pred.shape} vs {ref.shape}")
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
    def index(folder: str, what: str) -> Dict[str, str]:
        if not os.path.isdir(folder):
            raise ValueError(f"{what} folder not found: {folder}")
        out: Dict[str, str] = {}
        for fn in sorted(os.listdir(folder)):
            case = case_name(fn)
            if case is None or not os.path.isfile(os.path.join(folder, fn)):
                continue
            if case in out:
                raise ValueError(f"{folder}: case {case!r} appears twice ({os.path.basename(out[case])}, {fn}).")
            out[case] = os.path.join(folder, fn)
        return out

    preds, refs = index(pred_dir, "prediction"), index(ref_dir, "reference")
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
