"""Compiled (numba) kernels of the engine's integer work: exact, so the simulator is unchanged.

Only counting and set logic lives here; every floating-point feature stays in numpy, so the
numbers the click model sees are bit for bit those of the pure-numpy engine (tested against it).
Each kernel compiles on first use (a few seconds, cached on disk next to this file when the
folder is writable) and loops over shoppers one row at a time, so its cost grows with the items
a row actually holds, never with the catalog.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def count_in_prefix(
    log: np.ndarray, filled: np.ndarray, query: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """(B, m) int64: how often each ``query[r, j]`` occurs in ``log[r, :filled[r]]`` (-1 never).

    The engine's exposure counts: ``log`` is the episode's shown items, ``query`` the
    candidates (or the items of a slate)."""
    b, m = query.shape
    out = np.zeros((b, m), np.int64)
    for r in range(b):
        n = min(filled[r], log.shape[1])
        if n == 0:
            continue
        for j in range(m):
            q = query[r, j]
            if q < 0:
                continue
            c = 0
            for t in range(n):
                if log[r, t] == q:
                    c += 1
            out[r, j] = c
    return out


@njit(cache=True, nogil=True)
def first_valid(
    pool: np.ndarray, src: np.ndarray, last: np.ndarray, bought: np.ndarray, n_take: int, mark: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Row-wise, in pool order, the first ``n_take`` pool items that are valid (≥ 0), not a
    repeat of an earlier pool item, not ``last[r]`` and not in ``bought[r]`` (-1 padded): the
    candidates (-1 padded) and the ``src`` codes of the pool slots they came from.

    ``mark`` is a zeroed uint8 scratch array of the catalog's size, left zeroed on return."""
    b, p = pool.shape
    cand = np.full((b, n_take), -1, np.int64)
    csrc = np.zeros((b, n_take), np.int64)
    # mark: 1 = taken or repeated, 2 = bought or the last item
    for r in range(b):
        for t in range(bought.shape[1]):
            x = bought[r, t]
            if x >= 0:
                mark[x] = 2
        if last[r] >= 0:
            mark[last[r]] = 2
        k = 0
        for j in range(p):
            x = pool[r, j]
            if x < 0 or mark[x] != 0:
                continue
            mark[x] = 1
            if k < n_take:
                cand[r, k] = x
                csrc[r, k] = src[j]
                k += 1
            else:
                break
        # clear only what this row marked: O(pool), never O(catalog)
        for j in range(p):
            x = pool[r, j]
            if x >= 0:
                mark[x] = 0
        for t in range(bought.shape[1]):
            x = bought[r, t]
            if x >= 0:
                mark[x] = 0
        if last[r] >= 0:
            mark[last[r]] = 0
    return cand, csrc


@njit(cache=True, nogil=True)
def search_in_segments(
    keys: np.ndarray, starts: np.ndarray, segment: np.ndarray, query: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """``np.searchsorted(keys, query)`` (left side), searching only ``keys[starts[s]:starts[s+1]]``
    with ``s = segment`` for each query: exact whenever every key of segment s, and the query,
    lie in the segment's key range (keys of earlier segments are smaller, of later ones larger).

    The catalog's sorted ``item·span + t`` and pair keys: a global binary search over 10^7 keys
    misses the cache at every level, a segment holds a few keys of one item (or one source item),
    so the cost stays flat as the log grows. ``segment`` and ``query`` are flat and equally long;
    a segment outside ``starts`` returns position 0 (callers mask those queries)."""
    n = query.shape[0]
    out = np.zeros(n, np.int64)
    n_seg = starts.shape[0] - 1
    for i in range(n):
        s = segment[i]
        if s < 0 or s >= n_seg:
            continue
        lo = starts[s]
        hi = starts[s + 1]
        q = query[i]
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid] < q:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo
    return out
