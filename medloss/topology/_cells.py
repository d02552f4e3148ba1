"""Cells of the cubical V-complex of a 3D voxel grid, addressed by packed integer ids.

2D images are embedded as ``(1, H, W)`` volumes. Voxel ``v`` is the C-order linear index. Cell ids:

* vertices and cubes: ``v`` (the cell's lowest corner);
* edges: ``3 * v + t`` with ``t`` the axis the edge runs along;
* squares: ``3 * v + t`` with ``t`` the axis the square is perpendicular to.

Sorting cells of one dimension by ``(rank, id)`` is exactly the total order of Betti-Matching-3D
(https://github.com/nstucki/Betti-Matching-3D), because ``id`` orders lexicographically by (base corner, type).
Filtration values are replaced by dense ranks of the voxel values (ties preserved), so a cell's rank is the max of
its voxels' ranks and every comparison is an integer comparison. Nothing is materialised per cell except the sorted
id lists.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _valid(dim, c0, c1, c2, t, n0, n1, n2):
    if dim == 1:
        if t == 0:
            return c0 < n0 - 1
        if t == 1:
            return c1 < n1 - 1
        return c2 < n2 - 1
    if dim == 2:
        if t == 0:
            return c1 < n1 - 1 and c2 < n2 - 1
        if t == 1:
            return c0 < n0 - 1 and c2 < n2 - 1
        return c0 < n0 - 1 and c1 < n1 - 1
    return c0 < n0 - 1 and c1 < n1 - 1 and c2 < n2 - 1


@njit(cache=True, nogil=True, inline="always")
def _spanned(t):
    # the two axes a square of type t spans, ascending
    if t == 0:
        return 1, 2
    if t == 1:
        return 0, 2
    return 0, 1


@njit(cache=True, nogil=True)
def cell_rank(rank, dim, cid, n1, n2):
    """Rank of a cell = max rank of its voxels."""
    s = (n1 * n2, n2, 1)
    if dim == 0:
        return rank[cid]
    if dim == 3:
        v = cid
        m = rank[v]
        for o in (s[2], s[1], s[1] + s[2], s[0], s[0] + s[2], s[0] + s[1], s[0] + s[1] + s[2]):
            r = rank[v + o]
            if r > m:
                m = r
        return m
    v = cid // 3
    t = cid - 3 * v
    if dim == 1:
        a = rank[v]
        b = rank[v + s[t]]
        return a if a > b else b
    a, b = _spanned(t)
    m = rank[v]
    for o in (s[a], s[b], s[a] + s[b]):
        r = rank[v + o]
        if r > m:
            m = r
    return m


@njit(cache=True, nogil=True)
def parent_voxel(rank, dim, cid, n1, n2):
    """Voxel carrying a cell's value, first in Betti-Matching-3D's fixed order."""
    s = (n1 * n2, n2, 1)
    if dim == 0:
        return cid
    if dim == 3:
        v = cid
        best = v
        m = rank[v]
        for o in (s[2], s[1], s[1] + s[2], s[0], s[0] + s[2], s[0] + s[1], s[0] + s[1] + s[2]):
            if rank[v + o] > m:
                m = rank[v + o]
                best = v + o
        return best
    v = cid // 3
    t = cid - 3 * v
    if dim == 1:
        far = v + s[t]
        return far if rank[far] >= rank[v] else v
    a, b = _spanned(t)
    m = cell_rank(rank, 2, cid, n1, n2)
    for o in (s[a] + s[b], s[a], s[b], 0):
        if rank[v + o] == m:
            return v + o
    return v


@njit(cache=True, nogil=True, inline="always")
def _max4(rank, v, a, b):
    m = rank[v]
    r = rank[v + a]
    if r > m:
        m = r
    r = rank[v + b]
    if r > m:
        m = r
    r = rank[v + a + b]
    return r if r > m else m


@njit(cache=True, nogil=True)
def _cells_in_id_order(rank, dim, n0, n1, n2, ids, rk):
    """Fill ``ids``/``rk`` with every cell of ``dim`` in increasing id order and its rank (validity by loop bounds)."""
    s0 = n1 * n2
    k = 0
    for x in range(n0):
        ix = x < n0 - 1
        for y in range(n1):
            iy = y < n1 - 1
            v = (x * n1 + y) * n2
            for z in range(n2):
                iz = z < n2 - 1
                if dim == 1:
                    a = rank[v]
                    if ix:
                        b = rank[v + s0]
                        ids[k] = 3 * v
                        rk[k] = a if a > b else b
                        k += 1
                    if iy:
                        b = rank[v + n2]
                        ids[k] = 3 * v + 1
                        rk[k] = a if a > b else b
                        k += 1
                    if iz:
                        b = rank[v + 1]
                        ids[k] = 3 * v + 2
                        rk[k] = a if a > b else b
                        k += 1
                elif dim == 2:
                    if iy and iz:
                        ids[k] = 3 * v
                        rk[k] = _max4(rank, v, n2, 1)
                        k += 1
                    if ix and iz:
                        ids[k] = 3 * v + 1
                        rk[k] = _max4(rank, v, s0, 1)
                        k += 1
                    if ix and iy:
                        ids[k] = 3 * v + 2
                        rk[k] = _max4(rank, v, s0, n2)
                        k += 1
                elif ix and iy and iz:
                    a = _max4(rank, v, n2, 1)
                    b = _max4(rank, v + s0, n2, 1)
                    ids[k] = v
                    rk[k] = a if a > b else b
                    k += 1
                v += 1
    return k


@njit(cache=True, nogil=True)
def radix_sort(key, payload, bits, max_width=10):
    """Stable LSD radix sort of (``key``, ``payload``) by the nonnegative ``key`` (below ``2**bits``), at most
    ``max_width`` bits per pass so that each pass's buckets stay in cache. The inputs may be overwritten."""
    # 10: the 21-bit ranks of 128^3 cells sort faster in three 7-bit passes than in two 11-bit ones (about 15 %)
    n = key.shape[0]
    if bits <= 0 or n <= 1:
        return key, payload
    npass = (bits + max_width - 1) // max_width
    width = (bits + npass - 1) // npass
    nb = 1 << width
    mask = nb - 1
    hist = np.zeros((npass, nb + 1), np.int64)
    for i in range(n):
        r = key[i]
        for p in range(npass):
            hist[p, ((r >> (p * width)) & mask) + 1] += 1
    key2 = np.empty_like(key)
    payload2 = np.empty_like(payload)
    for p in range(npass):
        h = hist[p]
        for b in range(nb):
            h[b + 1] += h[b]
        sh = p * width
        for i in range(n):
            r = key[i]
            d = (r >> sh) & mask
            j = h[d]
            h[d] = j + 1
            payload2[j] = payload[i]
            key2[j] = r
        key, key2 = key2, key
        payload, payload2 = payload2, payload
    return key, payload


@njit(cache=True, nogil=True)
def num_cells(dim, n0, n1, n2):
    a, b, c = n0 - 1, n1 - 1, n2 - 1
    if dim == 0:
        return n0 * n1 * n2
    if dim == 1:
        return a * n1 * n2 + n0 * b * n2 + n0 * n1 * c
    if dim == 2:
        return n0 * b * c + a * n1 * c + a * b * n2
    return a * b * c


@njit(cache=True, nogil=True)
def sorted_cells(rank, nrank, dim, n0, n1, n2):
    """Ids of all cells of ``dim`` (1..3) sorted by (rank, id), and their ranks.

    Cells are generated in id order, so a stable radix sort by rank yields the (rank, id) order; sequential
    passes instead of a rank-indexed counting sort, whose random histogram accesses dominated at 128^3.
    """
    cnt = num_cells(dim, n0, n1, n2)
    ids = np.empty(cnt, np.int32)
    rk = np.empty(cnt, np.int32)
    _cells_in_id_order(rank, dim, n0, n1, n2, ids, rk)
    bits = 0
    while (1 << bits) < nrank:
        bits += 1
    rk, ids = radix_sort(rk, ids, bits)
    return ids, rk


@njit(cache=True, nogil=True)
def top_ranks(rank, top_dim, n0, n1, n2):
    """Rank of the top cell based at every voxel (-1 where none); index ``nv`` is the outside node (+inf)."""
    nv = n0 * n1 * n2
    out = np.full(nv + 1, -1, np.int32)
    out[nv] = np.iinfo(np.int32).max
    v = 0
    for x in range(n0):
        for y in range(n1):
            for z in range(n2):
                if top_dim == 3:
                    if _valid(3, x, y, z, 0, n0, n1, n2):
                        out[v] = cell_rank(rank, 3, v, n1, n2)
                elif _valid(2, x, y, z, 0, n0, n1, n2):
                    out[v] = cell_rank(rank, 2, 3 * v, n1, n2)
                v += 1
    return out


@njit(cache=True, nogil=True)
def border_flags(n0, n1, n2):
    """Per voxel: bit m set if its coordinate on axis m is 0, bit m+3 if it is the last one (avoids divisions)."""
    out = np.empty(n0 * n1 * n2, np.uint8)
    v = 0
    for x in range(n0):
        fx = (1 if x == 0 else 0) | (8 if x == n0 - 1 else 0)
        for y in range(n1):
            fy = fx | (2 if y == 0 else 0) | (16 if y == n1 - 1 else 0)
            for z in range(n2):
                out[v] = fy | (4 if z == 0 else 0) | (32 if z == n2 - 1 else 0)
                v += 1
    return out


@njit(cache=True, nogil=True, inline="always")
def coface_axis(cid, top_dim, s0, s1):
    """Base voxel ``v`` of the (top-1)-cell ``cid``, the axis ``m`` its two top cells lie along and that axis'
    stride: the cofaces are based at ``v`` and ``v - stride`` (inside the grid)."""
    v = cid // 3
    t = cid - 3 * v
    m = t if top_dim == 3 else 3 - t
    return v, m, s0 if m == 0 else (s1 if m == 1 else 1)


@njit(cache=True, nogil=True, inline="always")
def cofaces(cid, top_dim, border, nv, s0, s1):
    """The two top cells (as base voxels, ``nv`` = outside) having the (top-1)-cell ``cid`` as a face."""
    v, m, st = coface_axis(cid, top_dim, s0, s1)
    fl = border[v]
    a = nv if fl & (8 << m) else v
    b = nv if fl & (1 << m) else v - st
    return a, b
