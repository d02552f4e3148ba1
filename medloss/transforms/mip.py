"""Whole-volume label maximum intensity projections (SPOCKMIP's "global label MIP"), crop-safe.

Radhakrishna, C. et al. (2024) SPOCKMIP, https://arxiv.org/abs/2407.08655. The SPOCKMIP dataset code
(https://github.com/soumickmj/SPOCKMIP) projects the whole
training label volume once and crops the projection at each patch's in-plane position, so a patch's MIP target
also holds the vessels above and below the patch. Storing the projection broadcast back along its axis (same
spatial shape as the label) lets ordinary spatial crops and flips keep it aligned with the patch.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from medloss.validation import (
    check_axes,
    check_binary,
    check_class_labels,
    check_finite,
    check_number,
    check_one_hot_channels,
    spatial_axes_to_dims,
)

__all__ = ["LabelMIP", "LabelMIPd"]


class LabelMIP(Transform):
    """Whole-volume label MIP along each of ``axes``, broadcast back to the label's spatial shape.

    Radhakrishna, C. et al. (2024) SPOCKMIP: Segmentation of Vessels in MRAs with Enhanced Continuity using Maximum
    Intensity Projection as Loss, https://arxiv.org/abs/2407.08655 (the "global label MIP" of its dataset code).

    For a channel-first label ``(C, *spatial)`` (a binary mask ``C = 1`` or a one-hot with exactly one 1 per voxel,
    or a one-channel class map with ``num_classes``; a volume without its channel axis is refused), the output
    has ``n_axes * C'`` channels, axis-major: channel ``i * C' + c`` is class ``c``'s maximum along spatial axis
    ``axes[i]``, repeated along that axis. Constant along the projected axis, it stays aligned with the label under
    spatial crops, pads and flips (and rotations in planes that do not contain the axis); resample it with nearest
    interpolation. After cropping, its maximum along ``axes[i]`` is SPOCKMIP's cropped whole-volume MIP, which is
    what :class:`medloss.losses.MIPLoss` takes as ``label_mip`` (use the same ``axes``).

    Use it *before* patch cropping (on the whole case). This is opt-in: nnU-Net's default loader crops patches from
    preprocessed cases without extra keys, so there it needs a custom data loader; the default of ``MIPLoss`` is the
    patch-local label MIP, which needs nothing.

    Args:
        axes: spatial axis or axes (0 = first spatial dimension of ``(C, *spatial)``; negative from the last).
        num_classes: ``None``: the label channels are projected as they are and must be binary (0/1). An int: the
            label is a ``(1, *spatial)`` class map, one-hot encoded to ``num_classes`` channels first (give the
            loss's number of input channels, background included).

    Raises:
        ValueError: invalid ``axes`` or ``num_classes`` (here), and in ``__call__``: a label that is not
            ``(C, *spatial)`` with 2 or 3 spatial dims, empty, NaN/Inf, non-binary or (several channels) not one-hot
            without ``num_classes``, class
            values outside ``[0, num_classes)`` or several channels with ``num_classes``, axes out of range.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 3, 4), np.uint8); label[0, 1, 2] = 1
        >>> LabelMIP(axes=0)(label)[0].tolist()  # the projection along spatial axis 0, repeated along it
        [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, axes: Union[int, Sequence[int]] = 0, num_classes: Optional[int] = None) -> None:
        self.axes = check_axes(axes)
        self.num_classes = check_number("num_classes", num_classes, low=1, integer=True, allow_none=True)

    def __call__(self, label):
        """
        Args:
            label: ``(C, H, W[, D])`` numpy array or tensor (MetaTensor meta data is kept).

        Returns:
            ``(n_axes * C', H, W[, D])`` of the label's type and dtype, ``C' = num_classes or C``.
        """
        if isinstance(label, torch.Tensor):
            lab = label.as_tensor() if hasattr(label, "as_tensor") else label
        elif isinstance(label, np.ndarray):
            lab = torch.from_numpy(np.ascontiguousarray(label))
        else:
            raise ValueError(f"label must be a numpy array or a torch.Tensor, got {type(label).__name__}.")
        if lab.ndim not in (3, 4) or lab.numel() == 0:
            raise ValueError(
                "label must have shape (C, *spatial) with 2 or 3 spatial dims and be non-empty, got "
                f"{tuple(lab.shape)}."
            )
        check_finite(lab, "label")
        if lab.dtype == torch.bool:
            lab = lab.to(torch.uint8)
        dims = spatial_axes_to_dims(self.axes, lab.ndim - 1, first_dim=1)
        if self.num_classes is None:
            check_binary(lab, "label (without num_classes, the channels of a one-hot label)")
            check_one_hot_channels(lab, "label")
            onehot = lab
        else:
            if lab.shape[0] != 1:
                raise ValueError(
                    f"with num_classes the label must be a (1, *spatial) class map, got {tuple(lab.shape)}."
                )
            check_class_labels(lab, self.num_classes, "label")
            classes = torch.arange(self.num_classes, device=lab.device).view((-1,) + (1,) * (lab.ndim - 1))
            onehot = (lab == classes).to(lab.dtype)
        out = torch.cat([onehot.amax(d, keepdim=True).expand_as(onehot) for d in dims], 0)
        return convert_to_dst_type(out, dst=label, dtype=label.dtype)[0]


class LabelMIPd(MapTransform):
    """Dictionary version of :class:`LabelMIP`: writes the label MIP of ``key`` to ``f"{key}_mip"``.

    Radhakrishna, C. et al. (2024) SPOCKMIP, https://arxiv.org/abs/2407.08655.

    Put it before the crops and add the new key to the keys of every spatial transform that follows, e.g.
    ``RandCropByPosNegLabeld(keys=["image", "label", "label_mip"], label_key="label", ...)`` and
    ``RandFlipd(keys=["image", "label", "label_mip"], ...)``; then pass ``batch["label_mip"]`` to
    :class:`medloss.losses.MIPLoss` as ``label_mip``.

    Args:
        keys: label key(s).
        axes: spatial axis or axes, as in :class:`LabelMIP` (use the loss's ``axes``).
        num_classes: as in :class:`LabelMIP`.
        mip_keys: output key(s), one per key; default ``f"{key}_mip"`` (``"label_mip"`` for ``"label"``).
        allow_missing_keys: do not raise for missing keys.

    Raises:
        ValueError: as :class:`LabelMIP`, and a number of ``mip_keys`` different from the number of ``keys``.

    Example:
        >>> import numpy as np
        >>> data = LabelMIPd(keys="label", axes=0)({"label": np.zeros((1, 3, 4), np.uint8)})
        >>> sorted(data), data["label_mip"].shape
        (['label', 'label_mip'], (1, 3, 4))
    """

    backend = LabelMIP.backend

    def __init__(
        self,
        keys: KeysCollection,
        axes: Union[int, Sequence[int]] = 0,
        num_classes: Optional[int] = None,
        mip_keys: Optional[Union[Hashable, Sequence[Hashable]]] = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = LabelMIP(axes=axes, num_classes=num_classes)
        if mip_keys is None:
            self.mip_keys = tuple(f"{k}_mip" for k in self.keys)
        else:
            self.mip_keys = (mip_keys,) if isinstance(mip_keys, str) else tuple(mip_keys)
        if len(self.mip_keys) != len(self.keys):
            raise ValueError(f"give one mip key per key: {len(self.keys)} keys, got mip_keys={self.mip_keys}.")

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key, mip_key in self.key_iterator(d, self.mip_keys):
            d[mip_key] = self.transform(d[key])
        return d
