"""The catalog as the simulator sees it: item vectors, attributes and count tables from train.

Everything here is computed from the **train** split only, so features of valid/test events
use earlier data only (the split is by session start time). Neighbour tables are truncated to
the ``M`` strongest neighbours per item; the same truncated tables serve model fitting and the
environment, so the features the response model was fitted on are exactly the ones it sees
at simulation time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from shopsim.data.schema import EVENT_CODES
from shopsim.data.sequences import session_sequences
from shopsim.envs.kernels import search_in_segments

CLICK_EVENTS = ("view", "click", "cart", "purchase")


@dataclass
class Catalog:
    """Item arrays indexed by item code (row ``i`` is ``item_ids[i]``)."""

    item_ids: np.ndarray
    vectors: np.ndarray
    """(I, d) float32 L2-normalised item vectors from the encoder."""
    category: np.ndarray
    """(I,) int32 category code, 0 = unknown."""
    log_price: np.ndarray
    """(I,) float32 log1p(price), 0 where unknown."""
    has_price: np.ndarray
    price: np.ndarray
    """(I,) float32 price, 0 where unknown (revenue counts 0 for unknown prices)."""
    popularity: np.ndarray
    """(I,) float32 log share of train interactions, add-one smoothed (negative sampling,
    the popular source); the click features use :meth:`popularity_at` instead."""
    ctr: np.ndarray
    """(I,) float32 logit of the smoothed train click-through rate (0 without impressions)."""
    buy_rate: np.ndarray
    """(I,) float32 logit of the smoothed train purchase-per-click rate."""
    trans_idx: np.ndarray
    """(I, M) int32 strongest next items (train transitions a → b), -1 padded."""
    trans_cnt: np.ndarray
    cooc_idx: np.ndarray
    """(I, M) int32 strongest same-session co-occurring items, -1 padded."""
    cooc_cnt: np.ndarray
    emb_idx: np.ndarray
    """(I, M) int32 nearest items by vector cosine."""
    top_popular: np.ndarray
    """Item codes by decreasing train popularity (at most 1,000)."""
    act_keys: np.ndarray
    """Sorted ``item·span + t`` of every logged interaction (impression logs: clicks on shown
    items), all splits: popularity *as of time t* counts only the keys before t."""
    act_times: np.ndarray
    imp_keys: np.ndarray
    """Sorted ``item·span + t`` of every impression (empty without impressions)."""
    span: np.ndarray
    """(1,) time range + 2 in seconds (the key stride)."""
    prior_ctr: np.ndarray
    """(1,) train click-through rate of impressions (the CTR prior), 0 without impressions."""
    t0: np.ndarray
    """(1,) first timestamp of the log in seconds (time 0 of the time index)."""
    neighbour_index: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """How ``emb_idx`` was found (exact, or an approximate index and its recall@M): set by
    :func:`build_catalog`, reported in ``simulator.json``; not stored in ``catalog.npz``."""

    @cached_property
    def vectors0(self) -> np.ndarray:
        """``vectors`` with a zero row appended: index -1 (padding) gathers zeros."""
        return np.concatenate([self.vectors, np.zeros((1, self.dim), np.float32)])

    @cached_property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Both count tables as one sorted pair index for O(log) lookups: keys
        ``table·I² + src·I + dst`` (table 0: transitions, 1: co-occurrences) and their counts."""
        tk, tv = _pair_index(self.trans_idx, self.trans_cnt)
        ck, cv = _pair_index(self.cooc_idx, self.cooc_cnt)
        return np.r_[tk, ck + self.n_items**2], np.r_[tv, cv]

    def _item_starts(self, which: str) -> np.ndarray:
        """(I + 1,) where each item's keys start in the sorted ``act_keys`` / ``imp_keys``
        (``which`` = "act" / "imp"): the segments :meth:`popularity_at` searches. Built once."""
        cache = self.__dict__.setdefault("_starts", {})
        if which not in cache:
            keys = self.act_keys if which == "act" else self.imp_keys
            cache[which] = np.searchsorted(
                keys, np.arange(self.n_items + 1, dtype=np.int64) * int(self.span[0])
            )
        return cache[which]

    @cached_property
    def pair_starts(self) -> np.ndarray:
        """(2·I + 1,) where the keys of each (table, source item) start in ``pairs[0]``: segment
        ``table·I + src`` holds the keys in [segment·I, (segment + 1)·I)."""
        n = self.n_items
        return np.searchsorted(self.pairs[0], np.arange(2 * n + 1, dtype=np.int64) * n)

    def popularity_at(
        self, items: np.ndarray, t: np.ndarray, window: int = 86_400
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Time-aware item statistics of ``items`` (B, K) as of times ``t`` (B,), counting
        only events strictly before t.

        :return: popularity log((c + 1) / (C + I)) with c the item's interactions and C all
            interactions; CTR logit((clicks + 10·p) / (impressions + 10)) shrunk to the train
            CTR p (0 without impressions); age log1p(hours since the item was first shown or
            used; 0 if never); recent log1p(interactions in the last ``window`` seconds).
        """
        span = int(self.span[0])
        it = np.maximum(items, 0).astype(np.int64)
        base = it * span
        tt = np.minimum(np.maximum(t, 0), span - 1)[:, None]
        q = base + tt
        # every key of item i lies in [i·span, (i+1)·span): search only the item's own keys
        # (kernels.search_in_segments; equal to np.searchsorted over all keys)
        flat = it.ravel()
        act_start = self._item_starts("act")
        lo = act_start[it]
        hi = search_in_segments(self.act_keys, act_start, flat, q.ravel()).reshape(it.shape)
        c = hi - lo
        back = (q - np.minimum(tt, window)).ravel()
        recent = hi - search_in_segments(self.act_keys, act_start, flat, back).reshape(it.shape)
        total = np.searchsorted(self.act_times, t)[:, None]
        pop = np.log((c + 1.0) / (total + self.n_items))
        seen = "imp" if len(self.imp_keys) else "act"
        seen_keys = self.imp_keys if seen == "imp" else self.act_keys
        first_pos = self._item_starts(seen)[it]
        first = seen_keys[np.minimum(first_pos, max(len(seen_keys) - 1, 0))] - base if len(seen_keys) else tt
        age_h = np.where((first >= 0) & (first < tt), (tt - first) / 3600.0, 0.0)
        age = np.log1p(age_h).astype(np.float32)
        rec = np.log1p(recent).astype(np.float32)
        if len(self.imp_keys) == 0:
            return pop.astype(np.float32), np.zeros(items.shape, np.float32), age, rec
        imp_start = self._item_starts("imp")
        shown = (
            search_in_segments(self.imp_keys, imp_start, flat, q.ravel()).reshape(it.shape) - imp_start[it]
        )
        p = float(self.prior_ctr[0])
        rate = np.clip((c + 10 * p) / (shown + 10), 1e-6, 1 - 1e-6)
        return pop.astype(np.float32), np.log(rate / (1 - rate)).astype(np.float32), age, rec

    @cached_property
    def n_categories(self) -> int:
        """Category codes run 0..n_categories-1 (0 = unknown)."""
        return int(self.category.max()) + 1 if len(self.category) else 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def save(self, path: Path) -> None:
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self) if f.name in _ARRAYS})
        # cached lookups are rebuilt on load

    @classmethod
    def load(cls, path: Path) -> Catalog:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls) if f.name in _ARRAYS})


_ARRAYS = frozenset(f.name for f in fields(Catalog)) - {"neighbour_index"}
"""The fields stored in ``catalog.npz``."""


def _pair_index(idx: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = idx.shape[0]
    src = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    dst = idx.reshape(-1).astype(np.int64)
    keep = dst >= 0
    keys = src[keep] * n + dst[keep]
    order = np.argsort(keys, kind="stable")
    return keys[order], cnt.reshape(-1)[keep][order].astype(np.float32)


def _top_m(mat: sparse.csr_matrix, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``m`` (column, value) of a sparse count matrix, -1/0 padded; ties broken
    by item code (deterministic). One sort over all stored entries, no loop over rows."""
    n = mat.shape[0]
    idx = np.full((n, m), -1, dtype=np.int32)
    cnt = np.zeros((n, m), dtype=np.float32)
    counts = np.diff(mat.indptr)
    if m == 0 or counts.sum() == 0:
        return idx, cnt
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    cols, vals = mat.indices, mat.data
    order = np.lexsort((cols, -vals, rows))
    rank = np.arange(len(order), dtype=np.int64) - np.repeat(mat.indptr[:-1].astype(np.int64), counts)
    keep = rank < m
    sel = order[keep]
    r, k = rows[sel], rank[keep]
    idx[r, k] = cols[sel]
    cnt[r, k] = vals[sel]
    return idx, cnt


EXACT_NEIGHBOURS_MAX = 50_000
"""Catalogs of at most this many items get exact embedding neighbours (O(I²d), chunked); larger
ones an approximate inverted-file index (faiss IVF-Flat, inner product), whose recall@M against
exact search on a seeded sample of items is measured and reported."""

RECALL_SAMPLE = 1_000
"""Query items of the recall measurement of the approximate index."""


def _exact_neighbours(
    vectors: np.ndarray, m: int, rows: np.ndarray | None = None, chunk: int = 2048
) -> np.ndarray:
    """(len(rows), m) nearest other items by cosine of ``rows`` (default all), exact, in chunks."""
    n = len(vectors)
    rows = np.arange(n) if rows is None else rows
    m_eff = min(m, max(n - 1, 0))
    out = np.full((len(rows), m), -1, dtype=np.int32)
    if m_eff == 0:
        return out
    for s in range(0, len(rows), chunk):
        q = rows[s : s + chunk]
        sims = vectors[q] @ vectors.T
        sims[np.arange(len(q)), q] = -np.inf
        part = np.argpartition(-sims, m_eff - 1, axis=1)[:, :m_eff]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[s : s + chunk, :m_eff] = np.take_along_axis(part, order, 1)
    return out


def _approx_neighbours(
    vectors: np.ndarray, m: int, *, seed: int = 0, nprobe: int = 16, chunk: int = 65_536
) -> tuple[np.ndarray, dict[str, Any]]:
    """(I, m) approximate nearest other items by inner product (faiss IVF-Flat) and its report."""
    import faiss

    n, d = vectors.shape
    nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
    quant = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train = vectors[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))]
    index.cp.seed = seed
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    index.nprobe = min(nprobe, nlist)
    out = np.full((n, m), -1, dtype=np.int32)
    for s in range(0, n, chunk):
        q = np.ascontiguousarray(vectors[s : s + chunk], dtype=np.float32)
        _, found = index.search(q, m + 1)
        own = found == np.arange(s, s + len(q))[:, None]
        found = np.where(own, -1, found)
        # push the valid neighbours left (self and faiss's -1 padding removed), keep m
        valid = found >= 0
        rank = np.cumsum(valid, axis=1) - 1
        keep = valid & (rank < m)
        r, c = np.nonzero(keep)
        block = np.full((len(q), m), -1, dtype=np.int32)
        block[r, rank[r, c]] = found[r, c]
        out[s : s + chunk] = block
    queries = np.sort(rng.choice(n, min(n, RECALL_SAMPLE), replace=False))
    exact = _exact_neighbours(vectors, m, queries)
    report = {
        "kind": "approximate",
        "index": f"faiss IndexIVFFlat (inner product, nlist {nlist}, nprobe {index.nprobe})",
        "recall_at_m": neighbour_recall(out[queries], exact),
        "recall_queries": len(queries),
    }
    return out, report


def neighbour_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact neighbours (≥ 0 entries) that ``approx`` also found."""
    hits, total = 0, 0
    for a, e in zip(approx, exact, strict=True):
        e = e[e >= 0]
        hits += len(np.intersect1d(a[a >= 0], e))
        total += len(e)
    return round(hits / total, 4) if total else 1.0


def embedding_neighbours(
    vectors: np.ndarray, m: int, *, exact_max: int = EXACT_NEIGHBOURS_MAX, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """(I, m) nearest other items by cosine and a report of how they were found: exact up to
    ``exact_max`` items, an approximate index above it (with its measured recall@m)."""
    n = len(vectors)
    if n <= exact_max or min(m, n - 1) <= 0:
        return _exact_neighbours(vectors, m), {"kind": "exact", "exact_max": exact_max}
    out, report = _approx_neighbours(vectors, m, seed=seed)
    report["exact_max"] = exact_max
    return out, report


def event_seconds(ts: pd.Series | np.ndarray) -> np.ndarray:
    """Timestamps as int64 seconds (datetimes) or as they are (integer order keys)."""
    arr = np.asarray(ts)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[s]").astype(np.int64)
    return arr.astype(np.int64)


def _category_codes(items: pd.DataFrame) -> np.ndarray:
    """(I,) int32 category codes 1.. in order of first appearance; the empty category (unknown) is 0."""
    cat = items["category"].astype("string").fillna("")
    cat_codes = pd.factorize(cat)[0].astype(np.int32) + 1
    uniques = pd.factorize(cat)[1]
    if "" in set(uniques):
        empty = int(np.flatnonzero(uniques == "")[0]) + 1
        cat_codes = np.where(cat_codes == empty, 0, cat_codes)
    return cat_codes


def _prices(events: pd.DataFrame, items: pd.DataFrame, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(I,) float64 prices (0 where unknown) and whether each is known. Items without a catalog
    price take the median logged price of the item, if any."""
    price = pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=np.float64)
    ev_price = events.dropna(subset=["price"]).groupby("item_id")["price"].median()
    # pandas-stubs type Index.map without the Series mapping it accepts
    fill = index.map(ev_price).to_numpy(dtype=np.float64, na_value=np.nan)  # type: ignore[arg-type]
    price = np.where(np.isnan(price), fill, price)
    has_price = ~np.isnan(price) & (price > 0)
    return np.where(has_price, price, 0.0), has_price


def _item_counts(events: pd.DataFrame, index: pd.Index) -> np.ndarray:
    """(I,) float64 number of ``events`` per item (items not in ``index`` are dropped)."""
    codes = index.get_indexer(pd.Index(events["item_id"]))
    return np.bincount(codes[codes >= 0], minlength=len(index)).astype(np.float64)


@dataclass
class _Rates:
    clicks: np.ndarray
    """(I,) interactions per item (every click event type)."""
    popularity: np.ndarray
    ctr: np.ndarray
    buy_rate: np.ndarray
    prior_ctr: float


def _rates(events: pd.DataFrame, index: pd.Index) -> _Rates:
    """Per-item train popularity, CTR (impression logs) and purchase rate, each smoothed."""
    n = len(index)
    interacting = events[events["event"].isin(CLICK_EVENTS)]
    clicks = _item_counts(interacting, index)
    buys = _item_counts(interacting[interacting["event"] == "purchase"], index)
    shown = _item_counts(events[events["event"] == "impression"], index)
    clicked = _item_counts(events[(events["event"] == "click") & events["slate_id"].notna()], index)
    popularity = np.log((clicks + 1.0) / (clicks.sum() + n))
    if shown.sum() > 0:
        prior = clicked.sum() / shown.sum()
        rate = (clicked + 10 * prior) / (shown + 10)  # shrunk towards the global CTR
        ctr = np.log(rate / (1 - rate))
    else:
        ctr = np.zeros(n)
    total_rate = (buys.sum() + 1) / (clicks.sum() + 2)
    b_rate = (buys + 5 * total_rate) / (clicks + 5)
    b_rate = np.clip(b_rate, 1e-6, 1 - 1e-6)
    buy_rate = np.log(b_rate / (1 - b_rate))
    prior_ctr = float(clicked.sum() / shown.sum()) if shown.sum() > 0 else 0.0
    return _Rates(clicks, popularity, ctr, buy_rate, prior_ctr)


def _pair_counts(events: pd.DataFrame, index: pd.Index) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """(I, I) train transition counts a → b and same-session co-occurrence counts."""
    n = len(index)
    trans = sparse.csr_matrix((n, n), dtype=np.float64)
    cooc = sparse.csr_matrix((n, n), dtype=np.float64)
    seqs = list(session_sequences(events, index).values())
    if not seqs:
        return trans, cooc
    src = np.concatenate([s[:-1] for s in seqs])
    dst = np.concatenate([s[1:] for s in seqs])
    trans = sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    trans.sum_duplicates()
    r, c = _session_pairs(seqs, tail=50)  # long sessions: the recent part, O(Σ 50²)
    if len(r):
        cooc = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
        cooc.sum_duplicates()
    return trans, cooc


def _session_pairs(seqs: list[np.ndarray], tail: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (a, b), a ≠ b, of distinct items among the last ``tail`` items of each
    session, vectorised over sessions (the same multiset as a per-session meshgrid)."""
    if not seqs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    items = np.concatenate(seqs).astype(np.int64)
    sess = np.repeat(np.arange(len(seqs), dtype=np.int64), lens)
    pos_from_end = np.repeat(np.cumsum(lens), lens) - np.arange(len(items))  # 1 = last item
    keep = pos_from_end <= tail
    items, sess = items[keep], sess[keep]
    order = np.lexsort((items, sess))
    items, sess = items[order], sess[order]
    first = np.r_[True, (sess[1:] != sess[:-1]) | (items[1:] != items[:-1])]
    items, sess = items[first], sess[first]  # distinct items per session, sorted
    size = np.bincount(sess, minlength=len(seqs))
    start = np.cumsum(size) - size
    k = size[sess]  # group size of each element
    total = int(k.sum())  # Σ over sessions of size²
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    elem = np.repeat(np.arange(len(items)), k)  # row element, repeated once per partner
    elem_start = np.repeat(np.cumsum(k) - k, k)
    partner = start[sess[elem]] + (np.arange(total) - elem_start)
    ne = partner != elem
    return items[elem[ne]], items[partner[ne]]


@dataclass
class _TimeIndex:
    act_keys: np.ndarray
    act_times: np.ndarray
    imp_keys: np.ndarray
    span: int
    t_min: int


def _time_index(every: pd.DataFrame, index: pd.Index) -> _TimeIndex:
    """Sorted ``item·span + t`` keys of interactions (impression logs: clicks on shown items)
    and of impressions over all splits: features at time t count only events strictly before t."""
    secs = event_seconds(every["timestamp"])
    t_min = int(secs.min()) if len(secs) else 0
    span = int(secs.max()) - t_min + 2 if len(secs) else 2
    rel = secs - t_min
    codes_all = index.get_indexer(pd.Index(every["item_id"]))
    ev_all = every["event"].to_numpy()
    is_imp = ev_all == "impression"
    if is_imp.any():
        act = (ev_all == "click") & every["slate_id"].notna().to_numpy() & (codes_all >= 0)
    else:
        act = np.isin(ev_all, CLICK_EVENTS) & (codes_all >= 0)
    imp = is_imp & (codes_all >= 0)
    return _TimeIndex(
        act_keys=np.sort(codes_all[act].astype(np.int64) * span + rel[act]),
        act_times=np.sort(rel[act]),
        imp_keys=np.sort(codes_all[imp].astype(np.int64) * span + rel[imp]),
        span=span,
        t_min=t_min,
    )


def build_catalog(
    events: pd.DataFrame,
    items: pd.DataFrame,
    vectors: np.ndarray,
    *,
    neighbours: int = 50,
    all_events: pd.DataFrame | None = None,
    exact_max: int = EXACT_NEIGHBOURS_MAX,
) -> Catalog:
    """Build the catalog: count tables from the train events, time index from all events.

    :param events: canonical train events.
    :param all_events: every split's events, for popularity/CTR *as of a time* (only earlier
        events are ever counted); defaults to ``events``.
    :param items: canonical items (row order = item codes; must match ``vectors``).
    :param vectors: (I, d) item vectors, rows in ``items`` order.
    :param neighbours: ``M``, neighbours kept per item in each table.
    :param exact_max: largest catalog with exact embedding neighbours (above it: an approximate
        index, its recall in :attr:`Catalog.neighbour_index`).
    """
    n = len(items)
    index = pd.Index(items["item_id"])
    price, has_price = _prices(events, items, index)
    rates = _rates(events, index)
    trans, cooc = _pair_counts(events, index)
    times = _time_index(events if all_events is None else all_events, index)
    trans_idx, trans_cnt = _top_m(trans.tocsr(), neighbours)
    cooc_idx, cooc_cnt = _top_m(cooc.tocsr(), neighbours)
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    emb_idx, emb_report = embedding_neighbours(vecs, neighbours, exact_max=exact_max)
    cat = Catalog(
        item_ids=np.asarray(items["item_id"]).astype(str),
        vectors=vecs,
        category=_category_codes(items),
        log_price=np.log1p(price).astype(np.float32),
        has_price=has_price,
        price=price.astype(np.float32),
        popularity=rates.popularity.astype(np.float32),
        ctr=rates.ctr.astype(np.float32),
        buy_rate=rates.buy_rate.astype(np.float32),
        trans_idx=trans_idx,
        trans_cnt=trans_cnt,
        cooc_idx=cooc_idx,
        cooc_cnt=cooc_cnt,
        emb_idx=emb_idx,
        top_popular=np.argsort(-rates.clicks, kind="stable")[: min(1000, n)].astype(np.int32),
        act_keys=times.act_keys,
        act_times=times.act_times,
        imp_keys=times.imp_keys,
        span=np.array([times.span], np.int64),
        prior_ctr=np.array([rates.prior_ctr]),
        t0=np.array([times.t_min], np.int64),
    )
    cat.neighbour_index = emb_report
    return cat


__all__ = [
    "CLICK_EVENTS",
    "EVENT_CODES",
    "EXACT_NEIGHBOURS_MAX",
    "Catalog",
    "build_catalog",
    "embedding_neighbours",
    "neighbour_recall",
]
