"""Overlap (nnU-Net's conventions) and surface metrics (MONAI's), and the foreground crop every metric shares."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medloss.metrics import (
    betti_matching_error,
    betti_number_error,
    binary_metrics,
    cldice,
    dice,
    iou,
    overlap_metrics,
    surface_metrics,
)
from medloss.metrics.utils import foreground_box

SPACING_ZYX = (2.0, 0.8, 0.8)


def blob(rng, shape, sigma=2.0, level=0.15):
    return gaussian_filter(rng.standard_normal(shape), sigma) > level


def test_overlap_agrees_with_nnunet_counts_and_ignore_mask():
    nnunet_eval = pytest.importorskip("nnunetv2.evaluation.evaluate_predictions")
    rng = np.random.default_rng(0)
    for shape in [(12, 24, 24), (30, 40)]:
        ref, pred = blob(rng, shape), blob(rng, shape)
        ignore = rng.random(shape) < 0.1
        for ignore_mask in (None, ignore):
            ours = overlap_metrics(pred, ref, None if ignore_mask is None else ~ignore_mask)
            tp, fp, fn, tn = nnunet_eval.compute_tp_fp_fn_tn(ref, pred, ignore_mask)
            assert (ours["TP"], ours["FP"], ours["FN"], ours["TN"]) == (tp, fp, fn, tn)
            assert ours["Dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-15)
            assert ours["IoU"] == pytest.approx(tp / (tp + fp + fn), rel=1e-15)
            assert (ours["n_pred"], ours["n_ref"]) == (tp + fp, tp + fn)
            keep = None if ignore_mask is None else ~ignore_mask
            assert (dice(pred, ref, keep), iou(pred, ref, keep)) == (ours["Dice"], ours["IoU"])


def test_overlap_empty_conventions_and_input_types():
    empty = np.zeros((5, 6), bool)
    one = empty.copy()
    one[2, 2] = True
    both = overlap_metrics(empty, empty)
    assert math.isnan(both["Dice"]) and math.isnan(both["IoU"]) and both["TN"] == 30
    assert math.isnan(dice(empty, empty)) and math.isnan(iou(empty, empty))
    assert overlap_metrics(empty, one)["Dice"] == 0.0 and overlap_metrics(one, empty)["IoU"] == 0.0
    # 0/1 arrays and tensors give the same numbers as boolean arrays
    assert overlap_metrics(torch.tensor(one), one.astype(np.uint8)) == overlap_metrics(one, one)
    with pytest.raises(ValueError, match="same shape"):
        overlap_metrics(one, one[:, :5])
    with pytest.raises(ValueError, match="mask must have the shape"):
        overlap_metrics(one, one, mask=np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="binary"):
        overlap_metrics(one, one * 2)
    with pytest.raises(ValueError, match="one 2D or 3D image"):
        overlap_metrics(one[None, None], one[None, None])


def test_surface_metrics_agree_with_monai():
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(1)
    for _ in range(3):
        ref = blob(rng, (12, 24, 24))
        pred = np.roll(ref, 1, axis=2) | (rng.random(ref.shape) < 0.01)
        ours = surface_metrics(pred, ref, SPACING_ZYX, nsd_tolerance=1.5)
        p = torch.as_tensor(np.stack([~pred, pred])[None].astype(np.float32))
        r = torch.as_tensor(np.stack([~ref, ref])[None].astype(np.float32))
        hd = compute_hausdorff_distance(p, r, percentile=95, spacing=SPACING_ZYX)
        nsd = compute_surface_dice(p, r, [1.5], spacing=SPACING_ZYX)
        assert ours["HD95"] == pytest.approx(float(hd[0, 0]), rel=1e-5)
        assert ours["NSD"] == pytest.approx(float(nsd[0, 0]), rel=1e-5)


def test_surface_metrics_hand_computed_and_empty_conventions():
    ref = np.zeros((1, 10, 10), bool)
    ref[0, 2:5, 2:5] = True
    # one slice thick: every voxel is a surface voxel. The squares touch; per side, the three columns of a square
    # lie 1, 2 and 3 voxels (0.5, 1.0, 1.5 mm) from the nearest column of the other
    shifted = np.roll(ref, 3, axis=2)
    m = surface_metrics(shifted, ref, (1.0, 1.0, 0.5), nsd_tolerance=1.5)
    assert m["HD95"] == pytest.approx(1.5) and m["NSD"] == pytest.approx(1.0)
    m = surface_metrics(shifted, ref, (1.0, 1.0, 0.5), nsd_tolerance=1.4)
    assert m["NSD"] == pytest.approx(2 / 3)
    assert surface_metrics(shifted, ref, (1.0, 1.0, 0.5), nsd_tolerance=0.5)["NSD"] == pytest.approx(1 / 3)
    empty = np.zeros_like(ref)
    both = surface_metrics(empty, empty, (1, 1, 1))
    assert math.isnan(both["HD95"]) and math.isnan(both["NSD"])
    for one in (surface_metrics(empty, ref, (1, 1, 1)), surface_metrics(ref, empty, (1, 1, 1))):
        assert one["NSD"] == 0.0 and one["HD95"] == pytest.approx(np.sqrt(1 + 100 + 100))
    assert surface_metrics(empty, ref, (3, 1, 2))["HD95"] == pytest.approx(np.sqrt(9 + 100 + 400))
    assert surface_metrics(shifted[0], ref[0])["HD95"] == pytest.approx(3.0)  # 2D, default spacing 1 mm
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(shifted, ref, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(shifted, ref, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="nsd_tolerance"):
        surface_metrics(shifted, ref, (1.0, 1.0, 1.0), nsd_tolerance=-1)


def test_foreground_box():
    a = np.zeros((6, 7, 8), bool)
    b = np.zeros_like(a)
    assert foreground_box(a, b) is None
    a[2, 3, 4] = True
    b[3, 5, 0] = True  # at the border: the margin is clipped there
    assert foreground_box(a, b) == (slice(1, 5), slice(2, 7), slice(0, 6))
    assert foreground_box(a, b, margin=0) == (slice(2, 4), slice(3, 6), slice(0, 5))


def _clDice_reference(pred, gt):
    """clDice from scikit-image skeletons of the whole (uncropped) masks, with the lost-object rule of cldice."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    def skel(m):
        s = skeletonize(m)
        lab, _ = ndimage.label(m, structure=np.ones((3,) * m.ndim, bool))
        kept = np.unique(lab[s])
        return s | (np.isin(lab, kept, invert=True) & m)

    sp, sg = skel(pred), skel(gt)
    tprec, tsens = (sp & gt).sum() / sp.sum(), (sg & pred).sum() / sg.sum()
    return 0.0 if tprec + tsens == 0 else 2 * tprec * tsens / (tprec + tsens)


@pytest.mark.parametrize("shape", [(40, 44), (14, 18, 20)])
def test_crop_to_the_foreground_changes_no_number(shape):
    """The metrics run on foreground_box; the same values come from the whole images, computed here directly."""
    from monai.metrics import compute_hausdorff_distance

    from medloss.topology import betti_matching, betti_numbers

    rng = np.random.default_rng(7)
    spacing = (0.7, 1.9, 1.1)[: len(shape)]
    inner = tuple(slice(n // 4, n - n // 4) for n in shape)  # foreground away from the border, so the crop matters
    for trial in range(4):
        ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
        small = tuple(s.stop - s.start for s in inner)
        ref[inner] = blob(rng, small, sigma=1.2, level=0.1)
        pred[inner] = ref[inner] ^ (rng.random(small) < 0.08)
        if trial == 3:
            pred[0] = True  # foreground on the border: crop clipped there
        assert foreground_box(pred, ref) != tuple(slice(0, n) for n in shape) or trial == 3

        bne = np.abs(betti_numbers(pred) - betti_numbers(ref))
        assert betti_number_error(pred, ref).per_dim.tolist() == bne.tolist()
        res = betti_matching(pred.astype(float), ref.astype(float))
        bme = res.num_unmatched_pred + res.num_unmatched_target
        assert betti_matching_error(pred, ref).per_dim.tolist() == bme.tolist()
        assert cldice(pred, ref) == pytest.approx(_clDice_reference(pred, ref), abs=1e-12)
        p = torch.as_tensor(np.stack([~pred, pred])[None].astype(np.float32))
        r = torch.as_tensor(np.stack([~ref, ref])[None].astype(np.float32))
        hd = float(compute_hausdorff_distance(p, r, percentile=95, spacing=spacing)[0, 0])
        assert surface_metrics(pred, ref, spacing)["HD95"] == pytest.approx(hd, rel=1e-5)


def test_binary_metrics_composes_the_metric_functions():
    rng = np.random.default_rng(3)
    ref = blob(rng, (10, 20, 20))
    pred = ref ^ (rng.random(ref.shape) < 0.05)
    keep = rng.random(ref.shape) > 0.1
    spacing = (2.0, 0.5, 0.7)
    m = binary_metrics(pred, ref, spacing, nsd_tolerance=0.8, mask=keep)
    p, r = pred & keep, ref & keep
    expected = dict(overlap_metrics(pred, ref, keep))
    expected.update(surface_metrics(p, r, spacing, 0.8))
    expected["clDice"] = cldice(p, r)
    for key, fn in (("BNE", betti_number_error), ("BME", betti_matching_error)):
        per_dim = fn(p, r).per_dim
        expected.update({f"{key}{d}": float(v) for d, v in enumerate(per_dim)})
        expected[key] = float(per_dim.sum())
    assert list(m) == list(expected) and m == expected
    assert m["BME"] > 0 and 0 < m["clDice"] < 1
    assert list(binary_metrics(pred, ref, metrics=["Dice"])) == ["Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred",
                                                                 "n_ref"]
    with pytest.raises(ValueError, match="unknown metric"):
        binary_metrics(pred, ref, metrics=["Dice", "HD100"])
