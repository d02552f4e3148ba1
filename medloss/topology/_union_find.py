"""Union-find kernels: dimension 0 (components) and the top dimension (dual graph, Alexander duality).

Image persistence comes for free here: a second union-find performing the *same* unions as the first one but ageing
components by another filtration tells which class of the other filtration a merge kills (as in Betti-Matching-3D).
Since its components are the first one's and union by age keeps every component's oldest node at its root, that
"twin" is kept as root attributes instead: per root, the component's oldest node by the other filtration and its
rank (no second set of finds). Pairs are returned as (birth cell id, death cell id) of positive persistence only.

Every union-find is one int32 table of rows (parent, rank[, oldest by a second filtration, its rank, ...]): a root's
ages are read right after finding it, and one cache line per node makes the random accesses of large grids cheap.
From tables that outgrow the caches the rows of the cells processed a few steps later are prefetched.

The dimension-0 passes can report which edges merge (``merged``); that classification is what the later stages
prune with: in 3D the merging edges' rows are dropped from the column reductions
(:func:`medloss.topology._reduction.row_positions`), in 2D the dual pass skips them (``skip`` of
:func:`top_pairs`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._cells import coface_axis, cofaces
from ._prefetch import lookahead, prefetch

# iterations (edges, faces) the row prefetches run ahead; they start from tables of PREFETCH_MIN_BYTES
_AHEAD = 16


@njit(cache=True, nogil=True, inline="always")
def _prefetch_edge(uf, e, s):
    # both endpoints of the edge with packed id e
    u = e // 3
    prefetch(uf, u)
    prefetch(uf, u + s[e - 3 * u])


@njit(cache=True, nogil=True, inline="always")
def _prefetch_cofaces(parent, border, cid, top_dim, nv, s0, s1):
    # both top cells of the face cid, ignoring the border (a prefetch of a neighbouring row is harmless), and
    # the border flags cofaces() reads
    v, _, st = coface_axis(cid, top_dim, s0, s1)
    prefetch(border, v)
    prefetch(parent, v)
    prefetch(parent, v - st if v >= st else nv)


@njit(cache=True, nogil=True)
def forest(rank):
    """Union-find table of singletons: rows (parent, rank)."""
    uf = np.empty((rank.shape[0], 2), np.int32)
    for i in range(rank.shape[0]):
        uf[i, 0] = i
        uf[i, 1] = rank[i]
    return uf


@njit(cache=True, nogil=True)
def aged_forest(rank, second, third):
    """Singletons with second (and third, if not empty) ages: rows (parent, rank, node, rank2[, node, rank3])."""
    n = rank.shape[0]
    uf = np.empty((n, 6 if third.shape[0] else 4), np.int32)
    for i in range(n):
        uf[i, 0] = i
        uf[i, 1] = rank[i]
        uf[i, 2] = i
        uf[i, 3] = second[i]
        if third.shape[0]:
            uf[i, 4] = i
            uf[i, 5] = third[i]
    return uf


@njit(cache=True, nogil=True, inline="always")
def _merge_ages(uf, ra, rb, old, col, larger_is_older):
    """Merge the second-filtration ages stored at columns ``col``/``col+1`` of roots ``ra``, ``rb`` into ``old``;
    return the younger component's oldest node (where the twin union-find would have its younger root)."""
    a = uf[ra, col]
    b = uf[rb, col]
    ka = uf[ra, col + 1]
    kb = uf[rb, col + 1]
    if larger_is_older:
        a_older = ka > kb or (ka == kb and a > b)
    else:
        a_older = ka < kb or (ka == kb and a < b)
    if a_older:
        uf[old, col] = a
        uf[old, col + 1] = ka
        return b
    uf[old, col] = b
    uf[old, col + 1] = kb
    return a


@njit(cache=True, nogil=True, inline="always")
def find(uf, x):
    # path halving
    while uf[x, 0] != x:
        g = uf[uf[x, 0], 0]
        uf[x, 0] = g
        x = g
    return x


@njit(cache=True, nogil=True, inline="always")
def _older_min(uf, a, b):
    # components born first (smaller (rank, index)) are older
    ra = uf[a, 1]
    rb = uf[b, 1]
    if ra < rb or (ra == rb and a < b):
        return a, b
    return b, a


@njit(cache=True, nogil=True, inline="always")
def _older_max(uf, a, b):
    # top cells: larger (rank, index) is older; the outside node has rank +inf
    ra = uf[a, 1]
    rb = uf[b, 1]
    if ra > rb or (ra == rb and a > b):
        return a, b
    return b, a


@njit(cache=True, nogil=True)
def dim0_pairs(rank, edges, edge_rank, n1, n2, merged=None):
    """Kruskal on edges in filtration order. Returns (birth voxels, death edge ids, pair index by birth voxel).

    ``merged`` (optional, bool per edge position, zeros): set where the edge merges two components (every death
    edge, zero-length bars included: the negative edges).
    """
    nv = rank.shape[0]
    uf = forest(rank)
    births = np.empty(nv, np.int32)
    deaths = np.empty(nv, np.int32)
    by_birth = np.full(nv, -1, np.int32)
    s = (n1 * n2, n2, 1)
    k = 0
    ne = edges.shape[0]
    ahead = lookahead(uf, _AHEAD)
    for i in range(ne):
        if ahead and i + ahead < ne:
            _prefetch_edge(uf, edges[i + ahead], s)
        e = edges[i]
        u = e // 3
        w = u + s[e - 3 * u]
        ru = find(uf, u)
        rw = find(uf, w)
        if ru == rw:
            continue
        old, young = _older_min(uf, ru, rw)
        uf[young, 0] = old
        if merged is not None:
            merged[i] = True
        if uf[young, 1] < edge_rank[i]:
            births[k] = young
            deaths[k] = e
            by_birth[young] = k
            k += 1
    return births[:k].copy(), deaths[:k].copy(), by_birth


@njit(cache=True, nogil=True)
def dim0_match(rank_c, rank_f, rank_h, edges_c, edge_rank_c, f_by_birth, h_by_birth, n1, n2, h_twin=True,
               merged=None):
    """Comparison-image Kruskal with f- and h-aged twins. Returns matched (f pair index, h pair index).

    ``h_twin=False`` (see :func:`binary_aligned`) reads h's pairs at c's own roots instead of an h-aged twin.
    ``merged``: as in :func:`dim0_pairs`, for c's edges.
    """
    nv = rank_c.shape[0]
    pc = aged_forest(rank_c, rank_f, rank_h if h_twin else rank_h[:0])
    mf = np.empty(nv, np.int32)
    mh = np.empty(nv, np.int32)
    s = (n1 * n2, n2, 1)
    k = 0
    ne = edges_c.shape[0]
    ahead = lookahead(pc, _AHEAD)
    for i in range(ne):
        if ahead and i + ahead < ne:
            _prefetch_edge(pc, edges_c[i + ahead], s)
        e = edges_c[i]
        u = e // 3
        w = u + s[e - 3 * u]
        ru = find(pc, u)
        rw = find(pc, w)
        if ru == rw:
            continue
        oc, yc = _older_min(pc, ru, rw)
        pc[yc, 0] = oc
        if merged is not None:
            merged[i] = True
        yf = _merge_ages(pc, ru, rw, oc, 2, False)
        yh = _merge_ages(pc, ru, rw, oc, 4, False) if h_twin else yc
        if pc[yc, 1] < edge_rank_c[i]:
            a = f_by_birth[yf]
            b = h_by_birth[yh]
            if a >= 0 and b >= 0:
                mf[k] = a
                mh[k] = b
                k += 1
    return mf[:k].astype(np.int64), mh[:k].astype(np.int64)


@njit(cache=True, nogil=True)
def binary_aligned(rank_h, nh, rank_c):
    """True if h has at most two values and c's lowest rank sits on exactly h's lowest-rank voxels.

    Then (binary target, c = min(f, h)) every component's oldest voxel by c is its oldest by h whenever it holds
    an h-lowest voxel, and h's positive bars are born only there, so an h-aged twin of c's union-find agrees
    with c's roots wherever h's pairs are looked up.
    """
    if nh == 1:
        return True
    if nh != 2:
        return False
    for v in range(rank_h.shape[0]):
        if (rank_h[v] == 0) != (rank_c[v] == 0):
            return False
    return True


@njit(cache=True, nogil=True)
def top_pairs(node_rank, node_rank_c, faces, face_rank, top_dim, border, n1, n2, want_clear, snap_at=-1,
              skip=None):
    """Dual union-find over (top-1)-cells in decreasing filtration order.

    Returns (birth face ids, death top-cell base voxels, pair index keyed by the comparison-younger node,
    cleared flags per face position). ``node_rank_c`` ages the lockstep twin (pass the ``node_rank`` object
    itself for a plain barcode: the twin is then skipped). ``cleared[i]`` marks faces that merge (positive
    (top-1)-cells, zero-length included), whose columns can be skipped in the next-lower reduction.
    With ``snap_at >= 0`` a copy of the union-find parents is taken just before face position ``snap_at - 1``
    is processed (i.e. with exactly the faces at positions >= ``snap_at`` merged) and returned as a fifth value.

    ``skip`` (2D only; bool per face position): faces not processed, for the ``merged`` flags of the dimension-0
    pass over the same edge order. Exact: in 2D the faces are the edges and the dual graph (squares and the
    outside node) is the planar dual of the pixel graph. For a connected plane graph, the complement of a spanning
    tree is a spanning tree of the dual, and for one strict total order the complement of the minimum spanning
    tree (the edges Kruskal merges with) is the dual's maximum spanning tree (the faces this pass merges with,
    taken in decreasing order). So a skipped face would find its cofaces already connected and do nothing, and
    every processed face merges. In 3D the dual's faces are 2-cells, which no Kruskal on edges classifies.
    """
    nv = border.shape[0]
    s0 = n1 * n2
    twin = node_rank_c is not node_rank
    parent = aged_forest(node_rank, node_rank_c, node_rank_c[:0]) if twin else forest(node_rank)
    nf = faces.shape[0]
    births = np.empty(nv, np.int32)
    deaths = np.empty(nv, np.int32)
    by_c_node = np.full(nv + 1, -1, np.int32)
    cleared = np.zeros(nf if want_clear else 0, np.bool_)
    snapshot = parent[:0].copy()
    if snap_at == nf:
        snapshot = parent.copy()
    k = 0
    ahead = lookahead(parent, _AHEAD)
    for i in range(nf - 1, -1, -1):
        if i == snap_at - 1:
            snapshot = parent.copy()
        if ahead and i >= ahead:
            _prefetch_cofaces(parent, border, faces[i - ahead], top_dim, nv, s0, n2)
        if skip is not None and skip[i]:
            continue
        cid = faces[i]
        a, b = cofaces(cid, top_dim, border, nv, s0, n2)
        ra = find(parent, a)
        rb = find(parent, b)
        if ra == rb:
            continue
        old, young = _older_max(parent, ra, rb)
        parent[young, 0] = old
        yc = _merge_ages(parent, ra, rb, old, 2, True) if twin else young
        if want_clear:
            cleared[i] = True
        if parent[young, 1] > face_rank[i]:
            births[k] = cid
            deaths[k] = young
            by_c_node[yc] = k
            k += 1
    return births[:k].copy(), deaths[:k].copy(), by_c_node, cleared, snapshot


@njit(cache=True, nogil=True)
def merging_faces(parent, faces, top_dim, border, n1, n2):
    """Which of ``faces`` merge dual components when processed last-to-first on top of the union-find state
    ``parent`` (a (parent, rank) table, modified). Merging is a property of the set of faces processed before,
    not of their order. Roots are linked by node age as in :func:`top_pairs`, which keeps the trees shallow."""
    nv = border.shape[0]
    s0 = n1 * n2
    out = np.zeros(faces.shape[0], np.bool_)
    ahead = lookahead(parent, _AHEAD)
    for i in range(faces.shape[0] - 1, -1, -1):
        if ahead and i >= ahead:
            _prefetch_cofaces(parent, border, faces[i - ahead], top_dim, nv, s0, n2)
        a, b = cofaces(faces[i], top_dim, border, nv, s0, n2)
        ra = find(parent, a)
        rb = find(parent, b)
        if ra != rb:
            old, young = _older_max(parent, ra, rb)
            parent[young, 0] = old
            out[i] = True
    return out
