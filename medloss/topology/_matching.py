"""Driver: barcodes of f, h, c and the Betti matching, per homology dimension, on dense-ranked 3D grids."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._cells import border_flags, parent_voxel, sorted_cells, top_ranks
from ._reduction import reduce_columns, relaxed_column_order
from ._union_find import dim0_match, dim0_pairs, top_pairs


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
def _middle_match(c_edges, c_edge_rank, c_cols, c_col_rank, c_piv, img_f, f_edges, f_by, img_h, h_edges, h_by):
    n = c_cols.shape[0]
    mf = np.empty(n, np.int64)
    mh = np.empty(n, np.int64)
    k = 0
    for j in range(n):
        p = c_piv[j]
        if p < 0 or c_edge_rank[p] >= c_col_rank[j]:
            continue
        a = f_by[f_edges[img_f[j]]]
        b = h_by[h_edges[img_h[j]]]
        if a >= 0 and b >= 0:
            mf[k] = a
            mh[k] = b
            k += 1
    return mf[:k].copy(), mh[:k].copy()


@njit(cache=True, nogil=True)
def _top_match(c_deaths, f_by_c, h_by_c):
    n = c_deaths.shape[0]
    mf = np.empty(n, np.int64)
    mh = np.empty(n, np.int64)
    k = 0
    for j in range(n):
        y = c_deaths[j]
        a = f_by_c[y]
        b = h_by_c[y]
        if a >= 0 and b >= 0:
            mf[k] = a
            mh[k] = b
            k += 1
    return mf[:k].copy(), mh[:k].copy()


@njit(cache=True, nogil=True)
def _positive_deaths(edge_rank, col_rank, pivots):
    out = np.zeros(col_rank.shape[0], np.bool_)
    for k in range(col_rank.shape[0]):
        p = pivots[k]
        out[k] = p >= 0 and edge_rank[p] < col_rank[k]
    return out


@njit(cache=True, nogil=True)
def _image_pivots(c_cols, c_col_rank, node_c, c_cleared_in, need, f_cols, f_row_pos, n_rows, border, n1, n2, size):
    """Pivots (rows in f's edge order) of the comparison image's 2-cell columns, indexed like ``c_cols``."""
    f_col_pos = _row_positions(f_cols, size)
    key = np.empty(c_cols.shape[0], np.int32)
    for k in range(c_cols.shape[0]):
        key[k] = f_col_pos[c_cols[k]]
    perm = relaxed_column_order(c_col_rank, need, key)
    identity = True
    for k in range(perm.shape[0]):
        if perm[k] != k:
            identity = False
            break
    if identity:
        return reduce_columns(c_cols, c_cleared_in, f_row_pos, n_rows, n1, n2)
    cols = c_cols[perm]
    # which columns are dependent on earlier ones depends on the order, so clear again for the relaxed order
    # (positivity of a 2-cell is a property of the 2-cell order alone; node ages are irrelevant here)
    cleared = top_pairs(node_c, node_c, cols, c_col_rank[perm], 3, border, n1, n2, True)[3]
    piv = reduce_columns(cols, cleared, f_row_pos, n_rows, n1, n2)
    out = np.empty_like(piv)
    out[perm] = piv
    return out


def _voxel_pairs(rank, dim, births, deaths, top_dim, n1, n2):
    """Critical voxels of (birth dim-cell, death (dim+1)-cell) pairs; top-cell deaths are base voxels."""
    bv = to_voxels(rank, dim, births, n1, n2)
    if dim + 1 == top_dim:
        cells = deaths * 3 if top_dim == 2 else deaths
    else:
        cells = deaths
    dv = to_voxels(rank, dim + 1, cells, n1, n2)
    return bv, dv


def match_grids(rf, nf, rh, nh, rc, nc, shape3, ndim):
    """Betti matching of dense-ranked flat grids (f, h, c) embedded in 3D ``shape3``.

    Returns per dimension a tuple (f_birth_vox, f_death_vox, h_birth_vox, h_death_vox, match_f, match_h) where
    ``match_f[i] <-> match_h[i]`` index the f/h pairs.
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
    mf, mh = dim0_match(rc, rf, rh, edges["c"][0], edges["c"][1], f_by, h_by, n1, n2)
    out[0] = (*_voxel_pairs(rf, 0, fb, fd, top_dim, n1, n2), *_voxel_pairs(rh, 0, hb, hd, top_dim, n1, n2), mf, mh)

    # top dimension (dual union-find)
    faces = edges if top_dim == 2 else {k: sorted_cells(r, nr, 2, n0, n1, n2)
                                        for k, r, nr in (("f", rf, nf), ("h", rh, nh), ("c", rc, nc))}
    node_c = top_ranks(rc, top_dim, n0, n1, n2)
    node_f = top_ranks(rf, top_dim, n0, n1, n2)
    node_h = top_ranks(rh, top_dim, n0, n1, n2)
    clear = top_dim == 3
    tfb, tfd, f_by_c, clr_f = top_pairs(node_f, node_c, faces["f"][0], faces["f"][1], top_dim, border, n1, n2, clear)
    thb, thd, h_by_c, clr_h = top_pairs(node_h, node_c, faces["h"][0], faces["h"][1], top_dim, border, n1, n2, clear)
    _, tcd, _, clr_c = top_pairs(node_c, node_c, faces["c"][0], faces["c"][1], top_dim, border, n1, n2, clear)
    mf, mh = _top_match(tcd, f_by_c, h_by_c)
    d = top_dim - 1
    out[d] = (*_voxel_pairs(rf, d, tfb, tfd, top_dim, n1, n2), *_voxel_pairs(rh, d, thb, thd, top_dim, n1, n2), mf, mh)

    if top_dim == 3:
        size = 3 * n0 * n1 * n2
        ne = edges["f"][0].shape[0]
        # one row-position table alive at a time (memory): c first, then f and h with their image reductions
        pos = _row_positions(edges["c"][0], size)
        res = {"c": reduce_columns(faces["c"][0], clr_c, pos, ne, n1, n2)}
        need = _positive_deaths(edges["c"][1], faces["c"][1], res["c"])
        img = {}
        for k, clr in (("f", clr_f), ("h", clr_h)):
            pos = _row_positions(edges[k][0], size)
            res[k] = reduce_columns(faces[k][0], clr, pos, ne, n1, n2)
            img[k] = _image_pivots(faces["c"][0], faces["c"][1], node_c, clr_c, need, faces[k][0], pos, ne, border,
                                   n1, n2, size)
        del pos
        img_f, img_h = img["f"], img["h"]
        mfb, mfd, mf_by = _middle_pairs(edges["f"][0], edges["f"][1], faces["f"][0], faces["f"][1], res["f"], size)
        mhb, mhd, mh_by = _middle_pairs(edges["h"][0], edges["h"][1], faces["h"][0], faces["h"][1], res["h"], size)
        mf, mh = _middle_match(edges["c"][0], edges["c"][1], faces["c"][0], faces["c"][1], res["c"],
                               img_f, edges["f"][0], mf_by, img_h, edges["h"][0], mh_by)
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
    b, d, _, clr = top_pairs(node, node, faces[0], faces[1], top_dim, border, n1, n2, top_dim == 3)
    out[top_dim - 1] = _voxel_pairs(r, top_dim - 1, b, d, top_dim, n1, n2)
    if top_dim == 3:
        size = 3 * n0 * n1 * n2
        pos = _row_positions(edges[0], size)
        piv = reduce_columns(faces[0], clr, pos, edges[0].shape[0], n1, n2)
        b, d, _ = _middle_pairs(edges[0], edges[1], faces[0], faces[1], piv, size)
        out[1] = _voxel_pairs(r, 1, b, d, top_dim, n1, n2)
    return out
