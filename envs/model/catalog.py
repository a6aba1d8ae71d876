"""The catalog as the simulator sees it: item vectors, attributes and count tables from train.

Everything here is computed from the **train** split only, so features of valid/test events
use earlier data only (the split is by session start time). Neighbour tables are truncated to
the ``M`` strongest neighbours per item; the same truncated tables serve model fitting and the
environment, so the features the response model was fitted on are exactly the ones it sees
at simulation time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from shopsim.data.schema import EVENT_CODES
from shopsim.data.sequences import session_sequences

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
        lo = np.searchsorted(self.act_keys, base)
        hi = np.searchsorted(self.act_keys, q)
        c = hi - lo
        recent = hi - np.searchsorted(self.act_keys, q - np.minimum(tt, window))
        total = np.searchsorted(self.act_times, t)[:, None]
        pop = np.log((c + 1.0) / (total + self.n_items))
        seen_keys = self.imp_keys if len(self.imp_keys) else self.act_keys
        first_pos = np.searchsorted(seen_keys, base)
        first = seen_keys[np.minimum(first_pos, max(len(seen_keys) - 1, 0))] - base if len(seen_keys) else tt
        age_h = np.where((first >= 0) & (first < tt), (tt - first) / 3600.0, 0.0)
        age = np.log1p(age_h).astype(np.float32)
        rec = np.log1p(recent).astype(np.float32)
        if len(self.imp_keys) == 0:
            return pop.astype(np.float32), np.zeros(items.shape, np.float32), age, rec
        shown = np.searchsorted(self.imp_keys, q) - np.searchsorted(self.imp_keys, base)
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
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})
        # cached lookups are rebuilt on load

    @classmethod
    def load(cls, path: Path) -> Catalog:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})


def _pair_index(idx: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = idx.shape[0]
    src = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    dst = idx.reshape(-1).astype(np.int64)
    keep = dst >= 0
    keys = src[keep] * n + dst[keep]
    order = np.argsort(keys, kind="stable")
    return keys[order], cnt.reshape(-1)[keep][order].astype(np.float32)


def _top_m(mat: sparse.csr_matrix, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``m`` (column, value) of a sparse count matrix, -1/0 padded."""
    n = mat.shape[0]
    idx = np.full((n, m), -1, dtype=np.int32)
    cnt = np.zeros((n, m), dtype=np.float32)
    for r in range(n):
        lo, hi = mat.indptr[r], mat.indptr[r + 1]
        if lo == hi:
            continue
        cols, vals = mat.indices[lo:hi], mat.data[lo:hi]
        order = np.lexsort((cols, -vals))[:m]  # ties broken by item code: deterministic
        idx[r, : len(order)] = cols[order]
        cnt[r, : len(order)] = vals[order]
    return idx, cnt


def _embedding_neighbours(vectors: np.ndarray, m: int, chunk: int = 2048) -> np.ndarray:
    """(I, m) nearest other items by cosine, computed in chunks (O(I²d) once, at fit time)."""
    n = len(vectors)
    m_eff = min(m, max(n - 1, 0))
    out = np.full((n, m), -1, dtype=np.int32)
    if m_eff == 0:
        return out
    for s in range(0, n, chunk):
        sims = vectors[s : s + chunk] @ vectors.T
        sims[np.arange(sims.shape[0]), np.arange(s, s + sims.shape[0])] = -np.inf
        part = np.argpartition(-sims, m_eff - 1, axis=1)[:, :m_eff]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[s : s + chunk, :m_eff] = np.take_along_axis(part, order, 1)
    return out


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
    rows, cols = [], []
    for s in seqs:
        u = np.unique(s[-50:])  # long sessions: the recent part, keeps this O(Σ 50²)
        if len(u) > 1:
            a, b = np.meshgrid(u, u)
            keep = a != b
            rows.append(a[keep])
            cols.append(b[keep])
    if rows:
        r, c = np.concatenate(rows), np.concatenate(cols)
        cooc = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
        cooc.sum_duplicates()
    return trans, cooc


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
) -> Catalog:
    """Build the catalog: count tables from the train events, time index from all events.

    :param events: canonical train events.
    :param all_events: every split's events, for popularity/CTR *as of a time* (only earlier
        events are ever counted); defaults to ``events``.
    :param items: canonical items (row order = item codes; must match ``vectors``).
    :param vectors: (I, d) item vectors, rows in ``items`` order.
    :param neighbours: ``M``, neighbours kept per item in each table.
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
    return Catalog(
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
        emb_idx=_embedding_neighbours(vecs, neighbours),
        top_popular=np.argsort(-rates.clicks, kind="stable")[: min(1000, n)].astype(np.int32),
        act_keys=times.act_keys,
        act_times=times.act_times,
        imp_keys=times.imp_keys,
        span=np.array([times.span], np.int64),
        prior_ctr=np.array([rates.prior_ctr]),
        t0=np.array([times.t_min], np.int64),
    )


__all__ = ["CLICK_EVENTS", "EVENT_CODES", "Catalog", "build_catalog"]
