"""The engine's compiled kernels against plain-numpy oracles (the engine's former code)."""

from __future__ import annotations

import numpy as np
import pytest

from shopsim.envs.kernels import count_in_prefix, first_valid, search_in_segments


def _first_valid_numpy(
    pool: np.ndarray, src: np.ndarray, last: np.ndarray, bought: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The engine's candidate selection before the kernel (sort-based duplicate removal)."""
    b = len(pool)
    order = np.argsort(pool, axis=1, kind="stable")
    sp = np.take_along_axis(pool, order, 1)
    dup_sorted = np.zeros(sp.shape, bool)
    dup_sorted[:, 1:] = sp[:, 1:] == sp[:, :-1]
    dup = np.empty_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, 1)
    is_bought = (pool[:, :, None] == np.where(bought >= 0, bought, -2)[:, None, :]).any(2)
    valid = (pool >= 0) & ~dup & (pool != last[:, None]) & ~is_bought
    rank = np.cumsum(valid, axis=1) - 1
    take = valid & (rank < n)
    cand = np.full((b, n), -1, np.int64)
    csrc = np.zeros((b, n), np.int64)
    r, c = np.nonzero(take)
    cand[r, rank[r, c]] = pool[r, c]
    csrc[r, rank[r, c]] = np.broadcast_to(src, pool.shape)[r, c]
    return cand, csrc


@pytest.mark.parametrize("seed", range(6))
def test_first_valid_equals_the_numpy_selection(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = int(rng.choice([5, 40, 3000]))
    b, p, n = 50, int(rng.integers(5, 80)), int(rng.integers(1, 40))
    pool = rng.integers(-1, n_items, (b, p))
    src = rng.integers(1, 6, p)
    last = rng.integers(-1, n_items, b)
    bought = np.where(rng.random((b, 8)) < 0.4, rng.integers(0, n_items, (b, 8)), -1)
    mark = np.zeros(n_items, np.uint8)
    got = first_valid(pool, src, last, bought, n, mark)
    want = _first_valid_numpy(pool, src, last, bought, n)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert not mark.any()  # the scratch is left zeroed


@pytest.mark.parametrize("seed", range(4))
def test_count_in_prefix_counts_only_the_filled_prefix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b, s, m = 30, 40, 25
    log = rng.integers(-1, 12, (b, s))
    filled = rng.integers(0, s + 5, b)  # beyond the width: the whole row
    query = rng.integers(-1, 12, (b, m))
    got = count_in_prefix(log, filled, query)
    for r in range(b):
        prefix = log[r, : min(filled[r], s)]
        want = [0 if q < 0 else int((prefix == q).sum()) for q in query[r]]
        assert got[r].tolist() == want


@pytest.mark.parametrize("seed", range(6))
def test_search_in_segments_equals_a_global_searchsorted(seed: int) -> None:
    """Keys ``segment·span + offset`` (the catalog's item·span + t and pair keys): searching
    only the query's segment gives np.searchsorted's left position over all keys, including
    empty segments, queries beyond a segment's last key and duplicate keys."""
    rng = np.random.default_rng(seed)
    n_seg, span = int(rng.choice([1, 7, 500])), int(rng.choice([3, 100, 10**6]))
    n_keys = int(rng.integers(0, 2000))
    keys = rng.integers(0, n_seg, n_keys) * span + rng.integers(0, max(span // 4, 1), n_keys)
    keys = np.sort(np.r_[keys, keys[: n_keys // 3]]).astype(np.int64)  # with duplicates
    starts = np.searchsorted(keys, np.arange(n_seg + 1, dtype=np.int64) * span)
    seg = rng.integers(0, n_seg, 3000).astype(np.int64)
    q = seg * span + rng.integers(0, span, 3000)
    got = search_in_segments(keys, starts, seg, q)
    np.testing.assert_array_equal(got, np.searchsorted(keys, q))


def test_search_in_segments_returns_zero_outside_the_segments() -> None:
    keys = np.array([0, 5, 12], np.int64)
    starts = np.searchsorted(keys, np.arange(3, dtype=np.int64) * 10)
    got = search_in_segments(keys, starts, np.array([-1, 2, 1]), np.array([3, 25, 12]))
    np.testing.assert_array_equal(got, [0, 0, 2])
