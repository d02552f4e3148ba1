"""Tests of the kernel's building blocks: ranking, cell order, and the binary-target shortcuts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from devtools.generators import noisy_prediction_pair
from medloss.topology._cells import num_cells, sorted_cells
from medloss.topology._matching import match_grids
from medloss.topology._ranks import dense_rank, rank_images


def _unique_rank(x):
    uniq, inv = np.unique(x, return_inverse=True)
    return inv.reshape(-1), uniq


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e6, 1e6, allow_nan=False, width=64)))
def test_dense_rank_equals_numpy_unique(x):
    r, u = dense_rank(x)
    inv, uniq = _unique_rank(x)
    np.testing.assert_array_equal(r, inv)
    np.testing.assert_array_equal(u, uniq)
    assert r.dtype == np.int32


@pytest.mark.parametrize(
    "x",
    [
        # values sharing their high bits: the packed sort key cannot tell them apart, the fix-up pass must
        np.random.default_rng(0).permutation(1.0 + np.arange(5000) * 2.0**-50),
        np.random.default_rng(1).permutation(np.concatenate([1.0 + np.arange(3000) * 2.0**-51, -np.arange(3000.0)])),
        # -0.0 and 0.0 are the same value
        np.array([0.0, -0.0, 1.0, -0.0, -1.0] * 10 + list(range(20)), float),
        # few distinct values (lookup path) and many ties among many values
        np.random.default_rng(2).integers(0, 3, 1000).astype(float),
        np.random.default_rng(3).integers(0, 200, 20000).astype(float) / 7.0,
    ],
)
def test_dense_rank_hard_cases(x):
    r, u = dense_rank(x)
    inv, uniq = _unique_rank(x + 0.0)
    np.testing.assert_array_equal(r, inv)
    np.testing.assert_array_equal(u, uniq)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_comparison_ranks_are_ranks_of_the_minimum(data):
    n = data.draw(st.integers(1, 200))
    f = data.draw(arrays(np.float64, n, elements=st.integers(-30, 30).map(float)))
    h = data.draw(arrays(np.float64, n, elements=st.sampled_from([-1.0, 0.0, 0.5, 7.0])))
    rf, nf, rh, nh, rc, nc = rank_images(f, h)
    np.testing.assert_array_equal(rc, _unique_rank(np.minimum(f, h))[0])
    assert nc == np.unique(np.minimum(f, h)).size
    assert (nf, nh) == (np.unique(f).size, np.unique(h).size)


@pytest.mark.parametrize("shape3", [(1, 5, 7), (4, 3, 6), (2, 2, 2), (1, 1, 5)])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_sorted_cells_is_rank_then_id_order(shape3, dim):
    n0, n1, n2 = shape3
    rng = np.random.default_rng(dim)
    rank, uniq = dense_rank(rng.integers(0, 4, n0 * n1 * n2).astype(float))
    ids, rk = sorted_cells(rank, uniq.size, dim, n0, n1, n2)
    # brute force: every valid cell with its max voxel rank
    grid = rank.reshape(shape3)
    cells = []
    for v in range(n0 * n1 * n2):
        x, y, z = np.unravel_index(v, shape3)
        for t in range(3 if dim in (1, 2) else 1):
            if dim == 1:
                ext = [int(a == t) for a in range(3)]
            elif dim == 2:
                ext = [int(a != t) for a in range(3)]
            else:
                ext = [1, 1, 1]
            if x + ext[0] < n0 and y + ext[1] < n1 and z + ext[2] < n2:
                r = grid[x:x + ext[0] + 1, y:y + ext[1] + 1, z:z + ext[2] + 1].max()
                cells.append((r, 3 * v + t if dim in (1, 2) else v))
    cells.sort()
    assert len(ids) == num_cells(dim, n0, n1, n2) == len(cells)
    np.testing.assert_array_equal(ids, [c for _, c in cells])
    np.testing.assert_array_equal(rk, [r for r, _ in cells])


def _pair(shape, seed, quantize=None, saturate=False):
    pred, gt = noisy_prediction_pair(shape, seed)
    if quantize:
        pred = np.round(pred * quantize) / quantize
    if saturate:
        pred = np.clip(1.4 * pred - 0.2, 0.0, 1.0)  # exact 0 and 1 break the alignment the shortcuts need
    return pred, gt


@pytest.mark.parametrize(
    "shape, seed, kw",
    [((14, 12, 10), 0, {}), ((14, 12, 10), 1, {"quantize": 6}), ((12, 12, 12), 4, {"saturate": True}),
     ((40, 36), 3, {}), ((40, 36), 4, {"quantize": 4})],
)
@pytest.mark.parametrize("swap", [False, True])
def test_binary_shortcuts_change_nothing(shape, seed, kw, swap):
    """The binary-target shortcuts (h twin from c's roots, image reduction from c's) give the general result."""
    pred, gt = _pair(shape, seed, **kw)
    f, h = (-gt, -pred) if swap else (-pred, -gt)
    ranks = rank_images(f.ravel(), h.ravel())
    shape3 = (1, *shape) if len(shape) == 2 else shape
    fast = match_grids(*ranks, shape3, len(shape))
    slow = match_grids(*ranks, shape3, len(shape), shortcuts=False)
    for a, b in zip(fast, slow):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("seed", [0, 1])
def test_bit_tree_columns_reduce_like_the_heap(seed):
    """Columns continued in the bit tree (``switch_at``) give the heap's pivots, also for real-valued rows."""
    from medloss.topology._cells import border_flags, top_ranks
    from medloss.topology._reduction import row_positions
    from medloss.topology._reduction import NEVER, reduce_columns
    from medloss.topology._union_find import top_pairs

    shape = (12, 14, 10)
    pred, gt = _pair(shape, seed)
    for x in (-pred, -gt):
        r, u = dense_rank(x.ravel())
        edges = sorted_cells(r, u.size, 1, *shape)
        faces = sorted_cells(r, u.size, 2, *shape)
        node = top_ranks(r, 3, *shape)
        cleared = top_pairs(node, node, faces[0], faces[1], 3, border_flags(*shape), shape[1], shape[2], True)[3]
        pos = row_positions(edges[0], 3 * pred.size)
        ref = reduce_columns(faces[0], cleared, pos, edges[0].shape[0], shape[1], shape[2], NEVER)
        for switch_at in (0, 3):
            out = reduce_columns(faces[0], cleared, pos, edges[0].shape[0], shape[1], shape[2], switch_at)
            np.testing.assert_array_equal(out, ref)
        assert (ref >= 0).sum() > 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_radix_order_is_a_stable_argsort(data):
    from medloss.topology._ranks import _radix_order

    n = data.draw(st.integers(1, 400))
    span = data.draw(st.sampled_from([0, 1, 5, 3000, 2**40, 2**62 - 1]))
    lo = data.draw(st.integers(-(2**62), 2**62 - 1 - span))
    x = data.draw(arrays(np.int64, n, elements=st.integers(lo, lo + span)))
    np.testing.assert_array_equal(_radix_order(x), np.argsort(x, kind="stable"))


def _kernel_inputs(pred, gt):
    """Everything the middle-dimension reductions of a 3D pair need, with the dimension-0 merge flags."""
    from medloss.topology._cells import border_flags, top_ranks
    from medloss.topology._matching import lowest_block_size
    from medloss.topology._union_find import dim0_match, dim0_pairs, top_pairs

    shape = pred.shape
    rf, nf, rh, nh, rc, nc = rank_images(-pred.ravel(), -gt.ravel())
    rn = {"f": (rf, nf), "h": (rh, nh), "c": (rc, nc)}
    edges = {k: sorted_cells(r, n, 1, *shape) for k, (r, n) in rn.items()}
    faces = {k: sorted_cells(r, n, 2, *shape) for k, (r, n) in rn.items()}
    merged = {k: np.zeros(edges[k][0].shape[0], np.bool_) for k in rn}
    by = {k: dim0_pairs(rn[k][0], *edges[k], shape[1], shape[2], merged[k])[2] for k in "fh"}
    dim0_match(rc, rf, rh, *edges["c"], by["f"], by["h"], shape[1], shape[2], True, merged["c"])
    border = border_flags(*shape)
    node = {k: top_ranks(r, 3, *shape) for k, (r, _) in rn.items()}
    top = {k: top_pairs(node[k], node["c"], *faces[k], 3, border, shape[1], shape[2], True) for k in "fh"}
    top["c"] = top_pairs(node["c"], node["c"], *faces["c"], 3, border, shape[1], shape[2], True,
                         lowest_block_size(faces["c"][1]))
    return rn, edges, faces, merged, top, border


@pytest.mark.parametrize(
    "shape, seed, kw",
    [((14, 12, 10), 0, {}), ((14, 12, 10), 1, {"quantize": 6}), ((12, 12, 12), 4, {"saturate": True}),
     ((10, 13, 11), 5, {"quantize": 2})],
)
@pytest.mark.parametrize("swap", [False, True])
def test_compressed_rows_give_the_same_pivots(shape, seed, kw, swap):
    """Rows of merging edges (dimension-0 deaths) never hold a pivot: dropping them changes no pivot of the plain
    reductions of f, h, c nor of the image reductions of f and h into c (rows in k's order, columns in c's)."""
    from medloss.topology._matching import _image_pivots, _switch_at
    from medloss.topology._reduction import reduce_columns, row_positions

    pred, gt = _pair(shape, seed, **kw)
    if swap:
        pred, gt = gt, pred
    rn, edges, faces, merged, top, border = _kernel_inputs(pred, gt)
    n1, n2 = shape[1], shape[2]
    size, ne = 3 * pred.size, edges["f"][0].shape[0]
    # n - 1 merges: the grid is connected
    assert all(merged[k].sum() == pred.size - 1 for k in merged)
    for k in "fhc":
        plain = row_positions(edges[k][0], size)
        comp = row_positions(edges[k][0], size, merged[k])
        assert (comp >= 0).sum() == ne - pred.size + 1
        sw = _switch_at(rn[k][1])
        ref = reduce_columns(faces[k][0], top[k][3], plain, ne, n1, n2, sw)
        assert (ref >= 0).sum() > 0
        np.testing.assert_array_equal(reduce_columns(faces[k][0], top[k][3], comp, ne, n1, n2, sw), ref)
        if k != "c":
            args = (faces["c"][0], faces["c"][1], top["c"][3], top["c"][4], faces[k][0])
            rest = (ne, border, n1, n2, _switch_at(max(rn[k][1], rn["c"][1])))
            np.testing.assert_array_equal(_image_pivots(*args, comp, *rest), _image_pivots(*args, plain, *rest))


def test_compressing_a_pivot_row_changes_the_pivots():
    """The precondition matters: dropping the row of an edge that is some column's pivot (a positive edge)
    changes the result, so the equality above is not vacuous."""
    from medloss.topology._matching import _switch_at
    from medloss.topology._reduction import reduce_columns, row_positions

    shape = (12, 10, 11)
    pred, gt = _pair(shape, 2)
    rn, edges, faces, merged, top, _ = _kernel_inputs(pred, gt)
    size, ne = 3 * pred.size, edges["f"][0].shape[0]
    plain = row_positions(edges["f"][0], size)
    ref = reduce_columns(faces["f"][0], top["f"][3], plain, ne, shape[1], shape[2], _switch_at(rn["f"][1]))
    wrong = merged["f"].copy()
    wrong[ref[ref >= 0][:5]] = True  # five pivot rows
    comp = row_positions(edges["f"][0], size, wrong)
    out = reduce_columns(faces["f"][0], top["f"][3], comp, ne, shape[1], shape[2], _switch_at(rn["f"][1]))
    assert not np.array_equal(out, ref)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1024, 800), (96, 96, 96)])
def test_prefetching_union_finds_against_betti_matching_3d(shape):
    """Above the size where the union-finds prefetch their rows (tables of 6 MiB and more), the matching still
    equals Betti-Matching-3D's: counts and the matched (birth, death) coordinates of the prediction."""
    from devtools.oracles import load_betti_matching_3d
    from medloss.topology._prefetch import PREFETCH_MIN_BYTES
    from medloss.topology.api import betti_matching

    bm3d = load_betti_matching_3d()
    if bm3d is None:
        pytest.skip("Betti-Matching-3D (topolosses) extension not importable")
    assert np.prod(shape) * 8 >= PREFETCH_MIN_BYTES  # the plain (parent, rank) tables prefetch
    pred, gt = noisy_prediction_pair(shape, 9)
    ref = bm3d.compute_matching(1.0 - pred, 1.0 - gt)
    res = betti_matching(pred, gt)
    np.testing.assert_array_equal(res.num_matched, ref.num_matched)
    np.testing.assert_array_equal(res.num_unmatched_pred, ref.num_unmatched_input1)
    np.testing.assert_array_equal(res.num_unmatched_target, ref.num_unmatched_input2)
    for d in range(len(shape)):
        mine = sorted(map(tuple, np.hstack([res.pred_matched_birth[d], res.pred_matched_death[d]]).tolist()))
        theirs = sorted(map(tuple, np.hstack([ref.input1_matched_birth_coordinates[d],
                                              ref.input1_matched_death_coordinates[d]]).tolist()))
        assert mine == theirs, f"dim {d}"


def _dim0_and_dual_2d(pred, gt):
    """2D: sorted edges, dimension-0 merge flags and top-cell ranks of f, h and c (as the driver computes them)."""
    from medloss.topology._cells import top_ranks
    from medloss.topology._union_find import dim0_match, dim0_pairs

    n1, n2 = pred.shape
    rf, nf, rh, nh, rc, nc = rank_images(-pred.ravel(), -gt.ravel())
    rn = {"f": (rf, nf), "h": (rh, nh), "c": (rc, nc)}
    edges = {k: sorted_cells(r, n, 1, 1, n1, n2) for k, (r, n) in rn.items()}
    merged = {k: np.zeros(edges[k][0].shape[0], np.bool_) for k in rn}
    by = {k: dim0_pairs(rn[k][0], *edges[k], n1, n2, merged[k])[2] for k in "fh"}
    dim0_match(rc, rf, rh, *edges["c"], by["f"], by["h"], n1, n2, True, merged["c"])
    node = {k: top_ranks(r, 2, 1, n1, n2) for k, (r, _) in rn.items()}
    return edges, merged, node


@pytest.mark.parametrize(
    "shape, seed, kw", [((40, 36), 3, {}), ((40, 36), 4, {"quantize": 4}), ((33, 30), 5, {"saturate": True}),
                        ((1, 17), 6, {}), ((25, 1), 7, {"quantize": 2})],
)
@pytest.mark.parametrize("swap", [False, True])
def test_dual_pass_skipping_merged_edges_is_exact_in_2d(shape, seed, kw, swap):
    """In 2D the faces the dual union-find merges are exactly the edges Kruskal does not merge (planar duality of
    spanning trees), so skipping the merged ones changes no pair, no twin lookup and no flag."""
    from medloss.topology._cells import border_flags
    from medloss.topology._union_find import top_pairs

    pred, gt = _pair(shape, seed, **kw)
    if swap:
        pred, gt = gt, pred
    edges, merged, node = _dim0_and_dual_2d(pred, gt)
    border = border_flags(1, *shape)
    for k in "fhc":
        twin = node["c"] if k != "c" else node[k]
        full = top_pairs(node[k], twin, *edges[k], 2, border, *shape, True)
        fast = top_pairs(node[k], twin, *edges[k], 2, border, *shape, True, -1, merged[k])
        np.testing.assert_array_equal(full[3], ~merged[k])  # the duality itself
        for a, b in zip(full[:4], fast[:4]):
            np.testing.assert_array_equal(a, b)


def test_dual_pass_skipping_needs_the_same_order():
    """Negative control: merge flags of another filtration's edge order do change the dual pass."""
    from medloss.topology._cells import border_flags
    from medloss.topology._union_find import top_pairs

    shape = (30, 28)
    pred, gt = _pair(shape, 8)
    edges, merged, node = _dim0_and_dual_2d(pred, gt)
    border = border_flags(1, *shape)
    full = top_pairs(node["f"], node["c"], *edges["f"], 2, border, *shape, True)
    wrong = merged["c"]  # positions in c's edge order, not f's
    fast = top_pairs(node["f"], node["c"], *edges["f"], 2, border, *shape, True, -1, wrong)
    assert not all(np.array_equal(a, b) for a, b in zip(full[:4], fast[:4]))
