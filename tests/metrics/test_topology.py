"""Tests for medloss.metrics.topology (Betti number error, Betti matching error and their MONAI metrics)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from medloss.metrics.topology import (
    BettiMatchingErrorMetric,
    BettiNumberErrorMetric,
    betti_matching_error,
    betti_number_error,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "betti"
# every reference case whose target is binary (identical_2d compares two non-binary images)
CASES = sorted(p.stem for p in DATA.glob("*.npz") if p.stem != "identical_2d")


@pytest.mark.parametrize("name", CASES)
def test_reference_bme_bne(name):
    d = np.load(DATA / f"{name}.npz")
    bme = betti_matching_error(d["pred"], d["gt"])
    bne = betti_number_error(d["pred"], d["gt"])
    np.testing.assert_array_equal(bme.per_dim, d["bme_per_dim"])
    np.testing.assert_array_equal(bne.per_dim, d["bne_per_dim"])
    assert bme.total == d["bme_per_dim"].sum() and bne.total == d["bne_per_dim"].sum()
    assert bme.per_dim.dtype == np.int64 and bme.per_dim.shape == (d["pred"].ndim,)


def test_right_number_wrong_place():
    # two components each, but one of them at a different place: BNE 0, BME 2 (paper's Fig. 1 situation)
    pred = np.zeros((12, 12))
    gt = np.zeros((12, 12))
    pred[1:3, 1:3] = gt[1:3, 1:3] = 1
    pred[1:3, 8:10] = 1
    gt[8:10, 1:3] = 1
    assert betti_number_error(pred, gt).per_dim.tolist() == [0, 0]
    assert betti_matching_error(pred, gt).per_dim.tolist() == [2, 0]


def test_empty_prediction_counts_essential_component():
    gt = np.zeros((10, 10))
    gt[1:3, 1:3] = gt[6:8, 6:8] = 1
    empty = np.zeros_like(gt)
    assert betti_number_error(empty, gt).per_dim.tolist() == [2, 0]
    assert betti_matching_error(empty, gt).per_dim.tolist() == [2, 0]
    assert betti_matching_error(gt, empty).per_dim.tolist() == [2, 0]
    assert betti_matching_error(empty, empty).per_dim.tolist() == [0, 0]


def test_threshold_binarises_prediction():
    gt = np.zeros((8, 12))
    gt[3, 1:11] = 1
    pred = gt * 0.9 + 0.05
    pred[3, 6] = 0.4  # broken at threshold 0.5, connected at threshold 0.3
    assert betti_matching_error(pred, gt).per_dim.tolist() == [1, 0]
    assert betti_matching_error(pred, gt, threshold=0.3).per_dim.tolist() == [0, 0]
    assert betti_number_error(torch.tensor(pred), torch.tensor(gt) > 0).per_dim.tolist() == [1, 0]


def test_relative_border_to_border_vessel():
    gt = np.zeros((10, 14))
    gt[5, :] = 1
    pred = gt.copy()
    pred[5, 7] = 0
    # absolute: one extra component; relative to the border: one of the two loops closed by the vessel is lost
    assert betti_number_error(pred, gt).per_dim.tolist() == [1, 0]
    assert betti_number_error(pred, gt, relative=True).per_dim.tolist() == [0, 1]
    assert betti_matching_error(pred, gt, relative=True).per_dim.tolist() == [0, 1]


def test_batched_shapes_and_include_background():
    rng = np.random.default_rng(0)
    pred = rng.uniform(size=(2, 3, 9, 8))
    gt = (rng.uniform(size=(2, 3, 9, 8)) > 0.5).astype(float)
    for fn in (betti_matching_error, betti_number_error):
        out = fn(pred, gt)
        assert out.per_dim.shape == (2, 3, 2) and out.total.shape == (2, 3)
        for b in range(2):
            for c in range(3):
                np.testing.assert_array_equal(out.per_dim[b, c], fn(pred[b, c], gt[b, c]).per_dim)
        np.testing.assert_array_equal(out.total, out.per_dim.sum(-1))
        no_bg = fn(torch.tensor(pred), torch.tensor(gt), include_background=False)
        np.testing.assert_array_equal(no_bg.per_dim, out.per_dim[:, 1:])
    assert betti_matching_error(pred, gt).total.sum() > 0


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(2, 9), st.integers(2, 9))), st.data())
def test_bme_at_least_bne_with_same_parity_2d(pred, data):
    gt = data.draw(hnp.arrays(bool, pred.shape))
    bme = betti_matching_error(pred, gt).per_dim
    bne = betti_number_error(pred, gt).per_dim
    assert (bme >= bne).all() and ((bme - bne) % 2 == 0).all()


@settings(max_examples=15, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(2, 5), st.integers(2, 5), st.integers(2, 5))), st.data())
def test_bme_at_least_bne_with_same_parity_3d(pred, data):
    gt = data.draw(hnp.arrays(bool, pred.shape))
    for relative in (False, True):
        bme = betti_matching_error(pred, gt, relative=relative).per_dim
        bne = betti_number_error(pred, gt, relative=relative).per_dim
        assert (bme >= bne).all() and ((bme - bne) % 2 == 0).all()


@pytest.mark.parametrize(
    "cls, fn", [(BettiMatchingErrorMetric, betti_matching_error), (BettiNumberErrorMetric, betti_number_error)]
)
@pytest.mark.parametrize("spatial", [(10, 9), (6, 5, 7)])
def test_cumulative_metric(cls, fn, spatial):
    rng = np.random.default_rng(1)
    batches = [
        (
            torch.tensor(rng.uniform(size=(2, 2) + spatial)),
            torch.tensor((rng.uniform(size=(2, 2) + spatial) > 0.5) * 1.0),
        )
        for _ in range(2)
    ]
    metric = cls()
    per_dim_metric = cls(include_background=False, per_dimension=True, reduction="mean_batch", get_not_nans=True)
    for y_pred, y in batches:
        out = metric(y_pred=y_pred, y=y)
        assert out.shape == (2, 2)
        per_dim_metric(y_pred=y_pred, y=y)
    expected = np.concatenate([fn(p.numpy(), g.numpy()).total for p, g in batches])
    assert metric.aggregate().item() == pytest.approx(expected.mean())
    assert metric.aggregate("sum").item() == pytest.approx(expected.sum())
    np.testing.assert_allclose(metric.aggregate("none").numpy(), expected)
    f, not_nans = per_dim_metric.aggregate()
    expected_dim = np.concatenate([fn(p.numpy(), g.numpy(), include_background=False).per_dim for p, g in batches])
    np.testing.assert_allclose(f.numpy(), expected_dim.mean(0))
    assert f.shape == (1, len(spatial)) and (not_nans == 4).all()
    metric.reset()
    # list input of channel-first tensors (MONAI decollated batches)
    metric([p for p in batches[0][0]], [g for g in batches[0][1]])
    np.testing.assert_allclose(metric.aggregate("none").numpy(), expected[:2])


@pytest.mark.parametrize("fn", [betti_matching_error, betti_number_error])
def test_bad_inputs(fn):
    ok = np.zeros((6, 6))
    with pytest.raises(ValueError, match="same shape"):
        fn(ok, np.zeros((6, 5)))
    with pytest.raises(ValueError, match="spatial"):
        fn(np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError, match="spatial"):
        fn(np.zeros((1, 1, 2, 2, 2, 2)), np.zeros((1, 1, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((0, 1, 4, 4)), np.zeros((0, 1, 4, 4)))
    bad = ok.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, ok)
    with pytest.raises(ValueError, match="NaN"):
        fn(ok, ok + np.inf)
    with pytest.raises(ValueError, match="binary"):
        fn(ok, ok + 0.5)
    with pytest.raises(ValueError, match="numpy array or torch tensor"):
        fn([[0, 1]], ok)
    with pytest.raises(ValueError, match="y_pred"):
        BettiMatchingErrorMetric()(y_pred=torch.zeros(1, 6, 6), y=torch.zeros(1, 6, 6))


# ---------------------------------------------------------------- connectivity (TopoMortar's convention)

TOPOMORTAR = Path(__file__).resolve().parents[1] / "data" / "topomortar" / "dataset" / "test" / "accurate"


def _topomortar_label(i: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(TOPOMORTAR / f"{i:03d}.png")) == 255


def _degradations(label: np.ndarray, seed: int):
    """Synthetic predictions from a real label: the errors a segmentation network makes."""
    rng = np.random.default_rng(seed)
    cross = ndimage.generate_binary_structure(2, 1)
    out = {
        "erosion": ndimage.binary_erosion(label, cross, iterations=2),
        "dilation": ndimage.binary_dilation(label, cross, iterations=2),
    }
    gaps = label.copy()
    for r, c in rng.integers(0, label.shape[0] - 6, size=(25, 2)):
        gaps[r : r + 6, c : c + 2] = False  # short cuts through the mortar
    out["gaps"] = gaps
    blobs = label.copy()
    yy, xx = np.indices(label.shape)
    for r, c, rad in zip(*rng.integers(0, label.shape[0], size=(2, 12)), rng.integers(2, 6, size=12)):
        blobs ^= (yy - r) ** 2 + (xx - c) ** 2 <= rad**2  # spurious blobs and holes
    out["blobs"] = blobs
    out["noise"] = label ^ (rng.random(label.shape) < 0.01)
    out["smoothed_noise"] = ndimage.gaussian_filter(label + rng.normal(0, 0.6, label.shape), 1.0) > 0.5
    return out


def _gudhi_error(pred, gt, connectivity):
    from devtools.oracles import gudhi_betti_numbers

    return np.abs(gudhi_betti_numbers(pred, connectivity) - gudhi_betti_numbers(gt, connectivity))


def _check_real_label(label, seed):
    pytest.importorskip("gudhi")
    for name, pred in _degradations(label, seed).items():
        assert pred.any() and label.any()
        bne = betti_number_error(pred, label, connectivity=2).per_dim
        np.testing.assert_array_equal(bne, _gudhi_error(pred, label, 2), err_msg=name)
        bme = betti_matching_error(pred, label, connectivity=2).per_dim
        assert (bme >= bne).all() and ((bme - bne) % 2 == 0).all(), name
    assert (betti_number_error(label, label, connectivity=2).per_dim == 0).all()


@pytest.mark.parametrize("i, window", [(71, (slice(0, 256), slice(0, 256))), (95, (slice(256, None), slice(128, 384)))])
def test_betti_errors_equal_gudhi_t_construction_on_real_labels(i, window):
    """TopoMortar labels (256^2 windows) with synthetic degradations: errors equal gudhi's T-construction."""
    _check_real_label(_topomortar_label(i)[window], seed=i)


@pytest.mark.slow
@pytest.mark.parametrize("i", [78, 103, 120])
def test_betti_errors_equal_gudhi_t_construction_on_full_real_labels(i):
    _check_real_label(_topomortar_label(i), seed=i)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_betti_number_error_equals_gudhi_for_both_connectivities(data):
    from devtools.oracles import gudhi_betti_numbers

    pytest.importorskip("gudhi")
    nd = data.draw(st.sampled_from([2, 3]))
    shape = tuple(data.draw(st.lists(st.integers(2, 9 if nd == 2 else 5), min_size=nd, max_size=nd)))
    pred = data.draw(hnp.arrays(bool, shape))
    gt = data.draw(hnp.arrays(bool, shape))
    for connectivity in (1, nd):
        bne = betti_number_error(pred, gt, connectivity=connectivity).per_dim
        if pred.any() and gt.any():
            np.testing.assert_array_equal(bne, _gudhi_error(pred, gt, connectivity))
        else:  # gudhi counts the essential class of an empty mask (beta_0 = 1); medloss counts components (0)
            b = [gudhi_betti_numbers(m, connectivity) - np.array([1 - m.any()] + [0] * (nd - 1)) for m in (pred, gt)]
            np.testing.assert_array_equal(bne, np.abs(b[0] - b[1]))
        bme = betti_matching_error(pred, gt, connectivity=connectivity).per_dim
        assert (bme >= bne).all() and ((bme - bne) % 2 == 0).all()


def test_connectivity_in_metric_classes_and_binary_metrics():
    from medloss.metrics import binary_metrics

    gt = torch.zeros(2, 1, 8, 8)
    gt[:, 0, torch.arange(1, 7), torch.arange(1, 7)] = 1  # a one-pixel diagonal vessel
    pred = gt.clone()
    pred[1, 0, 4, 4] = 0  # broken in the second image
    ring = np.zeros((6, 6), bool)
    ring[1, 2] = ring[2, 1] = ring[2, 3] = ring[3, 2] = True  # a loop only under 8-connectivity
    for cls in (BettiNumberErrorMetric, BettiMatchingErrorMetric):
        full = cls(per_dimension=True, reduction="none", connectivity=2)(y_pred=pred, y=gt)
        assert full[:, 0].tolist() == [[0.0, 0.0], [1.0, 0.0]]
        y = torch.tensor(ring)[None, None] * 1.0
        assert cls(per_dimension=True, connectivity=2)(y_pred=torch.zeros_like(y), y=y).tolist() == [[[1.0, 1.0]]]
        assert cls(per_dimension=True)(y_pred=torch.zeros_like(y), y=y).tolist() == [[[4.0, 0.0]]]
    m2 = binary_metrics(pred[1, 0].numpy(), gt[1, 0].numpy(), metrics=("Betti", "BettiMatching"), connectivity=2)
    assert (m2["BNE0"], m2["BNE1"], m2["BME0"], m2["BME1"]) == (1.0, 0.0, 1.0, 0.0)
    empty = np.zeros_like(ring)
    assert binary_metrics(empty, ring, metrics=("Betti",), connectivity=2)["BNE"] == 2.0
    assert binary_metrics(empty, ring, metrics=("Betti",))["BNE"] == 4.0
    with pytest.raises(ValueError, match="connectivity"):
        binary_metrics(empty, ring, metrics=("Dice",), connectivity=3)


@pytest.mark.parametrize("fn", [betti_matching_error, betti_number_error])
def test_bad_connectivity(fn):
    with pytest.raises(ValueError, match=r"connectivity .* one of \[1, 2\] for 2D input; got 3"):
        fn(np.zeros((6, 6)), np.zeros((6, 6)), connectivity=3)
    with pytest.raises(ValueError, match=r"one of \[1, 3\] for 3D input; got 2"):
        fn(np.zeros((1, 1, 4, 4, 4)), np.zeros((1, 1, 4, 4, 4)), connectivity=2)
    for cls in (BettiNumberErrorMetric, BettiMatchingErrorMetric):
        with pytest.raises(ValueError, match="connectivity"):
            cls(connectivity=0)
        with pytest.raises(ValueError, match="for 2D input"):
            cls(connectivity=3)(y_pred=torch.zeros(1, 1, 5, 5), y=torch.zeros(1, 1, 5, 5))


@pytest.mark.parametrize("fn", [betti_matching_error, betti_number_error])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_bfloat16_input_gives_float32_values(fn, connectivity):
    rng = np.random.default_rng(5)
    gt = torch.tensor(rng.random((2, 2, 16, 16)) > 0.5)
    pred = torch.tensor(rng.random((2, 2, 16, 16)), dtype=torch.float32).to(torch.bfloat16)
    low = fn(pred, gt.to(torch.bfloat16), connectivity=connectivity)
    ref = fn(pred.float(), gt.float(), connectivity=connectivity)
    np.testing.assert_array_equal(low.per_dim, ref.per_dim)
    assert low.per_dim.dtype == np.int64 and low.per_dim.sum() > 0
    half = fn(pred.half()[0, 0], gt.half()[0, 0], connectivity=connectivity).per_dim
    np.testing.assert_array_equal(half, fn(pred.half().float()[0, 0], gt[0, 0], connectivity=connectivity).per_dim)
