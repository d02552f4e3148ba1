"""Tests of the cubical persistence / Betti matching kernel against Betti-Matching-3D references and oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from devtools.generators import noisy_prediction_pair
from devtools.oracles import load_betti_matching_3d
from medloss.topology.api import (
    Barcode,
    BettiMatchingResult,
    barcode,
    betti_matching,
    betti_matching_batch,
    betti_numbers,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "betti"
CASES = sorted(p.stem for p in DATA.glob("*.npz"))
SLOW = {"random_32x32x32_seed0"}
HSET = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rows(a):
    return sorted(map(tuple, np.asarray(a).tolist()))


def _matched_set(pb, pd, tb, td):
    return sorted(zip(*(map(tuple, np.asarray(x).tolist()) for x in (pb, pd, tb, td))))


def _assert_same_as_reference(res: BettiMatchingResult, ref, ndim):
    np.testing.assert_array_equal(res.num_matched, ref["num_matched"])
    np.testing.assert_array_equal(res.num_unmatched_pred, ref["num_unmatched_pred"])
    np.testing.assert_array_equal(res.num_unmatched_target, ref["num_unmatched_gt"])
    for d in range(ndim):
        mine = _matched_set(res.pred_matched_birth[d], res.pred_matched_death[d], res.target_matched_birth[d],
                            res.target_matched_death[d])
        theirs = _matched_set(*(ref[f"matched_{k}_d{d}"] for k in ("pred_birth", "pred_death", "gt_birth",
                                                                    "gt_death")))
        assert mine == theirs, f"matched pairs differ in dim {d}"
        for attr, key in (("pred_unmatched_birth", "unmatched_pred_birth"),
                          ("pred_unmatched_death", "unmatched_pred_death"),
                          ("target_unmatched_birth", "unmatched_gt_birth"),
                          ("target_unmatched_death", "unmatched_gt_death")):
            assert _rows(getattr(res, attr)[d]) == _rows(ref[f"{key}_d{d}"]), f"{attr} differs in dim {d}"


@pytest.mark.parametrize(
    "name", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES]
)
def test_reference_cases(name):
    ref = np.load(DATA / f"{name}.npz")
    res = betti_matching(ref["pred"], ref["gt"])
    _assert_same_as_reference(res, ref, ref["pred"].ndim)
    # the same filtration expressed as a sublevel filtration of 1 - x, as handed to Betti-Matching-3D
    res2 = betti_matching(ref["input1"], ref["input2"], filtration="sublevel")
    _assert_same_as_reference(res2, ref, ref["pred"].ndim)


def val(a, c):
    """Values of ``a`` at the voxel coordinates ``c`` (n, ndim)."""
    return a[tuple(np.asarray(c).T)] if len(c) else np.zeros(0)


@pytest.mark.parametrize("name", [c for c in CASES if c not in SLOW])
def test_reference_loss_and_barcode(name):
    ref = np.load(DATA / f"{name}.npz")
    x, y = ref["input1"], ref["input2"]
    res = betti_matching(ref["pred"], ref["gt"])
    for d in range(x.ndim):
        loss = 2 * np.sum((val(x, res.pred_matched_birth[d]) - val(y, res.target_matched_birth[d])) ** 2
                          + (val(x, res.pred_matched_death[d]) - val(y, res.target_matched_death[d])) ** 2)
        loss += np.sum((val(x, res.pred_unmatched_birth[d]) - val(x, res.pred_unmatched_death[d])) ** 2)
        loss += np.sum((val(y, res.target_unmatched_birth[d]) - val(y, res.target_unmatched_death[d])) ** 2)
        np.testing.assert_allclose(loss, ref["loss_per_dim"][d], rtol=1e-9, atol=1e-12)
    bc = barcode(x, filtration="sublevel")
    for d in range(x.ndim):
        assert _rows(bc.birth[d]) == _rows(ref[f"barcode_pred_birth_d{d}"])
        assert _rows(bc.death[d]) == _rows(ref[f"barcode_pred_death_d{d}"])
    if ref["betti_gt"][0] >= 0:
        np.testing.assert_array_equal(betti_numbers(ref["gt"]), ref["betti_gt"])
        np.testing.assert_array_equal(betti_numbers(ref["pred_bin"]), ref["betti_pred_bin"])
        binres = betti_matching(ref["pred_bin"], ref["gt"])
        np.testing.assert_array_equal(binres.num_unmatched_pred + binres.num_unmatched_target, ref["bme_per_dim"])


def test_hand_case_broken_vessel():
    ref = np.load(DATA / "broken_vessel_2d.npz")
    res = betti_matching(ref["pred"], ref["gt"])
    assert res.pred_unmatched_birth[0].tolist() == [[14, 17]]
    assert res.pred_unmatched_death[0].tolist() == [[14, 16]]
    assert res.num_matched.tolist() == [0, 0]


def test_result_types_and_torch_input():
    torch = pytest.importorskip("torch")
    ref = np.load(DATA / "broken_ring_2d.npz")
    res = betti_matching(torch.tensor(ref["pred"], dtype=torch.float32, requires_grad=True), torch.tensor(ref["gt"]))
    assert res.num_matched.dtype == np.int64 and res.num_matched.shape == (2,)
    for lst in (res.pred_matched_birth, res.target_unmatched_death):
        assert len(lst) == 2 and all(a.dtype == np.int64 and a.ndim == 2 and a.shape[1] == 2 for a in lst)
    assert res.num_matched.tolist() == [0, 1]


def test_batch_matches_single():
    rng = np.random.default_rng(3)
    preds = rng.random((4, 12, 12))
    gts = (rng.random((4, 12, 12)) > 0.5).astype(float)
    batch = betti_matching_batch(preds, gts, num_workers=2)
    for p, g, r in zip(preds, gts, batch):
        s = betti_matching(p, g)
        np.testing.assert_array_equal(r.num_matched, s.num_matched)
        for d in range(2):
            assert _rows(r.pred_unmatched_birth[d]) == _rows(s.pred_unmatched_birth[d])
    with pytest.raises(ValueError, match="same length"):
        betti_matching_batch(preds, gts[:2])


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (np.zeros((4, 4)), np.zeros((4, 5)), "same shape"),
        (np.zeros(5), np.zeros(5), "2D or 3D"),
        (np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), "2D or 3D"),
        (np.zeros((0, 4)), np.zeros((0, 4)), "empty"),
        (np.full((3, 3), np.nan), np.zeros((3, 3)), "NaN or Inf"),
        (np.zeros((3, 3)), np.full((3, 3), np.inf), "NaN or Inf"),
        (np.zeros((3, 3), dtype=complex), np.zeros((3, 3)), "real numbers"),
    ],
)
def test_bad_input(pred, target, match):
    with pytest.raises(ValueError, match=match):
        betti_matching(pred, target)


def test_bad_filtration_and_barcode_input():
    with pytest.raises(ValueError, match="filtration"):
        betti_matching(np.zeros((3, 3)), np.zeros((3, 3)), filtration="both")
    with pytest.raises(ValueError, match="NaN"):
        barcode(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="2D or 3D"):
        betti_numbers(np.zeros(4))


# ---------------------------------------------------------------- property tests

def _images(draw, quantized):
    nd = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(2, 7 if nd == 2 else 4), min_size=nd, max_size=nd)))
    if quantized:
        return draw(arrays(np.float64, shape, elements=st.integers(0, 3).map(float)))
    return draw(arrays(np.float64, shape, elements=st.integers(0, 40).map(float)))


@st.composite
def pairs(draw):
    quantized = draw(st.booleans())
    a = _images(draw, quantized)
    binary = draw(st.booleans())
    if binary:
        b = draw(arrays(np.float64, a.shape, elements=st.sampled_from([0.0, 1.0])))
    else:
        b = draw(arrays(np.float64, a.shape, elements=st.integers(0, 3 if quantized else 40).map(float)))
    return a, b


@HSET
@given(pairs(), st.sampled_from(["superlevel", "sublevel"]))
def test_swap_inputs_swaps_roles(pq, filtration):
    p, q = pq
    r1 = betti_matching(p, q, filtration)
    r2 = betti_matching(q, p, filtration)
    np.testing.assert_array_equal(r1.num_matched, r2.num_matched)
    np.testing.assert_array_equal(r1.num_unmatched_pred, r2.num_unmatched_target)
    np.testing.assert_array_equal(r1.num_unmatched_target, r2.num_unmatched_pred)
    for d in range(p.ndim):
        assert _rows(r1.pred_unmatched_birth[d]) == _rows(r2.target_unmatched_birth[d])
        assert _rows(r1.target_unmatched_death[d]) == _rows(r2.pred_unmatched_death[d])
        assert _matched_set(r1.pred_matched_birth[d], r1.pred_matched_death[d], r1.target_matched_birth[d],
                            r1.target_matched_death[d]) == _matched_set(
            r2.target_matched_birth[d], r2.target_matched_death[d], r2.pred_matched_birth[d], r2.pred_matched_death[d])


@HSET
@given(pairs())
def test_increasing_map_changes_no_coordinate(pq):
    p, q = pq
    r1 = betti_matching(p, q)
    r2 = betti_matching(p ** 3 + 2 * p - 5, q ** 3 + 2 * q - 5)
    for field in ("pred_unmatched_birth", "pred_unmatched_death", "target_unmatched_birth", "target_unmatched_death",
                  "pred_matched_birth", "target_matched_death"):
        for a, b in zip(getattr(r1, field), getattr(r2, field)):
            np.testing.assert_array_equal(a, b)


def _gudhi_bars(x):
    gudhi = pytest.importorskip("gudhi")
    cc = gudhi.CubicalComplex(vertices=x)
    cc.compute_persistence(homology_coeff_field=2, min_persistence=-1)
    out = []
    for d in range(x.ndim):
        iv = cc.persistence_intervals_in_dimension(d)
        iv = iv[np.isfinite(iv[:, 1]) & (iv[:, 1] > iv[:, 0])] if len(iv) else np.zeros((0, 2))
        out.append(sorted(map(tuple, iv.tolist())))
    return out


@HSET
@given(st.data())
def test_barcode_values_equal_gudhi(data):
    x = _images(data.draw, data.draw(st.booleans()))
    bc = barcode(x)
    assert isinstance(bc, Barcode)
    ref = _gudhi_bars(x)
    for d in range(x.ndim):
        mine = sorted(zip(bc.birth_values[d].tolist(), bc.death_values[d].tolist()))
        assert mine == ref[d], f"dim {d}"
        # critical voxels carry the values
        np.testing.assert_array_equal(x[tuple(bc.birth[d].T)], bc.birth_values[d])
    # superlevel barcode of x = sublevel barcode of -x
    sup = barcode(x, filtration="superlevel")
    ref_neg = _gudhi_bars(-x)
    for d in range(x.ndim):
        assert sorted(zip((-sup.birth_values[d]).tolist(), (-sup.death_values[d]).tolist())) == ref_neg[d]


@HSET
@given(st.data())
def test_betti_numbers_against_gudhi_and_label(data):
    nd = data.draw(st.sampled_from([2, 3]))
    shape = tuple(data.draw(st.lists(st.integers(1, 8 if nd == 2 else 5), min_size=nd, max_size=nd)))
    b = data.draw(arrays(np.int64, shape, elements=st.integers(0, 1)))
    bn = betti_numbers(b)
    assert bn.dtype == np.int64 and bn.shape == (nd,)
    _, ncomp = ndimage.label(b, structure=ndimage.generate_binary_structure(nd, 1))
    assert bn[0] == ncomp
    gudhi = pytest.importorskip("gudhi")
    cc = gudhi.CubicalComplex(vertices=1.0 - b.astype(float))
    cc.compute_persistence(homology_coeff_field=2, min_persistence=-1)
    ref = cc.persistent_betti_numbers(0.0, 0.0)
    np.testing.assert_array_equal(bn, np.asarray(ref)[:nd])


def test_relative_frame_semantics():
    # a vessel crossing the patch, broken in the prediction
    gt = np.zeros((12, 12))
    gt[5:7, :] = 1
    pred = 0.1 + 0.8 * gt
    pred[5:7, 6] = 0.3
    plain = betti_matching(pred, gt)
    assert plain.num_unmatched_pred.tolist() == [1, 0]  # the two halves: one bar (the other is essential)
    rel = betti_matching(pred, gt, relative=True)
    # relative to the boundary: halves touching the border make no bar; the crossing is a relative 1-cycle,
    # present in the target from the start and in the prediction once the gap closes
    assert rel.num_unmatched_pred.tolist() == [0, 0]
    assert rel.num_unmatched_target.tolist() == [0, 0]
    assert rel.num_matched.tolist() == [0, 1]
    assert rel.pred_matched_birth[1].tolist()[0] in ([5, 6], [6, 6])
    for arr in rel.pred_matched_death[1], rel.target_matched_birth[1]:
        assert (arr >= 0).all() and (arr < 12).all()


# ---------------------------------------------------------------- optional oracle: Betti-Matching-3D

def _reference_from_bm3d(r, ndim):
    """Betti-Matching-3D's result in the layout of the stored reference files."""
    ref = {"num_matched": r.num_matched, "num_unmatched_pred": r.num_unmatched_input1,
           "num_unmatched_gt": r.num_unmatched_input2}
    for d in range(ndim):
        for ours, theirs in (("pred", "input1"), ("gt", "input2")):
            for bd in ("birth", "death"):
                ref[f"matched_{ours}_{bd}_d{d}"] = getattr(r, f"{theirs}_matched_{bd}_coordinates")[d]
                ref[f"unmatched_{ours}_{bd}_d{d}"] = getattr(r, f"{theirs}_unmatched_{bd}_coordinates")[d]
    return ref


@HSET
@given(pairs())
def test_random_cross_check_betti_matching_3d(pq):
    bm3d = load_betti_matching_3d()
    if bm3d is None:
        pytest.skip("Betti-Matching-3D (topolosses) extension not importable")
    p, q = pq
    r = bm3d.compute_matching(np.ascontiguousarray(p), np.ascontiguousarray(q))
    ref = _reference_from_bm3d(r, p.ndim)
    _assert_same_as_reference(betti_matching(p, q, filtration="sublevel"), ref, p.ndim)


@pytest.mark.slow
@pytest.mark.parametrize("shape, seed", [((24, 24, 24), 5), ((20, 28, 16), 6), ((96, 80), 7), ((22, 18, 20), 8)])
def test_generator_cross_check_betti_matching_3d(shape, seed):
    """Larger smooth inputs (binary target, big tie blocks in the comparison image) against Betti-Matching-3D."""
    bm3d = load_betti_matching_3d()
    if bm3d is None:
        pytest.skip("Betti-Matching-3D (topolosses) extension not importable")
    pred, gt = noisy_prediction_pair(shape, seed)
    pred = np.round(pred * 8) / 8 if seed == 6 else pred  # ties in the prediction too
    pred = (pred > 0.5).astype(float) if seed == 8 else pred  # binarized prediction, as the metrics use it
    r = bm3d.compute_matching(1.0 - pred, 1.0 - gt)
    ref = _reference_from_bm3d(r, pred.ndim)
    _assert_same_as_reference(betti_matching(pred, gt), ref, pred.ndim)


def test_batch_accepts_torch_batch_tensor():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    preds = torch.tensor(rng.random((3, 6, 6, 5)))
    gts = torch.tensor((rng.random((3, 6, 6, 5)) > 0.5).astype(np.float32))
    out = betti_matching_batch(preds, gts)
    assert len(out) == 3
    ref = betti_matching(preds[1].numpy(), gts[1].numpy())
    np.testing.assert_array_equal(out[1].num_unmatched_pred, ref.num_unmatched_pred)
    assert out[1].num_matched.shape == (3,)
