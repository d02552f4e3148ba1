"""LabelMIP / LabelMIPd: layout, crop/flip alignment, the anchor's global label MIP, bad input.

The anchor cases (tests/data/mip_pulaski/, copied from shared/reference/mip_pulaski/) hold the whole training label
volume (``full_label_WLD``), the patch positions and the anchor's cropped whole-volume MIPs (``gt_mip_*_patch``).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Flipd, RandSpatialCropd, SpatialCropd, SpatialPadd

from medloss.losses import MIPLoss
from medloss.transforms import LabelMIP, LabelMIPd

DATA = Path(__file__).resolve().parents[1] / "data" / "mip_pulaski"
SUMMARY = json.loads((DATA / "spockmip_summary.json").read_text())
AXES = (0, 2, 1)  # the anchor's z, y, x in its (D, W, L) layout


def test_layout_single_voxel():
    label = np.zeros((1, 3, 4, 5), np.uint8)
    label[0, 1, 2, 3] = 1
    out = LabelMIP(axes=(0, -1))(label)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (2, 3, 4, 5)
    expected0 = np.zeros((3, 4, 5), np.uint8)
    expected0[:, 2, 3] = 1  # MIP along axis 0, repeated along it
    expected1 = np.zeros((3, 4, 5), np.uint8)
    expected1[1, 2, :] = 1
    np.testing.assert_array_equal(out[0], expected0)
    np.testing.assert_array_equal(out[1], expected1)


def test_class_map_is_one_hot_axis_major():
    label = torch.zeros(1, 4, 6)
    label[0, 1, 2] = 2
    label[0, 3, 5] = 1
    out = LabelMIP(axes=(0, 1), num_classes=3)(label)
    assert isinstance(out, torch.Tensor) and out.shape == (6, 4, 6)
    onehot = torch.stack([label[0] == c for c in range(3)]).float()
    for i, dim in enumerate((1, 2)):
        torch.testing.assert_close(out[3 * i: 3 * i + 3], onehot.amax(dim, keepdim=True).expand_as(onehot))


def test_metatensor_meta_is_kept():
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    label = MetaTensor(torch.zeros(1, 4, 5, 6), affine=affine)
    out = LabelMIP(axes=(0, 1, 2))(label)
    assert isinstance(out, MetaTensor) and out.shape == (3, 4, 5, 6)
    torch.testing.assert_close(out.affine, affine)


def test_flip_and_crop_keep_alignment():
    rng = np.random.default_rng(0)
    label = (rng.random((1, 12, 10, 8)) > 0.9).astype(np.uint8)
    data = LabelMIPd(keys="label", axes=(0, 1, 2))({"label": label})
    # flips commute with the transform
    flipped = Flipd(keys=["label", "label_mip"], spatial_axis=(0, 2))(data)
    np.testing.assert_array_equal(np.asarray(flipped["label_mip"]),
                                  np.asarray(LabelMIP(axes=(0, 1, 2))(np.asarray(flipped["label"]))))
    # after a random crop: constant along each projected axis and containing the patch's own MIP
    cropper = Compose([RandSpatialCropd(keys=["label", "label_mip"], roi_size=(5, 4, 3), random_size=False)])
    cropper.set_random_state(1)
    for _ in range(5):
        patch = cropper(data)
        lab, lm = torch.as_tensor(patch["label"]), torch.as_tensor(patch["label_mip"])
        for i, dim in enumerate((1, 2, 3)):
            ch = lm[i: i + 1]
            assert bool((ch == ch.amax(dim, keepdim=True)).all())
            assert bool((ch.amax(dim) >= lab.amax(dim)).all())


def _patch_pipeline(case, b, patch):
    """Whole volume in the anchor's (D, W, L) layout -> LabelMIPd -> crop at the anchor's patch position."""
    full = np.transpose(case["full_label_WLD"], (2, 0, 1))[None]  # (1, D, W, L)
    w0, l0, d0 = (int(v) for v in case["start_coords_WLD"][b])
    start = np.array([d0, w0, l0])
    data = LabelMIPd(keys="label", axes=AXES)({"label": full})
    # patches reaching past the volume: the anchor crops what is there and pads it symmetrically (with eps)
    crop = Compose([SpatialCropd(keys=["label", "label_mip"], roi_start=start, roi_end=start + patch),
                    SpatialPadd(keys=["label", "label_mip"], spatial_size=(patch,) * 3, method="symmetric")])
    return crop(data)


@pytest.mark.parametrize("name", ["spock_random_p32_multi.npz", "spock_perfect_partialdepth_p32_z.npz",
                                  "spock_random_deepsup3_p64_b1_z.npz"])
def test_crops_equal_the_anchor_global_label_mip(name):
    case = dict(np.load(DATA / name))
    batch, _, patch = case["label_patch_BCDWL"].shape[:3]
    for b in range(batch):
        out = _patch_pipeline(case, b, patch)
        np.testing.assert_array_equal(np.asarray(out["label"])[0], case["label_patch_BCDWL"][b, 0])
        lm = np.asarray(out["label_mip"])
        # anchor layouts: z = max over D as (W, L); y = max over L as (W, D); x = max over W as (L, D)
        np.testing.assert_allclose(lm[0].max(0), case["gt_mip_z_patch"][b], atol=1e-15)
        np.testing.assert_allclose(lm[1].max(2).T, case["gt_mip_y_patch"][b], atol=1e-15)
        np.testing.assert_allclose(lm[2].max(1).T, case["gt_mip_x_patch"][b], atol=1e-15)


@pytest.mark.parametrize("name, summary_key, axes", [
    ("spock_perfect_partialdepth_p32_z.npz", "spock_perfect_partialdepth_p32_z.npz", (0,)),
    ("spock_random_p32_multi.npz", "spock_random_p32_multi.npz", AXES),
])
def test_transform_plus_loss_reproduce_anchor_global_values(name, summary_key, axes):
    case = dict(np.load(DATA / name))
    batch, _, patch = case["label_patch_BCDWL"].shape[:3]
    patches = [_patch_pipeline(case, b, patch) for b in range(batch)]
    keep = [AXES.index(a) for a in axes]
    label = torch.stack([torch.as_tensor(p["label"]) for p in patches])
    label_mip = torch.stack([torch.as_tensor(p["label_mip"])[keep] for p in patches])
    logits = torch.as_tensor(case["logits_level0"]).float()
    value = MIPLoss(sigmoid=True, axes=axes, voxel_weight=0, mip_weight=1)(logits, label, label_mip=label_mip)
    expected = SUMMARY[summary_key]["aligned_axes_global_label_mip"] - 0.001 - 0.001 / batch
    assert abs(value.item() - expected) < 1e-6


def test_mip_keys():
    label = np.zeros((1, 3, 4), np.uint8)
    d = LabelMIPd(keys=["a", "b"], axes=1, mip_keys=["ma", "mb"])({"a": label, "b": label})
    assert d["ma"].shape == (1, 3, 4) and d["mb"].shape == (1, 3, 4)
    assert "label_mip" in LabelMIPd(keys="label")({"label": label})
    with pytest.raises(ValueError, match="mip key"):
        LabelMIPd(keys=["a", "b"], mip_keys="m")


def test_bad_input():
    with pytest.raises(ValueError, match="binary"):
        LabelMIP()(np.full((1, 3, 4, 5), 2, np.uint8))
    with pytest.raises(ValueError, match="label values"):
        LabelMIP(num_classes=2)(np.full((1, 3, 4, 5), 2, np.uint8))
    with pytest.raises(ValueError, match="label values"):
        LabelMIP(num_classes=3)(np.full((1, 3, 4, 5), 0.5, np.float32))
    with pytest.raises(ValueError, match="class map"):
        LabelMIP(num_classes=2)(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        LabelMIP()(np.full((1, 3, 4, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        LabelMIP()(np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="axes"):
        LabelMIP(axes=2)(np.zeros((1, 3, 4), np.uint8))  # 2D label: spatial axes 0 and 1
    with pytest.raises(ValueError, match="distinct"):
        LabelMIP(axes=(1, -2))(np.zeros((1, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="numpy array or a torch.Tensor"):
        LabelMIP()([[0, 1]])
    for kwargs in ({"axes": ()}, {"axes": "z"}, {"num_classes": 0}, {"num_classes": True}):
        with pytest.raises(ValueError):
            LabelMIP(**kwargs)

