"""Features of (shopper, item) pairs: one function for model fitting and for every env step.

A shopper context is a batch of padded arrays (``-1`` = padding):

* ``hist`` (B, L): item codes the shopper interacted with, **most recent first**;
* ``hist_ev`` (B, L): their event codes (:data:`~shopsim.evaluation.next_item.EVENT_CODES`);
* ``state`` (B, d): the state encoder's vector of the history (zeros for an empty history);
* ``intent`` (B, M) / ``intent_ev`` (B, M): the hidden rest of the logged session.

Click features (``CLICK_FEATURES``), all computed from train-split tables:

======================  ==========================================================
``score``               cosine(state, item) — the two-tower encoder (text/attributes/ID)
``trans``               log1p(train transitions last item → item)
``cooc``                log1p(train session co-occurrences with the last item)
``same_cat_last``       item's category equals the last item's
``cat_share``           share of the history in the item's category
``revisit``             item already in the history
``pop`` / ``ctr``       log popularity share and logit of the impression CTR, both as of
                        the shopper's time from earlier events only
``price_rel``           log price − mean log price of the history (0 if unknown)
``abs_price_rel``       its absolute value; ``price_known`` flags a known price
``hist_len``            log1p(history length)
``intent_sim``          cosine(item, mean direction of the hidden intent items)
``in_intent``           item is one of the hidden intent items
``intent_cat``          share of the intent in the item's category
``age``                 log1p(hours since the item first appeared), as of the shopper's time
``recent``              log1p(interactions with the item in the 24 hours before that time)
======================  ==========================================================

The intent features carry the real shopper's future into the simulated one: their weights
are *measured* on held-out logs like every other weight (a shopper who later views X is more
likely to click X or its neighbours now).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsim.data.schema import EventCode
from shopsim.envs.kernels import search_in_segments
from shopsim.envs.model.catalog import Catalog

CLICK_FEATURES: tuple[str, ...] = (
    "score",
    "trans",
    "cooc",
    "same_cat_last",
    "cat_share",
    "revisit",
    "pop",
    "ctr",
    "price_rel",
    "abs_price_rel",
    "price_known",
    "hist_len",
    "intent_sim",
    "in_intent",
    "intent_cat",
    "age",
    "recent",
)
ENCODER_FEATURES = frozenset({"score", "intent_sim"})
"""Features that need the item/state vectors (dropped by the metadata-only model)."""
INTENT_FEATURES = frozenset({"intent_sim", "in_intent", "intent_cat"})
POPULARITY_FEATURES = frozenset({"pop", "ctr"})

PURCHASE_FEATURES: tuple[str, ...] = (
    "buy_rate",
    "log_price",
    "price_known",
    "price_rel",
    "revisit",
    "hist_len",
    "carted",
    "intent_buys",
)
CAND_FEATURES: tuple[str, ...] = (
    "pop",
    "ctr",
    "buy_rate",
    "log_price",
    "price_rel",
    "same_cat_last",
    "revisit",
    "trans",
    "cooc",
    "src_embedding",
    "src_transition",
    "src_cooccurrence",
    "src_popular",
    "src_explore",
    "item_shown",
    "cat_shown",
)
"""What the agent sees per candidate (never the hidden intent). ``item_shown`` / ``cat_shown``
are log(1 + times the item / an item of its category was shown earlier in the episode): what
the shop itself showed, and what the what-if dynamics of :class:`~shopsim.envs.engine.ShopperConfig`
(``fatigue``, ``exposure_intent``) act on. The engine fills them after every step."""

CAND_FROM_CLICK: tuple[str, ...] = ("pop", "ctr", "price_rel", "same_cat_last", "revisit", "trans", "cooc")
"""Candidate features copied from the candidate's click features (same name, same value)."""
CAND_SOURCES: tuple[str, ...] = (
    "src_embedding",
    "src_transition",
    "src_cooccurrence",
    "src_popular",
    "src_explore",
)
"""One-hot retrieval source, in the order of :data:`shopsim.envs.engine.SOURCES` (source code 1..5)."""

LOG_COUNT_MAX = 30.0
"""Bound of the log-scale candidate features that have no bound by construction: log1p of a
count or price of e^30 ≈ 1e13, far beyond any shop log (REES46: log price ≤ 7.9, log1p
transitions ≤ 3.2, log popularity ≥ −10). Values beyond it are clipped in ``cand_feat`` only
(the click model always sees the exact values)."""
LOGIT_MAX = 14.0
"""Bound of the logit features: their rates are clipped to [1e-6, 1 − 1e-6], |logit| ≤ 13.82."""
CAND_BOUNDS: dict[str, tuple[float, float]] = {
    "pop": (-LOG_COUNT_MAX, 0.0),  # log((c + 1) / (C + I)) ≤ 0; clipped below
    "ctr": (-LOGIT_MAX, LOGIT_MAX),
    "buy_rate": (-LOGIT_MAX, LOGIT_MAX),
    "log_price": (0.0, LOG_COUNT_MAX),  # log1p(price ≥ 0); clipped above
    "price_rel": (-LOG_COUNT_MAX, LOG_COUNT_MAX),  # difference of two log prices; clipped
    "same_cat_last": (0.0, 1.0),
    "revisit": (0.0, 1.0),
    "trans": (0.0, LOG_COUNT_MAX),  # log1p(count); clipped above
    "cooc": (0.0, LOG_COUNT_MAX),  # log1p(count); clipped above
    **dict.fromkeys(CAND_SOURCES, (0.0, 1.0)),
    "item_shown": (0.0, 6.0),  # log1p of a uint8 count ≤ 255: ≤ 5.55
    "cat_shown": (0.0, 12.0),  # log1p of a uint16 count ≤ 65535: ≤ 11.09
}
"""Finite (low, high) of every ``cand_feat`` column (the observation space's Box); masked
candidates are all zeros, inside every bound."""
CAND_CLIPPED: tuple[str, ...] = ("pop", "log_price", "price_rel", "trans", "cooc")
"""The columns whose bound is not guaranteed by construction: :func:`candidate_features` clips them."""

CLICK: dict[str, int] = {name: i for i, name in enumerate(CLICK_FEATURES)}
"""Column of each click feature in :func:`click_features`' output."""
PURCHASE: dict[str, int] = {name: i for i, name in enumerate(PURCHASE_FEATURES)}
"""Column of each purchase feature in :func:`purchase_features`' output."""
CAND: dict[str, int] = {name: i for i, name in enumerate(CAND_FEATURES)}
"""Column of each candidate feature in :func:`candidate_features`' output (``cand_feat``)."""


@dataclass
class Context:
    """A batch of shopper contexts (see the module docstring for the layout)."""

    hist: np.ndarray
    hist_ev: np.ndarray
    state: np.ndarray
    intent: np.ndarray
    intent_ev: np.ndarray
    time: np.ndarray | None = None
    """(B,) the shopper's time (seconds since the log's start): popularity and CTR are taken as
    of this time, from earlier events only. None: the train-split totals."""
    price: tuple[np.ndarray, np.ndarray] | None = None
    """Cached (mean log price of the history, history has a price); see :func:`history_price`."""

    def rows(self, idx: np.ndarray) -> Context:
        price = None if self.price is None else (self.price[0][idx], self.price[1][idx])
        time = None if self.time is None else self.time[idx]
        return Context(
            self.hist[idx],
            self.hist_ev[idx],
            self.state[idx],
            self.intent[idx],
            self.intent_ev[idx],
            time,
            price,
        )


def _transitions(cat: Catalog, hist: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log1p train transitions last item → item and log1p train session co-occurrences of the
    last item with the item: one lookup in the catalog's sorted pair index.
    hist (B, L), items (B, K) → two (B, K) arrays; padding (-1) counts 0."""
    keys, vals = cat.pairs
    if len(keys) == 0:
        z = np.zeros(items.shape, np.float32)
        return z, z
    n = cat.n_items
    q = np.empty((*items.shape, 2), np.int64)
    q[..., 0] = hist[:, :1] * n + items
    q[..., 1] = q[..., 0] + n * n
    # search only the source item's own keys (equal to np.searchsorted over all of them);
    # padded sources (-1) are masked below
    seg = np.empty_like(q)
    seg[..., 0] = np.broadcast_to(hist[:, :1], items.shape)
    seg[..., 1] = seg[..., 0] + n
    pos = search_in_segments(keys, cat.pair_starts, seg.ravel(), q.ravel()).reshape(q.shape)
    pos = np.minimum(pos, len(keys) - 1)
    ok = (keys[pos] == q) & ((items >= 0) & (hist[:, :1] >= 0))[..., None]
    c = np.where(ok, vals[pos], 0.0)
    return np.log1p(c[..., 0]), np.log1p(c[..., 1])


def _price(cat: Catalog, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    return ctx.price if ctx.price is not None else history_price(cat, ctx.hist)


def history_price(cat: Catalog, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B,) mean log price of the priced history items, and whether there is one."""
    safe = np.maximum(hist, 0)
    known = (hist >= 0) & cat.has_price[safe]
    n = known.sum(1)
    mean = np.where(n > 0, (cat.log_price[safe] * known).sum(1) / np.maximum(n, 1), 0.0)
    return mean, n > 0


def row_keys(rows: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    """Sorted keys row·width + value: a per-row multiset of values."""
    return np.sort(rows.astype(np.int64) * width + values)


def _count(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """How often each key of ``q`` occurs in the sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(q.shape, np.float32)
    return (np.searchsorted(keys, q, "right") - np.searchsorted(keys, q, "left")).astype(np.float32)


def member(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Whether each key of ``q`` occurs in the sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(q.shape, bool)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[pos] == q


def click_features(cat: Catalog, ctx: Context, items: np.ndarray) -> np.ndarray:
    """(B, K, F) click features of ``items`` (B, K) for each shopper; padded items give zeros.

    Per-row sets (history, intent) are looked up through sorted ``row·width + value`` keys, so
    the cost grows with the items actually present, not with the padded widths.
    """
    b, k = items.shape
    n_items = cat.n_items
    out = np.zeros((b, k, len(CLICK_FEATURES)), dtype=np.float32)
    valid = items >= 0
    it = np.maximum(items, 0)
    rows = np.arange(b)[:, None]
    vec = cat.vectors0[items]  # (B, K, d); padding gathers zeros
    icat = cat.category[it]
    n_cat = cat.n_categories
    last = ctx.hist[:, :1]
    out[..., CLICK["score"]] = (vec @ ctx.state[:, :, None])[..., 0]
    out[..., CLICK["trans"]], out[..., CLICK["cooc"]] = _transitions(cat, ctx.hist, items)
    lastcat = np.where(last >= 0, cat.category[np.maximum(last, 0)], 0)
    out[..., CLICK["same_cat_last"]] = (icat == lastcat) & (icat > 0)
    hr, hc = np.nonzero(ctx.hist >= 0)
    hitems = ctx.hist[hr, hc]
    nh = np.bincount(hr, minlength=b)
    hcat = cat.category[hitems]
    known = hcat > 0
    item_q = rows * n_items + items
    cat_q = rows * n_cat + icat
    out[..., CLICK["cat_share"]] = (
        np.where(icat > 0, _count(row_keys(hr[known], hcat[known], n_cat), cat_q), 0.0)
        / np.maximum(nh, 1)[:, None]
    )
    out[..., CLICK["revisit"]] = member(row_keys(hr, hitems, n_items), item_q)
    if ctx.time is None:
        out[..., CLICK["pop"]], out[..., CLICK["ctr"]] = cat.popularity[it], cat.ctr[it]
    else:
        timed = cat.popularity_at(items, ctx.time)
        for name, col in zip(("pop", "ctr", "age", "recent"), timed, strict=True):
            out[..., CLICK[name]] = col
    hp, hknown = _price(cat, ctx)
    both = cat.has_price[it] & hknown[:, None]
    rel = np.where(both, cat.log_price[it] - hp[:, None], 0.0)
    out[..., CLICK["price_rel"]] = rel
    out[..., CLICK["abs_price_rel"]] = np.abs(rel)
    out[..., CLICK["price_known"]] = cat.has_price[it]
    out[..., CLICK["hist_len"]] = np.log1p(nh)[:, None]
    ir, ic = np.nonzero(ctx.intent >= 0)
    if len(ir):
        iitems = ctx.intent[ir, ic]
        # cosine to the intent's mean direction: one (K, d)·d product per shopper
        starts = np.flatnonzero(np.r_[True, ir[1:] != ir[:-1]])
        cent = np.add.reduceat(cat.vectors[iitems], starts, axis=0)
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        rows_i = ir[starts]
        out[rows_i, :, CLICK["intent_sim"]] = (vec[rows_i] @ cent[:, :, None])[..., 0]
        out[..., CLICK["in_intent"]] = member(row_keys(ir, iitems, n_items), item_q)
        icats = cat.category[iitems]
        ikn = icats > 0
        ni = np.bincount(ir, minlength=b)
        out[..., CLICK["intent_cat"]] = (
            np.where(icat > 0, _count(row_keys(ir[ikn], icats[ikn], n_cat), cat_q), 0.0)
            / np.maximum(ni, 1)[:, None]
        )
    out[~valid] = 0.0
    return out


def purchase_features(cat: Catalog, ctx: Context, items: np.ndarray) -> np.ndarray:
    """(B, K, F) purchase features of clicked ``items`` (B, K)."""
    b, k = items.shape
    out = np.zeros((b, k, len(PURCHASE_FEATURES)), dtype=np.float32)
    it = np.maximum(items, 0)
    hmask = ctx.hist >= 0
    out[..., PURCHASE["buy_rate"]] = cat.buy_rate[it]
    out[..., PURCHASE["log_price"]] = cat.log_price[it]
    out[..., PURCHASE["price_known"]] = cat.has_price[it]
    hp, hknown = _price(cat, ctx)
    out[..., PURCHASE["price_rel"]] = np.where(
        cat.has_price[it] & hknown[:, None], cat.log_price[it] - hp[:, None], 0.0
    )
    out[..., PURCHASE["revisit"]] = (items[:, :, None] == np.where(hmask, ctx.hist, -2)[:, None, :]).any(2)
    out[..., PURCHASE["hist_len"]] = np.log1p(hmask.sum(1))[:, None]
    out[..., PURCHASE["carted"]] = (ctx.hist_ev == EventCode.CART).any(1)[:, None]
    out[..., PURCHASE["intent_buys"]] = ((ctx.intent_ev == EventCode.PURCHASE) & (ctx.intent >= 0)).any(1)[
        :, None
    ]
    out[items < 0] = 0.0
    return out


def candidate_features(cat: Catalog, phi: np.ndarray, cand: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(B, N, F) agent-visible candidate features (:data:`CAND_FEATURES`), built from the
    candidates' click features ``phi`` (B, N, F_click) — never their hidden-intent columns."""
    b, n = cand.shape
    out = np.empty((b, n, len(CAND_FEATURES)), dtype=np.float32)
    it = np.maximum(cand, 0)
    for name in CAND_FROM_CLICK:
        out[..., CAND[name]] = phi[..., CLICK[name]]
    out[..., CAND["buy_rate"]] = cat.buy_rate[it]
    out[..., CAND["log_price"]] = cat.log_price[it]
    for s, name in enumerate(CAND_SOURCES, start=1):
        out[..., CAND[name]] = src == s
    # exposure counts: filled by the engine (ShopperBatch.refresh_exposure)
    out[..., CAND["item_shown"]] = 0.0
    out[..., CAND["cat_shown"]] = 0.0
    for name in CAND_CLIPPED:
        lo, hi = CAND_BOUNDS[name]
        np.clip(out[..., CAND[name]], lo, hi, out=out[..., CAND[name]])
    out[cand < 0] = 0.0
    return out
