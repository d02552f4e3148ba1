"""Tubed skeletons of label maps, the targets of the Skeleton Recall loss.

Kirchhoff, Y. et al. (2024) "Skeleton Recall Loss for Connectivity Conserving and Resource Efficient Segmentation of
Thin Tubular Structures", ECCV 2024, https://arxiv.org/abs/2404.03010 (code:
https://github.com/MIC-DKFZ/Skeleton-Recall, ``SkeletonTransform``). The skeleton is computed once per sample on the
CPU (in the data pipeline, after the spatial augmentations), so the loss itself only needs a masked sum.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence, Union

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage
from skimage.morphology import skeletonize

from medloss.validation import ArrayLike, check_number, to_numpy

__all__ = ["skeletonize_label", "SkeletonizeLabel", "SkeletonizeLabeld"]


def skeletonize_label(label: ArrayLike, tube_radius: int = 2) -> np.ndarray:
    """The "tubed" skeleton of a label map: skeleton of the foreground, thickened, carrying the class under it.

    Kirchhoff et al. (2024) Skeleton Recall Loss, ECCV 2024, https://arxiv.org/abs/2404.03010; the steps are those
    of ``SkeletonTransform`` in https://github.com/MIC-DKFZ/Skeleton-Recall:

    1. the union of the foreground classes (``label > 0``) is skeletonised with ``skimage.morphology.skeletonize``
       (Zhang's method in 2D, Lee's in 3D); the classes are not skeletonised separately;
    2. the skeleton is dilated ``tube_radius`` times with the cross (face-neighbour) footprint, i.e. with the
       L1 ball of radius ``tube_radius`` (the original uses 2: a tube about 5 voxels wide);
    3. the tube is multiplied by the label map: each tube voxel carries the class under it, and tube voxels on the
       background are dropped.

    Args:
        label: label map of class indices (0 = background), ``(*spatial)`` or channel-first ``(1, *spatial)`` with
            2 or 3 spatial dims; integer, boolean or whole-valued floating point values, numpy array or tensor. A
            3-dim array whose first dim is 1 is read as ``(1, H, W)`` (2D).
        tube_radius: number of dilations, an int ``>= 0`` (0: the bare skeleton).

    Returns:
        a numpy array of the label's shape and dtype (boolean labels give a boolean tube), all zeros when the
        label has no foreground.

    Raises:
        ValueError: not 2D/3D (or ``(1, *spatial)``), several channels (one-hot or region-based labels: give a
            ``(1, *spatial)`` label map), empty, non-real or non-integer values, NaN/Inf, negative values,
            ``tube_radius`` not an int ``>= 0``.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((5, 9), np.uint8); label[2, 1:5] = 1; label[2, 5:8] = 2  # a line of 2 classes
        >>> skeletonize_label(label, tube_radius=0)[2].tolist()  # a 1-pixel line is its own skeleton
        [0, 1, 1, 1, 1, 2, 2, 2, 0]
        >>> bool((skeletonize_label(label) == label).all())  # the tube is cut to the foreground
        True
    """
    tube_radius = check_number("tube_radius", tube_radius, low=0, integer=True)
    lab = to_numpy(label, "label")
    shape = lab.shape
    if lab.ndim == 4 or (lab.ndim == 3 and shape[0] == 1):
        if shape[0] != 1:
            raise ValueError(_channels_message(shape))
        lab = lab[0]
    elif lab.ndim not in (2, 3):
        raise ValueError(
            f"label must be a label map (*spatial) or (1, *spatial) with 2 or 3 spatial dims, got shape {shape}."
        )
    if lab.size == 0:
        raise ValueError(f"label is empty (shape {shape}).")
    if lab.dtype.kind not in "biuf":
        raise ValueError(f"label must hold integer class indices, got dtype {lab.dtype}.")
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all():
            raise ValueError(f"label contains {int((~np.isfinite(lab)).sum())} NaN/Inf value(s).")
        if not (lab == np.round(lab)).all():
            raise ValueError("label must hold integer class indices, got non-integer values.")
    if lab.dtype.kind in "if" and lab.min() < 0:
        raise ValueError(
            f"label values must be >= 0 (0 = background), got {np.unique(lab[lab < 0])[:8].tolist()}; map ignore "
            "or padding values to 0 first."
        )
    foreground = lab > 0
    if not foreground.any():
        return np.zeros(shape, dtype=lab.dtype)
    tube = skeletonize(foreground)
    if tube_radius > 0:
        footprint = ndimage.generate_binary_structure(lab.ndim, 1)
        tube = ndimage.binary_dilation(tube, footprint, iterations=tube_radius)
    return np.where(tube, lab, np.zeros((), dtype=lab.dtype)).reshape(shape)


def _channels_message(shape) -> str:
    return (
        f"label must be a label map with one channel, (1, *spatial), got shape {tuple(shape)}: one-hot and "
        "region-based (overlapping) labels are not supported, the skeleton is that of the union of the classes with "
        "the classes assigned afterwards; give the class index map."
    )


class SkeletonizeLabel(Transform):
    """Tubed skeleton of a channel-first label map, :func:`skeletonize_label` as a MONAI array transform.

    Kirchhoff et al. (2024) Skeleton Recall Loss, ECCV 2024, https://arxiv.org/abs/2404.03010.

    Apply it after the spatial augmentations (the skeleton of an interpolated label is not the interpolated
    skeleton), on the label the loss will see; the output is the ``skeleton`` of
    :class:`medloss.losses.SkeletonRecallLoss`.

    Args:
        tube_radius: number of cross-footprint dilations of the skeleton (2 in the original code).

    Raises:
        ValueError: ``tube_radius`` not an int ``>= 0`` (here), and as :func:`skeletonize_label` in ``__call__``
            (in particular a label with several channels).

    Example:
        >>> import torch
        >>> label = torch.zeros(1, 7, 9, dtype=torch.long); label[0, 1:6, 4] = 1; label[0, 3, 1:8] = 1  # a cross
        >>> skel = SkeletonizeLabel(tube_radius=0)(label)
        >>> type(skel).__name__, skel.dtype, bool((skel == label).all())
        ('Tensor', torch.int64, True)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, tube_radius: int = 2) -> None:
        self.tube_radius = check_number("tube_radius", tube_radius, low=0, integer=True)

    def __call__(self, label: ArrayLike) -> ArrayLike:
        """
        Args:
            label: ``(1, H, W[, D])`` label map, numpy array or tensor (MetaTensor meta data is kept).

        Returns:
            the tubed skeleton, ``(1, H, W[, D])``, of the label's type, dtype and device.
        """
        shape = tuple(label.shape) if isinstance(label, (np.ndarray, torch.Tensor)) else None
        if shape is not None and (len(shape) not in (3, 4) or shape[0] != 1):
            if len(shape) in (3, 4):
                raise ValueError(_channels_message(shape))
            raise ValueError(
                f"label must be channel-first, (1, *spatial) with 2 or 3 spatial dims, got shape {shape}."
            )
        out = skeletonize_label(label, self.tube_radius)
        return convert_to_dst_type(out, dst=label, dtype=label.dtype)[0]


class SkeletonizeLabeld(MapTransform):
    """Dictionary version of :class:`SkeletonizeLabel`: writes the tubed skeleton of ``keys`` to ``skeleton_key``.

    Kirchhoff et al. (2024) Skeleton Recall Loss, ECCV 2024, https://arxiv.org/abs/2404.03010.

    Put it after the spatial augmentations; pass ``batch["skeleton"]`` to
    :class:`medloss.losses.SkeletonRecallLoss` as ``skeleton``.

    Args:
        keys: label key(s).
        skeleton_key: output key, or one output key per key (default ``"skeleton"``).
        tube_radius: number of cross-footprint dilations of the skeleton (2 in the original code).
        allow_missing_keys: do not raise for missing keys.

    Raises:
        ValueError: a number of ``skeleton_key`` different from the number of ``keys``, and as
            :class:`SkeletonizeLabel`.

    Example:
        >>> import numpy as np
        >>> data = SkeletonizeLabeld(keys="label")({"label": np.zeros((1, 8, 8), np.uint8)})
        >>> sorted(data), data["skeleton"].shape, data["skeleton"].dtype
        (['label', 'skeleton'], (1, 8, 8), dtype('uint8'))
    """

    backend = SkeletonizeLabel.backend

    def __init__(
        self,
        keys: KeysCollection,
        skeleton_key: Union[Hashable, Sequence[Hashable]] = "skeleton",
        tube_radius: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SkeletonizeLabel(tube_radius=tube_radius)
        self.skeleton_keys = (
            (skeleton_key,) if isinstance(skeleton_key, str) or not isinstance(skeleton_key, Sequence)
            else tuple(skeleton_key)
        )
        if len(self.skeleton_keys) != len(self.keys):
            raise ValueError(
                f"give one skeleton key per key: {len(self.keys)} keys {self.keys}, got skeleton_key={skeleton_key!r}."
            )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key, skeleton_key in self.key_iterator(d, self.skeleton_keys):
            d[skeleton_key] = self.transform(d[key])
        return d
