"""``connectivity`` (scikit-image's meaning) of the topology API: 1 = V-construction, ndim = T-construction.

Oracles: gudhi's ``CubicalComplex(vertices=...)`` / ``CubicalComplex(top_dimensional_cells=...)`` computed in the
test, TopoMortar's shipped ``betti_numbers.csv`` and Betti-Matching-3D run on an independently refined grid.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from devtools.generators import noisy_prediction_pair
from devtools.oracles import gudhi_barcode, gudhi_betti_numbers, load_betti_matching_3d
from medloss.losses import BettiMatchingLoss
from medloss.metrics import betti_matching_error
from medloss.topology import (
    barcode,
    betti_matching,
    betti_matching_batch,
    betti_numbers,
    check_connectivity,
    t_construction_grid,
)

gudhi = pytest.importorskip("gudhi")

TOPOMORTAR = Path(__file__).resolve().parents[1] / "data" / "topomortar" / "dataset"


def _masks(draw, max_side=(9, 5)):
    nd = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, max_side[nd - 2]), min_size=nd, max_size=nd)))
    return draw(arrays(np.bool_, shape))


def _images(draw):
    nd = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, 8 if nd == 2 else 5), min_size=nd, max_size=nd)))
    levels = draw(st.sampled_from([3, 1000]))  # few levels: many ties
    return draw(arrays(np.int64, shape, elements=st.integers(0, levels))).astype(np.float64)


# ---------------------------------------------------------------- Betti numbers


@given(st.data())
def test_betti_numbers_equal_gudhi_for_both_connectivities(data):
    mask = _masks(data.draw)
    nd = mask.ndim
    for connectivity in (1, nd):
        mine = betti_numbers(mask, connectivity=connectivity)
        ref = gudhi_betti_numbers(mask, connectivity)
        assert mine.dtype == np.int64 and mine.shape == (nd,)
        if mask.any():
            np.testing.assert_array_equal(mine, ref)
        else:  # medloss counts components (0), gudhi the essential class of the filled complex (1)
            assert mine.tolist() == [0] * nd and ref.tolist() == [1] + [0] * (nd - 1)
        # the documented recipe reproduces gudhi's (TopoMortar's) numbers for every mask, empty ones included
        np.testing.assert_array_equal(np.concatenate([[max(mine[0], 1)], mine[1:]]), ref)
    full = ndimage.label(mask, structure=np.ones((3,) * nd))[1]
    assert betti_numbers(mask, connectivity=nd)[0] == full


def test_betti_numbers_hand_cases():
    diagonal = np.eye(5)
    assert betti_numbers(diagonal).tolist() == [5, 0]
    assert betti_numbers(diagonal, connectivity=2).tolist() == [1, 0]
    # a diamond of 4 pixels touching at corners: one 8-connected ring, its centre a 4-connected hole
    diamond = np.zeros((5, 5))
    diamond[1, 2] = diamond[2, 1] = diamond[2, 3] = diamond[3, 2] = 1
    assert betti_numbers(diamond).tolist() == [4, 0]
    assert betti_numbers(diamond, connectivity=2).tolist() == [1, 1]
    # 3D: a corner-touching pair of voxels is one 26-connected component; a hollow cube is a cavity either way
    pair = np.zeros((4, 4, 4))
    pair[1, 1, 1] = pair[2, 2, 2] = 1
    assert betti_numbers(pair).tolist() == [2, 0, 0]
    assert betti_numbers(pair, connectivity=3).tolist() == [1, 0, 0]
    shell = np.zeros((5, 5, 5))
    shell[1:4, 1:4, 1:4] = 1
    shell[2, 2, 2] = 0
    for c in (1, 3):
        assert betti_numbers(shell, connectivity=c).tolist() == [1, 0, 1]
    # a ring of voxels touching along edges only: 18/26-connected loop, 6-connected pieces
    ring = np.zeros((5, 5, 3))
    ring[1, 2, 1] = ring[2, 1, 1] = ring[2, 3, 1] = ring[3, 2, 1] = 1
    assert betti_numbers(ring).tolist() == [4, 0, 0]
    assert betti_numbers(ring, connectivity=3).tolist() == [1, 1, 0]


def _topomortar_rows():
    with open(TOPOMORTAR / "betti_numbers.csv") as fh:
        rows = {int(r["ID"]): r for r in csv.DictReader(fh)}
    with open(TOPOMORTAR / "dataset_types.txt") as fh:
        ids = sorted(int(r["ID"]) for r in csv.DictReader(fh) if r["group"] == "indistr" and int(r["ID"]) >= 71)
    return ids, rows


def _label(i: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(TOPOMORTAR / "test" / "accurate" / f"{i:03d}.png")) == 255


def test_betti_numbers_reproduce_topomortar_csv():
    """Every in-distribution test label (071-120) against the dataset's ``betti_numbers.csv``."""
    ids, rows = _topomortar_rows()
    assert ids == list(range(71, 121))
    differ_with_faces = 0
    for i in ids:
        label = _label(i)
        assert label.shape == (512, 512)
        expected = [int(rows[i]["Betti0"]), int(rows[i]["Betti1"])]
        assert int(rows[i]["Betti2"]) == 0
        assert betti_numbers(label, connectivity=2).tolist() == expected, f"label {i:03d}"
        differ_with_faces += betti_numbers(label, connectivity=1).tolist() != expected
    assert differ_with_faces > 0  # the connectivity matters on these labels


# ---------------------------------------------------------------- barcodes and the refined grid


def test_t_construction_grid_equals_a_min_filter():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (1, 6), (5, 7), (3, 4, 5), (1, 3, 2)):
        x = rng.integers(0, 4, size=shape).astype(float)
        values, source = t_construction_grid(x)
        np.testing.assert_array_equal(values, _refine_independently(x))
        np.testing.assert_array_equal(x.ravel()[source], values)
        # the source voxel is one of the voxels the cell bounds
        grid = np.indices(values.shape)
        src = np.stack(np.unravel_index(source, shape))
        assert (np.abs(2 * src - grid) <= 1).all()


@given(st.data())
def test_barcode_t_construction_equals_gudhi(data):
    x = _images(data.draw)
    nd = x.ndim
    for filtration, sign in (("sublevel", 1.0), ("superlevel", -1.0)):
        bc = barcode(x, filtration=filtration, connectivity=nd)
        ref = gudhi_barcode(sign * x, connectivity=nd)
        for d in range(nd):
            mine = sorted(zip((sign * bc.birth_values[d]).tolist(), (sign * bc.death_values[d]).tolist()))
            assert mine == ref[d], f"{filtration}, dim {d}"
            # critical voxels carry the values
            np.testing.assert_array_equal(x[tuple(bc.birth[d].T)], bc.birth_values[d])
            np.testing.assert_array_equal(x[tuple(bc.death[d].T)], bc.death_values[d])


# ---------------------------------------------------------------- Betti matching


def _bars(res, who, image, d):
    """(value at birth, value at death) of every bar of ``who`` ("pred"/"target") in dimension ``d``."""
    out = []
    for kind in ("matched", "unmatched"):
        b = getattr(res, f"{who}_{kind}_birth")[d]
        dd = getattr(res, f"{who}_{kind}_death")[d]
        out += list(zip(image[tuple(b.T)].tolist(), image[tuple(dd.T)].tolist()))
    return sorted(out)


@given(st.data())
def test_matching_t_construction_covers_gudhi_barcodes(data):
    p = _images(data.draw) / 1000.0
    g = data.draw(arrays(np.bool_, p.shape)).astype(np.float64)
    nd = p.ndim
    res = betti_matching(p, g, connectivity=nd)
    for who, image in (("pred", p), ("target", g)):
        ref = gudhi_barcode(-image, connectivity=nd)  # superlevel filtration of image = sublevel of -image
        for d in range(nd):
            assert _bars(res, who, image, d) == sorted((-b, -e) for b, e in ref[d]), f"{who}, dim {d}"
    np.testing.assert_array_equal(res.num_matched, [len(a) for a in res.pred_matched_birth])


def _refine_independently(x):
    """The grid of all T-construction cells built another way: voxels at even positions, every cell the min over
    the voxels it bounds."""
    big = np.full(tuple(2 * n - 1 for n in x.shape), np.inf)
    big[tuple(slice(None, None, 2) for _ in x.shape)] = x
    return ndimage.minimum_filter(big, size=3, mode="constant", cval=np.inf)


def _vals(img, coords):
    return img[tuple(np.asarray(coords).reshape(-1, img.ndim).T)].tolist()


def _bm3d_values(r, refined_p, refined_g, d):
    """Betti-Matching-3D's matched/unmatched bars as values of the (sublevel) refined images."""
    matched = sorted(zip(_vals(refined_p, r.input1_matched_birth_coordinates[d]),
                         _vals(refined_p, r.input1_matched_death_coordinates[d]),
                         _vals(refined_g, r.input2_matched_birth_coordinates[d]),
                         _vals(refined_g, r.input2_matched_death_coordinates[d])))
    un_p = sorted(zip(_vals(refined_p, r.input1_unmatched_birth_coordinates[d]),
                      _vals(refined_p, r.input1_unmatched_death_coordinates[d])))
    un_g = sorted(zip(_vals(refined_g, r.input2_unmatched_birth_coordinates[d]),
                      _vals(refined_g, r.input2_unmatched_death_coordinates[d])))
    return matched, un_p, un_g


@pytest.mark.parametrize("shape, seed", [((17, 23), 0), ((30, 30), 1), ((9, 8, 7), 2), ((12, 10, 11), 3)])
def test_matching_t_construction_against_betti_matching_3d(shape, seed):
    """Same matching as Betti-Matching-3D on the grid of all T-construction cells (built here independently)."""
    bm3d = load_betti_matching_3d()
    if bm3d is None:
        pytest.skip("Betti-Matching-3D (topolosses) extension not importable")
    pred, gt = noisy_prediction_pair(shape, seed)
    if seed % 2:
        pred = np.round(pred * 6) / 6  # ties
    nd = len(shape)
    res = betti_matching(pred, gt, connectivity=nd)
    rp, rg = _refine_independently(1.0 - pred), _refine_independently(1.0 - gt)
    r = bm3d.compute_matching(np.ascontiguousarray(rp), np.ascontiguousarray(rg))
    np.testing.assert_array_equal(res.num_matched, r.num_matched)
    np.testing.assert_array_equal(res.num_unmatched_pred, r.num_unmatched_input1)
    np.testing.assert_array_equal(res.num_unmatched_target, r.num_unmatched_input2)
    x, y = 1.0 - pred, 1.0 - gt
    for d in range(nd):
        matched, un_p, un_g = _bm3d_values(r, rp, rg, d)
        mine = sorted(zip(_vals(x, res.pred_matched_birth[d]), _vals(x, res.pred_matched_death[d]),
                          _vals(y, res.target_matched_birth[d]), _vals(y, res.target_matched_death[d])))
        assert mine == matched, f"dim {d}"
        assert sorted(zip(_vals(x, res.pred_unmatched_birth[d]), _vals(x, res.pred_unmatched_death[d]))) == un_p
        assert sorted(zip(_vals(y, res.target_unmatched_birth[d]), _vals(y, res.target_unmatched_death[d]))) == un_g


def test_matching_hand_case_diagonal_vessel():
    gt = np.zeros((8, 8))
    gt[np.arange(1, 7), np.arange(1, 7)] = 1  # a one-pixel diagonal vessel
    pred = gt.copy()
    pred[4, 4] = 0  # broken once
    t = betti_matching(pred, gt, connectivity=2)
    assert t.num_unmatched_pred.tolist() == [1, 0] and t.num_unmatched_target.tolist() == [0, 0]
    assert t.num_matched.tolist() == [0, 0]
    assert betti_matching_error(pred, gt, connectivity=2).per_dim.tolist() == [1, 0]
    # face connectivity: six target components (five bars + the essential one), the prediction has five
    v = betti_matching(pred, gt)
    assert v.num_matched.tolist() == [4, 0] and v.num_unmatched_target.tolist() == [1, 0]
    # a diagonal pixel closing a loop only under 8-connectivity: one hole bar matched/unmatched
    ring = np.zeros((6, 6))
    ring[1, 2] = ring[2, 1] = ring[2, 3] = ring[3, 2] = 1
    assert betti_matching_error(np.zeros_like(ring), ring, connectivity=2).per_dim.tolist() == [1, 1]
    assert betti_matching_error(np.zeros_like(ring), ring).per_dim.tolist() == [4, 0]


@given(st.data())
def test_relative_matching_t_construction(data):
    """Relative homology with the T-construction: frame bars dropped, error bounds hold."""
    from medloss.metrics import betti_number_error

    pred = _masks(data.draw, max_side=(8, 4))
    gt = data.draw(arrays(np.bool_, pred.shape))
    nd = pred.ndim
    for relative in (False, True):
        bme = betti_matching_error(pred, gt, relative=relative, connectivity=nd).per_dim
        bne = betti_number_error(pred, gt, relative=relative, connectivity=nd).per_dim
        assert (bme >= bne).all() and ((bme - bne) % 2 == 0).all()
    res = betti_matching(pred, gt, relative=True, connectivity=nd)
    for arrs in (res.pred_matched_birth, res.pred_unmatched_death, res.target_unmatched_birth):
        for a in arrs:
            assert ((a >= 0) & (a < np.array(pred.shape))).all()


def test_batch_and_loss_pass_connectivity():
    rng = np.random.default_rng(3)
    preds = rng.random((3, 10, 9))
    gts = (rng.random((3, 10, 9)) > 0.6).astype(float)
    batch = betti_matching_batch(preds, gts, connectivity=2, num_workers=2)
    for p, g, r in zip(preds, gts, batch):
        np.testing.assert_array_equal(r.num_unmatched_pred, betti_matching(p, g, connectivity=2).num_unmatched_pred)
    # on binary input the loss counts the unmatched bars: the Betti matching error without the essential class
    pred_mask = preds > 0.5
    loss = BettiMatchingLoss(reduction="none", connectivity=2)
    value = loss(torch.tensor(pred_mask[:, None] * 1.0), torch.tensor(gts[:, None]))
    expected = betti_matching_error(pred_mask[:, None], gts[:, None], connectivity=2).total[:, 0]
    expected = expected - np.array([p.any() != g.any() for p, g in zip(pred_mask, gts)])
    np.testing.assert_allclose(value.reshape(-1).numpy(), expected)
    face = BettiMatchingLoss(reduction="none")(torch.tensor(pred_mask[:, None] * 1.0), torch.tensor(gts[:, None]))
    assert not torch.equal(face, value)  # the connectivity matters here


def test_loss_gradient_reaches_critical_voxels_t_construction():
    gt = torch.zeros(1, 1, 8, 8)
    gt[0, 0, torch.arange(1, 7), torch.arange(1, 7)] = 1
    prob = (gt * 0.8 + 0.1).clone()
    prob[0, 0, 4, 4] = 0.3  # the weak point on the diagonal
    prob.requires_grad_(True)
    BettiMatchingLoss(connectivity=2)(prob, gt).backward()
    # the break is the death voxel of the prediction's extra bar: raising it lowers the loss
    assert prob.grad[0, 0, 4, 4] < 0
    face = prob.detach().clone().requires_grad_(True)
    BettiMatchingLoss()(face, gt).backward()
    assert not torch.equal(face.grad, prob.grad)


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize("bad", [0, 4, -1, 1.0, True, "2", None])
def test_bad_connectivity_everywhere(bad):
    x = np.zeros((5, 5))
    calls = [
        lambda: betti_numbers(x, connectivity=bad),
        lambda: barcode(x, connectivity=bad),
        lambda: betti_matching(x, x, connectivity=bad),
        lambda: check_connectivity(bad),
        lambda: BettiMatchingLoss(connectivity=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="connectivity"):
            call()


def test_connectivity_between_one_and_ndim_is_refused():
    with pytest.raises(ValueError, match=r"one of \[1, 3\] for 3D input; got 2"):
        betti_numbers(np.zeros((3, 3, 3)), connectivity=2)
    with pytest.raises(ValueError, match=r"one of \[1, 2\] for 2D input; got 3"):
        betti_matching(np.zeros((3, 3)), np.zeros((3, 3)), connectivity=3)
    loss = BettiMatchingLoss(connectivity=3)  # fine for 3D input, refused for 2D input in forward
    with pytest.raises(ValueError, match="for 2D input"):
        loss(torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    assert check_connectivity(np.int64(3), 3) == 3
