"""Driver: barcodes of f, h, c and the Betti matching, per homology dimension, on dense-ranked 3D grids.

Work per pair: cells of dimension 1 and 2 sorted once per image (f, h, c); dimension 0 by union-find (f, h, and c
with f/h-aged twins); the top dimension by dual union-find (f and h with c-aged twins, c); in 3D the middle
dimension by five column reductions (plain f, h, c and the image reductions of f and h into c). Where the target
is binary (the usual case), its image reduction is c's own reduction and its dimension-0 twin is c's union-find
(see :func:`image_equals_comparison`, :func:`binary_aligned`); the shortcuts can be switched off for testing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._cells import border_flags, parent_voxel, sorted_cells, top_ranks
from ._reduction import reduce_columns
from ._union_find import binary_aligned, dim0_match, dim0_pairs, merging_faces, top_pairs


@njit(cache=True, nogil=True)
def to_voxels(rank, dim, cells, n1, n2):
    out = np.empty(cells.shape[0], np.int64)
    for i in range(cells.shape[0]):
        out[i] = parent_voxel(rank, dim, cells[i], n1, n2)
    return out


@njit(cache=True, nogil=True)
def _row_positions(edges, size):
    pos = np.full(size, -1, np.int32)
    for i in range(edges.shape[0]):
        pos[edges[i]] = i
    return pos


@njit(cache=True, nogil=True)
def _middle_pairs(edges, edge_rank, cols, col_rank, pivots, size):
    """Positive (birth edge, death 2-cell) pairs of a plain reduction, plus index by birth edge id."""
    n = 0
    for k in range(cols.shape[0]):
        if pivots[k] >= 0 and edge_rank[pivots[k]] < col_rank[k]:
            n += 1
    b = np.empty(n, np.int32)
    d = np.empty(n, np.int32)
    by_birth = np.full(size, -1, np.int32)
    n = 0
    for k in range(cols.shape[0]):
        p = pivots[k]
        if p >= 0 and edge_rank[p] < col_rank[k]:
            b[n] = edges[p]
            d[n] = cols[k]
            by_birth[edges[p]] = n
            n += 1
    return b, d, by_birth


@njit(cache=True, nogil=True)
def _middle_lookups(c_edges, c_edge_rank, c_col_rank, c_piv, img_f, f_edges, f_by, img_h, h_edges, h_by):
    """For every positive c pair of the middle dimension: the f and h pair indices its image pivots point to."""
    n = c_piv.shape[0]
    a = np.empty(n, np.int32)
    b = np.empty(n, np.int32)
    k = 0
    for j in range(n):
        p = c_piv[j]
        if p < 0 or c_edge_rank[p] >= c_col_rank[j]:
            continue
        a[k] = f_by[f_edges[img_f[j]]]
        b[k] = h_by[h_edges[img_h[j]]]
        k += 1
    return a[:k], b[:k]


def _found_in_both(a, b):
    """Matched (f pair, h pair) indices: the c pairs whose f and h lookups both found a pair."""
    keep = (a >= 0) & (b >= 0)
    return a[keep].astype(np.int64), b[keep].astype(np.int64)


@njit(cache=True, nogil=True)
def lowest_block_size(col_rank):
    """Length of the leading tie block of a column order (all columns of the lowest rank)."""
    b = 0
    while b < col_rank.shape[0] and col_rank[b] == col_rank[0]:
        b += 1
    return b


@njit(cache=True, nogil=True)
def _block_in_row_order(k_cols, block, size):
    """The cells of ``block`` (ids in increasing order), in the order they take in ``k_cols``."""
    member = np.zeros(size, np.bool_)
    for i in range(block.shape[0]):
        member[block[i]] = True
    out = np.empty(block.shape[0], np.int32)
    m = 0
    for i in range(k_cols.shape[0]):
        if member[k_cols[i]]:
            out[m] = k_cols[i]
            m += 1
    return out


def _image_pivots(c_cols, c_col_rank, c_cleared, snapshot, k_cols, k_row_pos, n_rows, border, n1, n2, switch_at):
    """Pivots (rows in k's edge order) of c's 2-cell columns in the image reduction H1(K^k) -> H1(K^c).

    Columns must come in c's order, except that c's lowest tie block (the union of the foregrounds in the usual
    superlevel case: one huge block for a binary target) is re-sorted in k's column order. Exact: a pivot depends
    only on the *set* of columns before it, the block holds no column whose pivot is read (a c-bar born and dead
    in the lowest rank has length zero), and later columns see the same set. In k's order the block reduces like
    a plain barcode instead of scattering. Its clearing flags change with the order and are recomputed from the
    dual union-find state before the block (``snapshot``); the other columns keep c's flags.
    Pivots of the block's columns are returned as -1.
    """
    b = lowest_block_size(c_col_rank)
    if b <= 1:
        return reduce_columns(c_cols, c_cleared, k_row_pos, n_rows, n1, n2, switch_at)
    cols = c_cols.copy()
    cols[:b] = _block_in_row_order(k_cols, c_cols[:b], 3 * border.shape[0])
    cleared = c_cleared.copy()
    cleared[:b] = merging_faces(snapshot.copy(), cols[:b], 3, border, n1, n2)
    piv = reduce_columns(cols, cleared, k_row_pos, n_rows, n1, n2, switch_at)
    piv[:b] = -1
    return piv


@njit(cache=True, nogil=True)
def image_equals_comparison(nranks, edges, edge_rank, c_edges):
    """True if the image reduction H1(K^k) -> H1(K^c) may be replaced by c's own reduction (binary images).

    That holds when ``k`` has at most two values and c's edge order starts with k's lowest tie block A in the
    same (id) order. Positive bars of such ``k`` are born in A, and a pivot that lands in A is decided by the
    *set* of rows above it (all of B = the other edges, plus A's larger ids), never by the order inside B; so
    rows may take c's order, which makes the image reduction c's reduction. Typical for a binary target:
    c = min(f, h) is the target's foreground value there, so A leads c's order too.
    """
    if nranks == 1:
        return True  # no positive bars, the pivots are never looked up
    if nranks != 2:
        return False
    m = 0
    while m < edge_rank.shape[0] and edge_rank[m] == 0:
        m += 1
    for i in range(m):
        if edges[i] != c_edges[i]:
            return False
    return True


def _switch_at(nranks):
    """Heap size at which a long column moves to the bit tree (see ``_reduction``): early for two-valued row
    filtrations, whose id-ordered rows and columns keep the tree in cache, late for real-valued ones."""
    return 48 if nranks <= 2 else 150


def _voxel_pairs(rank, dim, births, deaths, top_dim, n1, n2):
    """Critical voxels of (birth dim-cell, death (dim+1)-cell) pairs; top-cell deaths are base voxels."""
    bv = to_voxels(rank, dim, births, n1, n2)
    if dim + 1 == top_dim:
        cells = deaths * 3 if top_dim == 2 else deaths
    else:
        cells = deaths
    dv = to_voxels(rank, dim + 1, cells, n1, n2)
    return bv, dv


def match_grids(rf, nf, rh, nh, rc, nc, shape3, ndim, shortcuts=True):
    """Betti matching of dense-ranked flat grids (f, h, c) embedded in 3D ``shape3``.

    Returns per dimension a tuple (f_birth_vox, f_death_vox, h_birth_vox, h_death_vox, match_f, match_h) where
    ``match_f[i] <-> match_h[i]`` index the f/h pairs. ``shortcuts=False`` disables the binary-image shortcuts
    (:func:`binary_aligned`, :func:`image_equals_comparison`); the result is the same, only slower (tests).
    """
    n0, n1, n2 = shape3
    top_dim = ndim
    out = [None] * ndim
    border = border_flags(n0, n1, n2)

    edges = {}
    for key, r, nr in (("f", rf, nf), ("h", rh, nh), ("c", rc, nc)):
        edges[key] = sorted_cells(r, nr, 1, n0, n1, n2)

    # dimension 0
    fb, fd, f_by = dim0_pairs(rf, edges["f"][0], edges["f"][1], n1, n2)
    hb, hd, h_by = dim0_pairs(rh, edges["h"][0], edges["h"][1], n1, n2)
    mf, mh = dim0_match(rc, rf, rh, edges["c"][0], edges["c"][1], f_by, h_by, n1, n2,
                        not (shortcuts and binary_aligned(rh, nh, rc)))
    out[0] = (*_voxel_pairs(rf, 0, fb, fd, top_dim, n1, n2), *_voxel_pairs(rh, 0, hb, hd, top_dim, n1, n2), mf, mh)

    # top dimension (dual union-find)
    faces = edges if top_dim == 2 else {k: sorted_cells(r, nr, 2, n0, n1, n2)
                                        for k, r, nr in (("f", rf, nf), ("h", rh, nh), ("c", rc, nc))}
    node_c = top_ranks(rc, top_dim, n0, n1, n2)
    node_f = top_ranks(rf, top_dim, n0, n1, n2)
    node_h = top_ranks(rh, top_dim, n0, n1, n2)
    clear = top_dim == 3
    tfb, tfd, f_by_c, clr_f, _ = top_pairs(node_f, node_c, faces["f"][0], faces["f"][1], top_dim, border, n1, n2,
                                           clear)
    thb, thd, h_by_c, clr_h, _ = top_pairs(node_h, node_c, faces["h"][0], faces["h"][1], top_dim, border, n1, n2,
                                           clear)
    # snapshot before c's lowest tie block, for the image reductions' re-ordered block (see _image_pivots)
    snap = lowest_block_size(faces["c"][1]) if clear else -1
    _, tcd, _, clr_c, snapshot = top_pairs(node_c, node_c, faces["c"][0], faces["c"][1], top_dim, border, n1, n2,
                                           clear, snap)
    mf, mh = _found_in_both(f_by_c[tcd], h_by_c[tcd])
    d = top_dim - 1
    out[d] = (*_voxel_pairs(rf, d, tfb, tfd, top_dim, n1, n2), *_voxel_pairs(rh, d, thb, thd, top_dim, n1, n2), mf, mh)

    if top_dim == 3:
        size = 3 * n0 * n1 * n2
        ne = edges["f"][0].shape[0]
        # one row-position table alive at a time (memory): c first, then f and h with their image reductions
        pos = _row_positions(edges["c"][0], size)
        res = {"c": reduce_columns(faces["c"][0], clr_c, pos, ne, n1, n2, _switch_at(nc))}
        img = {}
        for k, clr, nk in (("f", clr_f, nf), ("h", clr_h, nh)):
            pos = _row_positions(edges[k][0], size)
            res[k] = reduce_columns(faces[k][0], clr, pos, ne, n1, n2, _switch_at(nk))
            if shortcuts and image_equals_comparison(nk, edges[k][0], edges[k][1], edges["c"][0]):
                img[k] = res["c"]
            else:
                # columns in c's order, rows in k's: coherent only when both are two-valued
                img[k] = _image_pivots(faces["c"][0], faces["c"][1], clr_c, snapshot, faces[k][0], pos, ne,
                                       border, n1, n2, _switch_at(max(nk, nc)))
        del pos
        img_f, img_h = img["f"], img["h"]
        mfb, mfd, mf_by = _middle_pairs(edges["f"][0], edges["f"][1], faces["f"][0], faces["f"][1], res["f"], size)
        mhb, mhd, mh_by = _middle_pairs(edges["h"][0], edges["h"][1], faces["h"][0], faces["h"][1], res["h"], size)
        mf, mh = _found_in_both(*_middle_lookups(edges["c"][0], edges["c"][1], faces["c"][1], res["c"], img_f,
                                                  edges["f"][0], mf_by, img_h, edges["h"][0], mh_by))
        out[1] = (*_voxel_pairs(rf, 1, mfb, mfd, top_dim, n1, n2), *_voxel_pairs(rh, 1, mhb, mhd, top_dim, n1, n2),
                  mf, mh)
    return out


def barcode_grid(r, nr, shape3, ndim):
    """Finite positive-length pairs of one dense-ranked grid: per dimension (birth voxels, death voxels)."""
    n0, n1, n2 = shape3
    top_dim = ndim
    out = [None] * ndim
    border = border_flags(n0, n1, n2)
    edges = sorted_cells(r, nr, 1, n0, n1, n2)
    b, d, _ = dim0_pairs(r, edges[0], edges[1], n1, n2)
    out[0] = _voxel_pairs(r, 0, b, d, top_dim, n1, n2)
    faces = edges if top_dim == 2 else sorted_cells(r, nr, 2, n0, n1, n2)
    node = top_ranks(r, top_dim, n0, n1, n2)
    b, d, _, clr, _ = top_pairs(node, node, faces[0], faces[1], top_dim, border, n1, n2, top_dim == 3)
    out[top_dim - 1] = _voxel_pairs(r, top_dim - 1, b, d, top_dim, n1, n2)
    if top_dim == 3:
        size = 3 * n0 * n1 * n2
        pos = _row_positions(edges[0], size)
        piv = reduce_columns(faces[0], clr, pos, edges[0].shape[0], n1, n2, _switch_at(nr))
        b, d, _ = _middle_pairs(edges[0], edges[1], faces[0], faces[1], piv, size)
        out[1] = _voxel_pairs(r, 1, b, d, top_dim, n1, n2)
    return out
