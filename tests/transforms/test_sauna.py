"""SAUNA signed soft-label transform: anchor reference values, generalisation (spacing, 3D, classes), MONAI API."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from monai.data import MetaTensor
from scipy import ndimage

from medloss.transforms import (
    SAUNADecode,
    SAUNADecoded,
    SAUNATransform,
    SAUNATransformd,
    sauna_soft_label,
    sauna_to_label,
)
from medloss.transforms.sauna_kernels import chamfer_distance_cv2, sauna_chamfer_maps


DATA = Path(__file__).parents[1] / "data" / "sauna"


@pytest.fixture(scope="module")
def ref2d():
    return dict(np.load(DATA / "sauna_transform_2d_64.npz"))


@pytest.fixture(scope="module")
def ref3d():
    return dict(np.load(DATA / "sauna_transform_3d_24.npz"))


@pytest.fixture(scope="module")
def summary():
    return json.loads((DATA / "sauna_transform_summary.json").read_text())


def brute_force(mask, spacing):
    """Definition by exhaustive search: pairwise physical distances, explicit window loops (float64)."""
    spacing = np.asarray(spacing, dtype=np.float64)
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij"), -1).reshape(-1, mask.ndim)
    phys = coords * spacing
    flat = mask.ravel()
    pair = np.sqrt(((phys[:, None, :] - phys[None, :, :]) ** 2).sum(-1))
    d_in = np.where(flat, np.where(~flat[None, :], pair, np.inf).min(1), 0.0).reshape(mask.shape)
    d_out = np.where(~flat, np.where(flat[None, :], pair, np.inf).min(1), 0.0).reshape(mask.shape)
    m = d_in.max()
    d = np.minimum(d_out, m)
    half = [(lambda k: (k + 1 - k % 2) // 2)(math.ceil(m / s)) for s in spacing]
    out = np.empty(mask.shape)
    for p in itertools.product(*[range(n) for n in mask.shape]):
        win = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(p, half))
        eps = 1e-6 * spacing.min()
        if mask[p]:
            out[p] = 1 - (d_in[win].max() - d_in[p]) / (m + eps)
        else:
            out[p] = -1 + (d[win].max() - d[p]) / (m + eps)
    return out


# ------------------------------------------------------------------------------------------------------------ anchor
def test_chamfer_maps_bit_for_bit(ref2d):
    maps = sauna_chamfer_maps(ref2d["mask"].astype(bool))
    for ours, ref in [("d_in", "d_in_cv2"), ("d_out", "d_out_cv2"), ("boundary", "y_boundary"),
                      ("thickness", "y_thickness"), ("soft_label", "soft_label")]:
        assert maps[ours].dtype == np.float32
        np.testing.assert_array_equal(maps[ours], ref2d[ref], err_msg=ours)
    assert maps["fg_max"] == ref2d["fg_max"] and maps["kernel_size"] == ref2d["kernel_size"]


@pytest.mark.parametrize("as_input", ["mask", "gt_u8_as_bool"])
def test_public_api_reproduces_anchor_2d(ref2d, as_input):
    mask = ref2d["mask"] if as_input == "mask" else ref2d["gt_u8"] > 0
    np.testing.assert_array_equal(sauna_soft_label(mask, distance="chamfer_cv2"), ref2d["soft_label"])
    out = SAUNATransform(distance="chamfer_cv2")(mask[None].astype(np.uint8))
    assert out.shape == (1, 64, 64) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], ref2d["soft_label"])


def test_edt_variant_2d(ref2d):
    out = sauna_soft_label(ref2d["mask"])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref2d["soft_label_edt_variant"], rtol=0, atol=1e-6)


def test_summary_values(ref2d, summary):
    out = sauna_soft_label(ref2d["mask"], distance="chamfer_cv2")
    a = summary["A_transform_2d_64"]
    fg = ref2d["mask"] > 0
    assert float(out.mean()) == pytest.approx(a["mean"], abs=1e-6)
    assert float(out.astype(np.float64).sum()) == pytest.approx(a["sum"], abs=1e-3)
    assert float(out[fg].mean()) == pytest.approx(a["fg_mean"], abs=1e-6)
    assert float(out[~fg].mean()) == pytest.approx(a["bg_mean"], abs=1e-6)
    assert int(fg.sum()) == a["n_fg"] and int((out == -1).sum()) == a["n_minus1"]
    assert (out.min(), out.max()) == (a["min"], a["max"])
    for key, value in summary["A_samples"].items():
        r, c = map(int, key.strip("()").split(","))
        assert out[r, c] == pytest.approx(value, abs=1e-7), key
    assert np.abs(out - sauna_soft_label(ref2d["mask"])).max() == pytest.approx(a["max_abs_diff_cv2_vs_edt"], abs=1e-6)


def test_edge_cases():
    ref = np.load(DATA / "sauna_transform_edge_cases.npz")
    empty = np.zeros((16, 16), dtype=np.uint8)
    for distance in ("edt", "chamfer_cv2"):
        np.testing.assert_array_equal(sauna_soft_label(empty, distance=distance), ref["empty_soft_label"])
    full = np.ones((16, 16), dtype=np.uint8)
    # cv2 gives FLT_MAX on a mask without background (the anchor then crashes); we reproduce the distance ...
    assert chamfer_distance_cv2(full).max() == np.float32(ref["full_fg_max"])
    # ... and guard the transform: +1 by default, a chosen value, or a clear error
    for distance in ("edt", "chamfer_cv2"):
        np.testing.assert_array_equal(sauna_soft_label(full, distance=distance), np.ones((16, 16), np.float32))
        np.testing.assert_array_equal(sauna_soft_label(full, distance=distance, full_value=0.5), np.full((16, 16), 0.5))
        with pytest.raises(ValueError, match="no background"):
            sauna_soft_label(full, distance=distance, full_value=None)
    with pytest.raises(ValueError, match="no background"):
        SAUNATransform(full_value=None)(full[None])


def test_3d_reference(ref3d):
    mask = ref3d["mask"]
    slicewise = sauna_soft_label(mask, distance="chamfer_cv2", mode="2d_slicewise", slice_axis=0)
    np.testing.assert_array_equal(slicewise, ref3d["soft_label_anchor_per_slice_axis0"])
    nd = sauna_soft_label(mask)
    np.testing.assert_allclose(nd, ref3d["soft_label_proposed_3d_edt"], rtol=0, atol=1e-6)
    out = SAUNATransform()(torch.as_tensor(mask)[None])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (1, 24, 24, 24)
    np.testing.assert_allclose(out[0].numpy(), ref3d["soft_label_proposed_3d_edt"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_slice_axis(ref3d, axis):
    mask = np.moveaxis(ref3d["mask"], 0, axis)
    out = SAUNATransform(distance="chamfer_cv2", mode="2d_slicewise", slice_axis=axis)(mask[None])[0]
    np.testing.assert_array_equal(np.moveaxis(out, axis, 0), ref3d["soft_label_anchor_per_slice_axis0"])


def test_slicewise_spacing(ref3d):
    mask = ref3d["mask"]
    # the slice axis spacing plays no role; in-plane spacing is used slice by slice
    a = sauna_soft_label(mask, (5.0, 1.0, 1.0), distance="chamfer_cv2", mode="2d_slicewise")
    np.testing.assert_array_equal(a, ref3d["soft_label_anchor_per_slice_axis0"])
    b = sauna_soft_label(mask, (5.0, 1.0, 2.0), mode="2d_slicewise")
    np.testing.assert_array_equal(b, np.stack([sauna_soft_label(sl, (1.0, 2.0)) for sl in mask]))
    with pytest.raises(ValueError, match="isotropic"):
        sauna_soft_label(mask, (5.0, 1.0, 2.0), distance="chamfer_cv2", mode="2d_slicewise")


def test_slicewise_equals_nd_in_2d(ref2d):
    a = sauna_soft_label(ref2d["mask"], mode="2d_slicewise")
    np.testing.assert_array_equal(a, sauna_soft_label(ref2d["mask"]))


def test_chamfer_by_hand():
    img = np.ones((5, 7), dtype=bool)
    img[2, 3] = False
    d = chamfer_distance_cv2(img)
    f = np.float32
    assert d[2, 3] == 0 and d[2, 4] == 1 and d[1, 4] == f(1.4) and d[0, 4] == f(2.1969) and d[1, 5] == f(2.1969)
    assert d[2, 5] == 2 and d[0, 5] == f(1.4) + f(1.4) and d[2, 0] == 3  # outside the image is not background


# ------------------------------------------------------------------------------------------------------ generalisation
def test_spacing_equivalence(ref3d):
    mask = ref3d["mask"]
    ref = sauna_soft_label(mask)
    for spacing in (2.5, (0.3, 0.3, 0.3), 1.0):
        np.testing.assert_allclose(sauna_soft_label(mask, spacing), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "shape,spacing,seed",
    [
        ((7, 9, 8), (1.0, 0.6, 2.3), 0),
        ((6, 8, 10), (2.0, 1.0, 1.0), 1),
        ((12, 15), (0.7, 1.9), 2),
        ((11, 13), (1, 1), 3),
    ],
)
def test_anisotropic_brute_force(shape, spacing, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.45
    out = sauna_soft_label(mask, spacing)
    np.testing.assert_allclose(out, brute_force(mask, spacing), rtol=0, atol=2e-6)
    assert np.array_equal(out > 0, mask)


def test_anisotropic_window_sizes():
    # 7 x 10 voxel block, spacing 1 x 0.5 mm (7 x 5 mm): M = 2.5 mm, windows odd(ceil(2.5/1)) = 3 and
    # odd(ceil(2.5/0.5)) = 5 voxels
    mask = np.zeros((20, 30), dtype=bool)
    mask[7:14, 10:20] = True
    out = sauna_soft_label(mask, (1.0, 0.5))
    np.testing.assert_allclose(out, brute_force(mask, (1.0, 0.5)), atol=2e-6)
    # top rim: D_in = 1 mm, window max 2 mm one row down -> 1 - (2 - 1) / 2.5
    assert out[7, 15] == pytest.approx(0.6, abs=1e-6)
    # left rim: D_in = 0.5 mm; the 5-voxel window reaches D_in = 1.5 mm (a 3-voxel one would stop at 1.0 -> 0.8)
    assert out[10, 10] == pytest.approx(1 - (1.5 - 0.5) / 2.5, abs=1e-6)


def plain_scipy(mask, spacing):
    """Whole-array scipy implementation (float64, no cropping): the second oracle, for bigger arrays."""
    spacing = np.asarray(spacing, dtype=np.float64)
    d_in = ndimage.distance_transform_edt(mask, sampling=spacing)
    m = d_in.max()
    d = np.minimum(ndimage.distance_transform_edt(~mask, sampling=spacing), m)
    size = [(lambda k: k + 1 - k % 2)(math.ceil(m / s - 1e-9)) for s in spacing]
    pool_in = ndimage.maximum_filter(d_in, size=size, mode="constant", cval=-np.inf)
    pool_out = ndimage.maximum_filter(d, size=size, mode="constant", cval=-np.inf)
    eps = 1e-6 * spacing.min()
    return np.where(mask, 1 - (pool_in - d_in) / (m + eps), -1 + (pool_out - d) / (m + eps))


def test_crop_matches_whole_array():
    """Sparse objects, objects at the border and a half-space: the cropped computation equals the plain one."""
    cases = []
    sparse = np.zeros((40, 50, 30), dtype=bool)
    sparse[10:14, 20:23, 5:9] = True
    sparse[30, 40:45, 20] = True
    cases.append(sparse)
    border = np.zeros((40, 50, 30), dtype=bool)
    border[0:3, :, :] = True  # half-space cut by the border: M = 3, larger than the bounding-box bound would say
    border[25:28, 0:4, 29] = True
    cases.append(border)
    slab = np.zeros((60, 40), dtype=bool)
    slab[:10] = True  # alone: the box bound must not treat the image border as background
    cases.append(slab)
    corner = np.zeros((60, 45), dtype=bool)
    corner[:6, :9] = True
    corner[30:33, 20:40] = True
    cases.append(corner)
    for mask, spacing in itertools.product(cases, [None, "aniso"]):
        sp = np.ones(mask.ndim) if spacing is None else np.linspace(0.6, 2.1, mask.ndim)
        np.testing.assert_allclose(sauna_soft_label(mask, sp), plain_scipy(mask, sp), rtol=0, atol=2e-6)


@given(
    st.integers(2, 3).flatmap(
        lambda nd: st.tuples(
            arrays(bool, st.tuples(*[st.integers(1, 12)] * nd)),
            st.lists(st.floats(0.2, 5.0), min_size=nd, max_size=nd),
        )
    )
)
def test_sign_recovers_mask_property(case):
    mask, spacing = case
    out = sauna_soft_label(mask, spacing)
    assert out.dtype == np.float32 and out.shape == mask.shape
    assert out.min() >= -1 and out.max() <= 1
    if mask.all():
        assert (out == 1).all()
    else:
        assert np.array_equal(out > 0, mask) and np.array_equal(out < 0, ~mask)


@given(arrays(bool, st.tuples(st.integers(1, 14), st.integers(1, 14))))
def test_sign_recovers_mask_chamfer_property(mask):
    out = sauna_soft_label(mask, distance="chamfer_cv2")
    assert out.min() >= -1 and out.max() <= 1
    assert np.array_equal(out > 0, mask) or mask.all()


def test_random_masks_sign_and_closed_form_bounds():
    rng = np.random.default_rng(5)
    for shape in [(40, 50), (16, 18, 20)]:
        mask = rng.random(shape) < 0.3
        out = sauna_soft_label(mask)
        assert np.array_equal(out > 0, mask)
        assert out.max() == 1 and out.min() == -1  # centre lines reach +1, far background -1


# ---------------------------------------------------------------------------------------------------------- multi-class
def multiclass_label():
    label = np.zeros((1, 20, 22, 18), dtype=np.int64)
    label[0, 2:9, 3:12, 4:10] = 1
    label[0, 12:14, 2:20, 8:10] = 3  # class 2 is absent
    label[0, 15:19, 15:20, 12:17] = 4
    return label


def test_multiclass_one_vs_rest():
    label = multiclass_label()
    out = SAUNATransform(num_classes=5)(label)
    assert out.shape == (4, 20, 22, 18) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], -np.ones(label.shape[1:], np.float32))  # absent class
    for i, c in enumerate(range(1, 5)):
        np.testing.assert_array_equal(out[i], sauna_soft_label(label[0] == c))
    with_bg = SAUNATransform(num_classes=5, include_background=True)(label)
    np.testing.assert_array_equal(with_bg[0], sauna_soft_label(label[0] == 0))
    np.testing.assert_array_equal(with_bg[1:], out)
    picked = SAUNATransform(classes=[4, 1])(label)
    np.testing.assert_array_equal(picked, out[[3, 0]])


def test_onehot_input_matches_label_map():
    label = multiclass_label()
    onehot = (np.arange(5)[:, None, None, None] == label).astype(np.float32)
    np.testing.assert_array_equal(SAUNATransform()(onehot), SAUNATransform(num_classes=5)(label))
    np.testing.assert_array_equal(SAUNATransform(classes=[0, 2])(onehot), SAUNATransform(classes=[0, 2])(label))
    np.testing.assert_array_equal(SAUNATransform(include_background=True)(onehot.astype(bool))[0],
                                  sauna_soft_label(label[0] == 0))


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_label_dtypes_and_round_trip(dtype):
    label = multiclass_label().astype(dtype)
    out = SAUNATransform(num_classes=5)(label)
    back = sauna_to_label(out)
    assert back.dtype == np.int64 and back.shape == label.shape
    np.testing.assert_array_equal(back, label)
    # torch, batched, with include_background and the matching classes
    t = torch.as_tensor(SAUNATransform(num_classes=5, include_background=True)(label))[None]
    back_t = sauna_to_label(t, classes=range(5), channel_dim=1)
    assert back_t.dtype == torch.long and back_t.shape == (1,) + label.shape
    np.testing.assert_array_equal(back_t[0].numpy(), label)


def test_bool_and_binary_labels():
    mask = np.zeros((1, 12, 12), dtype=bool)
    mask[0, 3:8, 4:6] = True
    ref = sauna_soft_label(mask[0])
    for lab in (mask, mask.astype(np.uint8), mask.astype(np.float64), torch.as_tensor(mask)):
        out = SAUNATransform()(lab)
        np.testing.assert_array_equal(np.asarray(out[0]), ref)
    assert SAUNATransform(include_background=True)(mask).shape == (2, 12, 12)


def test_sauna_to_label_multilabel_and_threshold():
    x = torch.tensor([[[0.5, -0.2], [-0.9, 0.0]], [[0.7, -0.1], [0.3, -1.0]]])  # (C=2, 2, 2)
    np.testing.assert_array_equal(sauna_to_label(x, exclusive=False).numpy(), (x >= 0).numpy())
    np.testing.assert_array_equal(sauna_to_label(x).numpy(), [[[2, 0], [2, 1]]])
    np.testing.assert_array_equal(sauna_to_label(x.numpy(), threshold=0.6), [[[2, 0], [0, 0]]])
    logits = torch.randn(3, 4, 5, 6, 7)
    lab = sauna_to_label(logits, channel_dim=1)
    assert lab.shape == (3, 1, 5, 6, 7)
    expect = torch.where((logits >= 0).any(1, keepdim=True), logits.argmax(1, keepdim=True) + 1, 0)
    assert torch.equal(lab, expect)


def test_decode_transforms_match_sauna_to_label():
    label = multiclass_label()
    soft = SAUNATransform(num_classes=5)(label)
    # array transform: the round trip recovers the label map, for numpy and torch input
    np.testing.assert_array_equal(SAUNADecode()(soft), label)
    assert torch.equal(SAUNADecode()(torch.as_tensor(soft)), torch.as_tensor(label, dtype=torch.long))
    logits = torch.randn(3, 6, 7, 5)
    for kwargs in ({}, {"threshold": 0.4}, {"exclusive": False}, {"classes": [2, 5, 7]}):
        assert torch.equal(SAUNADecode(**kwargs)(logits), sauna_to_label(logits, **kwargs))
    # dictionary transform on MetaTensors: other keys untouched, metadata kept
    affine = torch.diag(torch.tensor([0.5, 0.7, 2.0, 1.0], dtype=torch.float64))
    pred = MetaTensor(torch.as_tensor(soft), affine=affine, meta={"filename_or_obj": "case_1.nii.gz"})
    image = torch.zeros(1, 20, 22, 18)
    out = SAUNADecoded(keys="pred")({"pred": pred, "image": image})
    assert out["image"] is image
    assert isinstance(out["pred"], MetaTensor) and out["pred"].dtype == torch.long
    assert torch.equal(out["pred"].affine, affine) and out["pred"].meta["filename_or_obj"] == "case_1.nii.gz"
    np.testing.assert_array_equal(out["pred"].numpy(), label)
    masks = SAUNADecoded(keys=["pred"], exclusive=False, threshold=0.5)({"pred": pred})["pred"]
    assert masks.dtype == torch.bool and torch.equal(masks.as_tensor(), pred.as_tensor() >= 0.5)
    assert set(SAUNADecoded(keys=["pred", "x"], allow_missing_keys=True)({"pred": pred})) == {"pred"}
    with pytest.raises(KeyError):
        SAUNADecoded(keys="x")({"pred": pred})
    with pytest.raises(ValueError, match="threshold"):
        SAUNADecode(threshold=float("nan"))
    with pytest.raises(ValueError, match="classes"):
        SAUNADecode(classes=[1.5])
    with pytest.raises(ValueError, match="one label per channel"):
        SAUNADecode(classes=[1])(soft)


# ------------------------------------------------------------------------------------------------------------- MONAI
def test_dictionary_transform_with_metatensor():
    label = multiclass_label()
    affine = torch.diag(torch.tensor([1.5, 0.8, 2.0, 1.0], dtype=torch.float64))
    mt = MetaTensor(torch.as_tensor(label), affine=affine, meta={"filename_or_obj": "case_0.nii.gz"})
    data = {"label": mt, "image": torch.zeros(1, 20, 22, 18)}
    out = SAUNATransformd("label", output_key="soft", spacing="auto", num_classes=5)(data)
    assert out["label"] is mt and out["image"] is data["image"]
    soft = out["soft"]
    assert isinstance(soft, MetaTensor) and soft.dtype == torch.float32 and soft.shape == (4, 20, 22, 18)
    assert soft.meta["filename_or_obj"] == "case_0.nii.gz" and torch.equal(soft.affine, affine)
    explicit = SAUNATransform(spacing=(1.5, 0.8, 2.0), num_classes=5)(label)
    np.testing.assert_array_equal(soft.numpy(), explicit)
    assert not np.array_equal(explicit, SAUNATransform(num_classes=5)(label))  # the spacing did matter
    overwritten = SAUNATransformd(["label"], num_classes=5)({"label": label})
    np.testing.assert_array_equal(overwritten["label"], SAUNATransform(num_classes=5)(label))
    missing = SAUNATransformd(["label", "other"], allow_missing_keys=True, num_classes=5)({"label": label})
    assert set(missing) == {"label"}
    # decoding keeps the metadata, so MONAI's SaveImage can write the labels back with the case's geometry
    decoded = sauna_to_label(soft, classes=[1, 2, 3, 4])
    assert isinstance(decoded, MetaTensor) and torch.equal(decoded.affine, affine)
    assert decoded.meta["filename_or_obj"] == "case_0.nii.gz"
    np.testing.assert_array_equal(decoded.numpy()[0], np.where(label[0] <= 4, label[0], 0))


# -------------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "label,kwargs,match",
    [
        (np.zeros((8, 8)), {}, "channel-first"),
        (np.zeros((1, 2, 4, 4, 4)), {}, "channel-first"),
        (np.zeros((1, 0, 4)), {}, "empty"),
        (np.array([[[0, 1], [np.nan, 0]]]), {}, "NaN"),
        (np.array([[[0, 1.5], [1, 0]]]), {}, "non-integer"),
        (np.array([[[0, -1], [1, 0]]]), {}, ">= 0"),
        (np.array([[[0, 3], [1, 0]]]), {}, "num_classes"),
        (np.array([[[0, 3], [1, 0]]]), {"num_classes": 3}, r"\[0, 2\]"),
        (np.stack([np.eye(3), 2 * np.eye(3)]), {}, "binary"),
        (np.stack([np.eye(3), np.eye(3)]), {"num_classes": 3}, "channels"),
        (np.stack([1 - np.eye(3), np.eye(3)]), {"classes": [5]}, "not channels"),
        (np.zeros((1, 4, 4), dtype=np.complex64), {}, "dtype"),
        ([[[0, 1]]], {}, "numpy array or"),
        (np.zeros((1, 4, 4)), {"spacing": (1.0, 2.0, 3.0)}, "spacing"),
        (np.zeros((1, 4, 4)), {"spacing": (1.0, -2.0)}, "spacing"),
        (np.zeros((1, 4, 4)), {"spacing": "auto"}, "MetaTensor"),
        (np.eye(4)[None], {"distance": "chamfer_cv2", "spacing": (1.0, 2.0)}, "isotropic"),
        (np.ones((1, 4, 4, 4)), {"distance": "chamfer_cv2"}, "2d_slicewise"),
    ],
)
def test_bad_inputs(label, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAUNATransform(**kwargs)(label)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"distance": "cv2"}, "distance"),
        ({"mode": "3d"}, "mode"),
        ({"full_value": 0.0}, "full_value"),
        ({"full_value": 2.0}, "full_value"),
        ({"num_threads": 0}, "num_threads"),
        ({"spacing": "pixdim"}, "spacing"),
        ({"num_classes": 0}, "num_classes"),
        ({"classes": []}, "classes"),
        ({"classes": [1.5]}, "classes"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAUNATransform(**kwargs)


def test_bad_function_and_decoder_inputs():
    with pytest.raises(ValueError, match="2D or 3D"):
        sauna_soft_label(np.zeros(5))
    with pytest.raises(ValueError, match="binary"):
        sauna_soft_label(np.array([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="slice_axis"):
        sauna_soft_label(np.zeros((3, 3, 3)), mode="2d_slicewise", slice_axis=3)
    with pytest.raises(ValueError, match="one key per key"):
        SAUNATransformd(["a", "b"], output_key="c")
    with pytest.raises(ValueError, match="NaN"):
        sauna_to_label(torch.tensor([[[float("nan")]]]))
    with pytest.raises(ValueError, match="one label per channel"):
        sauna_to_label(np.zeros((2, 3, 3)), classes=[1])
    with pytest.raises(ValueError, match="channel axis"):
        sauna_to_label(np.zeros((2, 3)), channel_dim=2)
    with pytest.raises(ValueError, match="numpy array or a torch tensor"):
        sauna_to_label([[0.5]])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_stays_on_device():
    label = torch.as_tensor(multiclass_label(), device="cuda")
    out = SAUNATransform(num_classes=5)(label)
    assert out.device == label.device and out.dtype == torch.float32
    assert torch.equal(sauna_to_label(out), label)



def test_object_at_the_border_with_anisotropic_spacing():
    # regression: the float32 maximum distance rounded up past the float64 crop bound, so the inner box left the
    # crop (a broadcast error, or all ones for the mirrored mask)
    mask = np.array([[0], [0], [0], [1]], bool)
    spacing = [2.2881025315489416, 1.0]
    soft = sauna_soft_label(mask, spacing)
    np.testing.assert_array_equal(soft.ravel(), [-1.0, -1.0, -1.0, 1.0])
    np.testing.assert_array_equal(sauna_soft_label(mask[::-1], spacing), soft[::-1])
