"""Driver: barcodes of f, h, c and the Betti matching, per homology dimension, on dense-ranked 3D grids.

Work per pair: cells of dimension 1 and 2 sorted once per image (f, h, c); dimension 0 by union-find (f, h, and c
with f/h-aged twins); the top dimension by dual union-find (f and h with c-aged twins, c); in 3D the middle
dimension by five column reductions (plain f, h, c and the image reductions of f and h into c). Where the target
is binary (the usual case), its image reduction is c's own reduction and its dimension-0 twin is c's union-find
(see :func:`image_equals_comparison`, :func:`binary_aligned`); the shortcuts can be switched off for testing.

The work is laid out as a task graph (:func:`add_matching`, :func:`add_barcode`): the per-image parts are
independent until the matching steps, so :mod:`medloss.topology._tasks` runs them on parallel threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._cells import border_flags, parent_voxel, sorted_cells, top_ranks
from ._reduction import reduce_columns, row_positions
from ._tasks import TaskGraph, run
from ._union_find import binary_aligned, dim0_match, dim0_pairs, merging_faces, top_pairs


@njit(cache=True, nogil=True)
def to_voxels(rank, dim, cells, n1, n2):
    out = np.empty(cells.shape[0], np.int64)
    for i in range(cells.shape[0]):
        out[i] = parent_voxel(rank, dim, cells[i], n1, n2)
    return out


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


def add_matching(g: TaskGraph, f: str, h: str, c: str, shape3, ndim, shortcuts=True) -> str:
    """Add the tasks of one Betti matching to ``g``; returns the name of the task producing its result.

    ``f``, ``h``, ``c`` name tasks producing ``(dense ranks, number of ranks)`` of the flat prediction, target and
    comparison image embedded in 3D ``shape3``. The result is, per dimension, a tuple (f_birth_vox, f_death_vox,
    h_birth_vox, h_death_vox, match_f, match_h) where ``match_f[i] <-> match_h[i]`` index the f/h pairs.
    ``shortcuts=False`` disables the binary-image shortcuts (:func:`binary_aligned`,
    :func:`image_equals_comparison`) and the pruning by dimension 0's merging edges (``skip`` of
    :func:`top_pairs`, ``merged`` of :func:`row_positions`); the result is the same, only slower (tests).

    Independent parts become separate tasks (cell sorts and union-finds per image, the dimension-0 matching, the
    top-dimension dual union-finds, in 3D the column reductions of f, h, c and the image reductions), so
    :func:`medloss.topology._tasks.run` can run them on parallel threads; costs are relative durations (tenths
    of a second of one thread at 128^3, measured) that let the longest chains start first.
    """
    n0, n1, n2 = shape3
    top = ndim
    clear = top == 3
    size = 3 * n0 * n1 * n2
    g.add("border", lambda: border_flags(n0, n1, n2), cost=0.1)
    for k in (f, h, c):
        g.add(f"edges_{k}", lambda rn: sorted_cells(rn[0], rn[1], 1, n0, n1, n2), k, cost=1.0)
        if top == 3:
            g.add(f"faces_{k}", lambda rn: sorted_cells(rn[0], rn[1], 2, n0, n1, n2), k, cost=1.0)
        g.add(f"node_{k}", lambda rn: top_ranks(rn[0], top, n0, n1, n2), k, cost=0.15)
    faces = "faces" if top == 3 else "edges"

    # dimension 0: Kruskal per image, then the comparison image's with f- and h-aged twins. Each pass flags its
    # merging edges (task merged_<k>), with which later stages prune where ``shortcuts``: in 2D the dual pass
    # skips them, in 3D their rows leave the column reductions (see top_pairs, row_positions)
    def dim0_k(rn, e):
        merged = np.zeros(e[0].shape[0], np.bool_)
        return (*dim0_pairs(rn[0], e[0], e[1], n1, n2, merged), merged)

    for k in (f, h):
        g.add(f"dim0_{k}", dim0_k, k, f"edges_{k}", cost=1.2)
        g.add(f"merged_{k}", lambda p: p[3], f"dim0_{k}", cost=0.0)

    def dim0(rf, rh, rc, ec, pf, ph):
        twin_h = not (shortcuts and binary_aligned(rh[0], rh[1], rc[0]))
        merged = np.zeros(ec[0].shape[0], np.bool_)
        mf, mh = dim0_match(rc[0], rf[0], rh[0], ec[0], ec[1], pf[2], ph[2], n1, n2, twin_h, merged)
        return (*_voxel_pairs(rf[0], 0, pf[0], pf[1], top, n1, n2), *_voxel_pairs(rh[0], 0, ph[0], ph[1], top, n1, n2),
                mf, mh), merged

    g.add("dim0_match", dim0, f, h, c, f"edges_{c}", f"dim0_{f}", f"dim0_{h}", cost=1.5)
    g.add("dim0", lambda m: m[0], "dim0_match", cost=0.0)
    g.add(f"merged_{c}", lambda m: m[1], "dim0_match", cost=0.0)

    # top dimension: dual union-finds (f and h with c-aged twins, c itself); in 2D after dimension 0, whose
    # merging edges they skip
    skip_from = (lambda k: (f"merged_{k}",)) if top == 2 and shortcuts else (lambda k: ())
    for k in (f, h):
        g.add(f"top_{k}", lambda nk, nc, fk, b, skip=None: top_pairs(nk, nc, fk[0], fk[1], top, b, n1, n2, clear, -1,
                                                                      skip),
              f"node_{k}", f"node_{c}", f"{faces}_{k}", "border", *skip_from(k), cost=2.0)

    def top_c(nc, fc, b, skip=None):
        # snapshot before c's lowest tie block, for the image reductions' re-ordered block (see _image_pivots)
        snap = lowest_block_size(fc[1]) if clear else -1
        return top_pairs(nc, nc, fc[0], fc[1], top, b, n1, n2, clear, snap, skip)

    g.add(f"top_{c}", top_c, f"node_{c}", f"{faces}_{c}", "border", *skip_from(c), cost=2.0)

    def top_dim(rf, rh, tf, th, tc):
        mf, mh = _found_in_both(tf[2][tc[1]], th[2][tc[1]])
        d = top - 1
        return (*_voxel_pairs(rf[0], d, tf[0], tf[1], top, n1, n2), *_voxel_pairs(rh[0], d, th[0], th[1], top, n1, n2),
                mf, mh)

    g.add("top", top_dim, f, h, f"top_{f}", f"top_{h}", f"top_{c}", cost=0.1)
    if top == 2:
        return g.add("matching", lambda a, b: [a, b], "dim0", "top", cost=0.0)

    # 3D middle dimension: plain reductions of f, h, c and the image reductions of f and h into c
    for k in (f, h, c):
        if shortcuts:
            g.add(f"pos_{k}", lambda e, m: row_positions(e[0], size, m), f"edges_{k}", f"merged_{k}", cost=0.3)
        else:
            g.add(f"pos_{k}", lambda e: row_positions(e[0], size), f"edges_{k}", cost=0.3)
        g.add(f"red_{k}", lambda rn, fk, tk, pos, e: reduce_columns(fk[0], tk[3], pos, e[0].shape[0], n1, n2,
                                                                    _switch_at(rn[1])),
              k, f"faces_{k}", f"top_{k}", f"pos_{k}", f"edges_{k}", cost=3.0)

    def image(rk, rc, ek, fk, pos, ec, fc, tc, b):
        """Pivots of the image reduction of k into c, or ``None`` where c's own reduction is the same."""
        if shortcuts and image_equals_comparison(rk[1], ek[0], ek[1], ec[0]):
            return None
        # columns in c's order, rows in k's: coherent only when both are two-valued
        return _image_pivots(fc[0], fc[1], tc[3], tc[4], fk[0], pos, ek[0].shape[0], b, n1, n2,
                             _switch_at(max(rk[1], rc[1])))

    for k in (f, h):
        g.add(f"img_{k}", image, k, c, f"edges_{k}", f"faces_{k}", f"pos_{k}", f"edges_{c}", f"faces_{c}",
              f"top_{c}", "border", cost=4.0)

    def middle(ef, eh, ec, ff, fh, fc, red_f, red_h, red_c, img_f, img_h, rf, rh):
        img_f = red_c if img_f is None else img_f
        img_h = red_c if img_h is None else img_h
        mfb, mfd, mf_by = _middle_pairs(ef[0], ef[1], ff[0], ff[1], red_f, size)
        mhb, mhd, mh_by = _middle_pairs(eh[0], eh[1], fh[0], fh[1], red_h, size)
        mf, mh = _found_in_both(*_middle_lookups(ec[0], ec[1], fc[1], red_c, img_f, ef[0], mf_by, img_h, eh[0],
                                                  mh_by))
        return (*_voxel_pairs(rf[0], 1, mfb, mfd, top, n1, n2), *_voxel_pairs(rh[0], 1, mhb, mhd, top, n1, n2),
                mf, mh)

    g.add("middle", middle, *(f"{a}_{k}" for a in ("edges", "faces") for k in (f, h, c)),
          *(f"red_{k}" for k in (f, h, c)), f"img_{f}", f"img_{h}", f, h, cost=0.7)
    return g.add("matching", lambda a, b, m: [a, m, b], "dim0", "top", "middle", cost=0.0)


def match_grids(rf, nf, rh, nh, rc, nc, shape3, ndim, shortcuts=True, num_threads=1):
    """Betti matching of dense-ranked flat grids (f, h, c) embedded in 3D ``shape3`` (see :func:`add_matching`),
    on ``num_threads`` threads."""
    g = TaskGraph()
    g.value("f", (rf, nf))
    g.value("h", (rh, nh))
    g.value("c", (rc, nc))
    out = add_matching(g, "f", "h", "c", shape3, ndim, shortcuts)
    return run([g], [out], num_threads)[0]


def add_barcode(g: TaskGraph, image: str, shape3, ndim) -> str:
    """Add the tasks of one image's barcode to ``g`` (``image`` names a task producing ``(ranks, nranks)``);
    the result is per dimension (birth voxels, death voxels) of the finite positive-length pairs."""
    n0, n1, n2 = shape3
    top = ndim
    size = 3 * n0 * n1 * n2
    g.add("border", lambda: border_flags(n0, n1, n2), cost=0.1)
    g.add("edges", lambda rn: sorted_cells(rn[0], rn[1], 1, n0, n1, n2), image, cost=1.0)
    faces = "edges"
    if top == 3:
        faces = g.add("faces", lambda rn: sorted_cells(rn[0], rn[1], 2, n0, n1, n2), image, cost=1.0)

    def dim0(rn, e):
        merged = np.zeros(e[0].shape[0], np.bool_)
        b, d, _ = dim0_pairs(rn[0], e[0], e[1], n1, n2, merged)
        return _voxel_pairs(rn[0], 0, b, d, top, n1, n2), merged

    g.add("dim0_pass", dim0, image, "edges", cost=1.2)
    g.add("dim0", lambda p: p[0], "dim0_pass", cost=0.0)
    g.add("merged", lambda p: p[1], "dim0_pass", cost=0.0)

    def top_dim(rn, fc, border, skip=None):
        # in 2D after dimension 0, whose merging edges the dual pass skips (see top_pairs)
        node = top_ranks(rn[0], top, n0, n1, n2)
        return top_pairs(node, node, fc[0], fc[1], top, border, n1, n2, top == 3, -1, skip)

    g.add("top", top_dim, image, faces, "border", *(("merged",) if top == 2 else ()), cost=2.0)
    parts = ["dim0", "top"]
    if top == 3:
        def middle(rn, e, fc, t, merged):
            pos = row_positions(e[0], size, merged)
            piv = reduce_columns(fc[0], t[3], pos, e[0].shape[0], n1, n2, _switch_at(rn[1]))
            b, d, _ = _middle_pairs(e[0], e[1], fc[0], fc[1], piv, size)
            return _voxel_pairs(rn[0], 1, b, d, top, n1, n2)

        parts.insert(1, g.add("middle", middle, image, "edges", faces, "top", "merged", cost=3.0))

    def top_pairs_out(rn, t):
        return _voxel_pairs(rn[0], top - 1, t[0], t[1], top, n1, n2)

    g.add("top_out", top_pairs_out, image, "top", cost=0.1)
    parts[-1] = "top_out"
    return g.add("barcode", lambda *per_dim: list(per_dim), *parts, cost=0.0)


def barcode_grid(r, nr, shape3, ndim, num_threads=1):
    """Finite positive-length pairs of one dense-ranked grid: per dimension (birth voxels, death voxels)."""
    g = TaskGraph()
    g.value("image", (r, nr))
    out = add_barcode(g, "image", shape3, ndim)
    return run([g], [out], num_threads)[0]
