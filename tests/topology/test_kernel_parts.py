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
    from medloss.topology._matching import _row_positions
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
        pos = _row_positions(edges[0], 3 * pred.size)
        ref = reduce_columns(faces[0], cleared, pos, edges[0].shape[0], shape[1], shape[2], NEVER)
        for switch_at in (0, 3):
            out = reduce_columns(faces[0], cleared, pos, edges[0].shape[0], shape[1], shape[2], switch_at)
            np.testing.assert_array_equal(out, ref)
        assert (ref >= 0).sum() > 0
