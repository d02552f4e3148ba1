"""Dense ranks of the filtration values (ties share a rank) for f, h and their comparison image min(f, h).

Every later comparison is an integer comparison of ranks, so ranking is the only place that touches the values.
Three shortcuts keep it off the profile: a target with few distinct values (a binary mask) is ranked by lookup,
a general image is ordered by a stable LSD radix sort of value prefixes (only the bits in which they differ)
instead of an ``argsort`` or a comparison sort, and the comparison image is ranked by merging the two rank spaces
(its values are a subset of theirs and ``min`` is monotone), so it is never sorted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._cells import radix_sort

_FEW = 16


@njit(cache=True, nogil=True)
def _few_values(x, limit):
    """Sorted distinct values of ``x`` if there are at most ``limit`` of them, else an empty array."""
    vals = np.empty(limit, np.float64)
    m = 0
    for i in range(x.shape[0]):
        v = x[i]
        j = 0
        while j < m and vals[j] < v:
            j += 1
        if j < m and vals[j] == v:
            continue
        if m == limit:
            return vals[:0]
        for k in range(m, j, -1):
            vals[k] = vals[k - 1]
        vals[j] = v
        m += 1
    return vals[:m].copy()


@njit(cache=True, nogil=True)
def _rank_by_lookup(x, vals):
    out = np.empty(x.shape[0], np.int32)
    for i in range(x.shape[0]):
        v = x[i]
        j = 0
        while vals[j] != v:
            j += 1
        out[i] = j
    return out


@njit(cache=True, nogil=True)
def _assign(x, order):
    """Dense ranks along ``order``; ``ok`` is False (and the ranks unusable) if ``order`` is not sorted by value."""
    n = order.shape[0]
    rank = np.empty(n, np.int32)
    uniq = np.empty(n, np.float64)
    r = -1
    prev = 0.0
    for i in range(n):
        v = x[order[i]]
        if r < 0 or v != prev:
            if r >= 0 and v < prev:
                return rank, uniq[:0], False
            r += 1
            uniq[r] = v
            prev = v
        rank[order[i]] = r
    return rank, uniq[: r + 1].copy(), True


@njit(cache=True, nogil=True)
def _ranks_from_order(x, order, shift):
    """Dense ranks from an order that is exact except inside runs of equal value prefix (``bits >> shift``),
    which are ordered by index: those runs are re-sorted stably by exact value first (rare: values closer than
    the prefix resolves)."""
    rank, uniq, ok = _assign(x, order)
    if ok:
        return rank, uniq
    n = order.shape[0]
    i = 0
    while i < n:
        j = i + 1
        sorted_run = True
        while j < n and _prefix(x[order[j]], shift) == _prefix(x[order[i]], shift):
            if x[order[j]] < x[order[j - 1]]:
                sorted_run = False
            j += 1
        if not sorted_run:
            run = order[i:j].copy()
            perm = np.argsort(x[run], kind="mergesort")
            order[i:j] = run[perm]
        i = j
    rank, uniq, _ = _assign(x, order)
    return rank, uniq


@njit(cache=True, nogil=True, inline="always")
def _prefix(v, shift):
    b = np.int64(np.float64(v).view(np.int64))
    return (b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFF)) >> shift


@njit(cache=True, nogil=True)
def _radix_order(prefix):
    """Indices sorting the int64 ``prefix`` stably (ties keep index order): a radix sort over the bits of
    ``prefix - min(prefix)`` only (constant high bits cost no pass; the span must stay below 2**63)."""
    n = prefix.shape[0]
    lo = prefix[0]
    hi = prefix[0]
    for i in range(n):
        p = prefix[i]
        lo = min(lo, p)
        hi = max(hi, p)
    bits = 0
    while bits < 63 and ((hi - lo) >> bits) > 0:
        bits += 1
    key = np.empty(n, np.int64)
    for i in range(n):
        key[i] = prefix[i] - lo
    return radix_sort(key, np.arange(n).astype(np.int32), bits)[1]


@njit(cache=True, nogil=True)
def _prefixes(x, shift):
    out = np.empty(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        out[i] = _prefix(x[i], shift)
    return out


def _sorted_order(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Indices ordering ``x`` by (prefix of value, index): the prefix drops the lowest ``shift`` bits (the
    ranking fixes up the rare runs of distinct values sharing a prefix), which saves radix passes."""
    shift = max(1, (x.size - 1).bit_length())
    return _radix_order(_prefixes(x, shift)), shift


def dense_rank(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ranks (int32, ties share a rank) of a flat finite float64 array and its sorted distinct values."""
    x = np.ascontiguousarray(values, dtype=np.float64) + 0.0  # -0.0 -> +0.0: equal values, equal bits
    few = _few_values(x, _FEW)
    if few.size:
        return _rank_by_lookup(x, few), few
    if x.size > 2**31:
        raise ValueError(f"images above 2**31 voxels are not supported, got {x.size}.")
    order, shift = _sorted_order(x)
    return _ranks_from_order(x, order, shift)


@njit(cache=True, nogil=True)
def comparison_ranks(rf, uf, rh, uh):
    """Dense ranks of min(f, h) from the ranks and sorted distinct values of f and h (merge, no sort)."""
    nf, nh = uf.shape[0], uh.shape[0]
    pos_f = np.empty(nf, np.int64)
    pos_h = np.empty(nh, np.int64)
    i = j = k = 0
    while i < nf or j < nh:
        if j == nh or (i < nf and uf[i] < uh[j]):
            pos_f[i] = k
            i += 1
        elif i == nf or uh[j] < uf[i]:
            pos_h[j] = k
            j += 1
        else:
            pos_f[i] = k
            pos_h[j] = k
            i += 1
            j += 1
        k += 1
    n = rf.shape[0]
    rc = np.empty(n, np.int32)
    used = np.zeros(k + 1, np.int64)
    for v in range(n):
        a = pos_f[rf[v]]
        b = pos_h[rh[v]]
        m = a if a < b else b
        rc[v] = m
        used[m + 1] = 1
    for t in range(k):
        used[t + 1] += used[t]
    for v in range(n):
        rc[v] = used[rc[v]]
    return rc, int(used[k])


def rank_images(f: np.ndarray, h: np.ndarray):
    """Dense ranks ``(rf, nf, rh, nh, rc, nc)`` of flat images f, h and of their comparison image min(f, h)."""
    rf, uf = dense_rank(f)
    rh, uh = dense_rank(h)
    rc, nc = comparison_ranks(rf, uf, rh, uh)
    return rf, uf.size, rh, uh.size, rc, nc
