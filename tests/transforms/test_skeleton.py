"""Tubed skeletons for Skeleton Recall: the original SkeletonTransform's steps (oracle built in the test from
scikit-image/scipy), class assignment, types, MONAI transform conventions and errors."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from skimage.morphology import dilation, skeletonize

from medloss.transforms import SkeletonizeLabel, SkeletonizeLabeld, skeletonize_label


def original_tube(seg: np.ndarray) -> np.ndarray:
    """SkeletonTransform._add_skeleton of https://github.com/MIC-DKFZ/Skeleton-Recall (do_tube=True) for one
    label map: skeleton of seg > 0, dilated with the L1 ball of radius 2, times the label map."""
    bin_seg = seg > 0
    if not bin_seg.any():
        return np.zeros_like(seg, dtype=np.int16)
    skel = skeletonize(bin_seg).astype(np.int16)
    skel = dilation(skel, footprint=ndimage.iterate_structure(ndimage.generate_binary_structure(skel.ndim, 1), 2))
    return skel * seg.astype(np.int16)


def random_vessels(shape, n_classes=3, seed=0):
    """Random thick polylines of several classes (touching each other) on a background."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    for c in range(1, n_classes):
        for _ in range(3):
            a, b = rng.integers(0, shape), rng.integers(0, shape)
            for t in np.linspace(0, 1, 4 * max(shape)):
                p = np.round(a + t * (b - a)).astype(int)
                lo, hi = np.maximum(p - 1, 0), p + 2
                label[tuple(slice(l, h) for l, h in zip(lo, hi))] = c
    return label


@pytest.mark.parametrize("shape", [(48, 40), (20, 22, 18)], ids=["2d", "3d"])
def test_equals_the_original_transform(shape):
    label = random_vessels(shape)
    tube = skeletonize_label(label)
    assert tube.shape == label.shape and tube.dtype == label.dtype
    np.testing.assert_array_equal(tube, original_tube(label))
    # the tube carries the class under it, lies on the foreground, and covers the skeleton of the union
    assert np.all((tube == 0) | (tube == label))
    assert np.all(tube[skeletonize(label > 0)] > 0)
    assert set(np.unique(tube)) == {0, 1, 2}


def test_union_is_skeletonised_then_classes_assigned():
    # a 3-pixel bar split between two classes: one skeleton through both, not one per class
    label = np.zeros((7, 20), np.int64)
    label[2:5, 1:10] = 1
    label[2:5, 10:19] = 2
    skel = skeletonize_label(label, tube_radius=0)
    np.testing.assert_array_equal(skel > 0, skeletonize(label > 0))
    assert (skel[3, 2:10] == 1).all() and (skel[3, 10:17] == 2).all()


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_tube_radius_is_the_number_of_cross_dilations(radius):
    label = np.zeros((30, 30), np.uint8)
    label[5:25, 5:25] = 1  # the square's skeleton is its diagonals
    expected = skeletonize(label > 0)
    for _ in range(radius):
        expected = ndimage.binary_dilation(expected, ndimage.generate_binary_structure(2, 1))
    np.testing.assert_array_equal(skeletonize_label(label, tube_radius=radius), expected & (label > 0))


def test_empty_and_channel_first_and_tensor_input():
    assert not skeletonize_label(np.zeros((1, 6, 7), np.int16)).any()
    label = random_vessels((24, 26), seed=1)
    expected = skeletonize_label(label)
    np.testing.assert_array_equal(skeletonize_label(label[None]), expected[None])
    out = skeletonize_label(torch.as_tensor(label[None, None].astype(np.float32))[0])  # float whole numbers
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], expected)
    assert skeletonize_label(label > 0).dtype == np.bool_


def test_array_transform_keeps_type_dtype_and_meta():
    label = random_vessels((16, 18, 14), seed=2)[None]
    expected = skeletonize_label(label)
    out = SkeletonizeLabel()(label)
    assert isinstance(out, np.ndarray) and out.dtype == label.dtype
    np.testing.assert_array_equal(out, expected)
    meta = MetaTensor(torch.as_tensor(label, dtype=torch.float32), affine=torch.diag(torch.tensor([2.0, 2, 2, 1])))
    out = SkeletonizeLabel()(meta)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert torch.equal(out.affine, meta.affine)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_dict_transform():
    label = random_vessels((20, 20), seed=3)[None]
    data = SkeletonizeLabeld(keys="label", tube_radius=1)({"label": label, "image": np.zeros((1, 20, 20))})
    assert sorted(data) == ["image", "label", "skeleton"]
    np.testing.assert_array_equal(data["skeleton"], skeletonize_label(label, 1))
    data = SkeletonizeLabeld(keys=["a", "b"], skeleton_key=["sa", "sb"])({"a": label, "b": label})
    np.testing.assert_array_equal(data["sa"], data["sb"])
    assert SkeletonizeLabeld(keys="label", allow_missing_keys=True)({}) == {}
    with pytest.raises(ValueError, match="one skeleton key per key"):
        SkeletonizeLabeld(keys=["a", "b"])
    with pytest.raises(KeyError):
        SkeletonizeLabeld(keys="label")({})


def test_clear_errors():
    with pytest.raises(ValueError, match="region-based"):
        SkeletonizeLabel()(np.zeros((3, 8, 8), np.uint8))  # one-hot / region-based channels
    with pytest.raises(ValueError, match="region-based"):
        skeletonize_label(np.zeros((2, 8, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="channel-first"):
        SkeletonizeLabel()(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="2 or 3 spatial"):
        skeletonize_label(np.zeros(8))
    with pytest.raises(ValueError, match=">= 0"):
        skeletonize_label(np.full((5, 5), -1))
    with pytest.raises(ValueError, match="integer"):
        skeletonize_label(np.full((5, 5), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        skeletonize_label(np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="empty"):
        skeletonize_label(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="tube_radius"):
        SkeletonizeLabel(tube_radius=-1)
    with pytest.raises(ValueError, match="tube_radius"):
        skeletonize_label(np.zeros((5, 5)), tube_radius=1.5)
    with pytest.raises(ValueError, match="numpy array or torch"):
        skeletonize_label([[0, 1], [1, 0]])
