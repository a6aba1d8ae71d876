"""A generated shop of any size: an item table and an ``events`` log that ``prepare`` reads.

:func:`write_generated_shop` writes ``items.csv`` (item_id, category, brand, price, optional
title) and ``events.csv`` (session_id, user_id, item_id, timestamp, event, price) in blocks of
sessions, so memory stays bounded by the item arrays and one block whatever the number of
events. Prepare them with ``shopsim data prepare DIR/events.csv --format events --items
DIR/items.csv`` (add ``--text-cols title`` for the text), or :func:`generated_prepare_options`.

The shop's structure, all seeded:

* **categories** with power-law sizes (Zipf, exponent 1.1), about 200 items each on average;
* **brands**, a handful per category, themselves power-law popular;
* **prices** log-normal per category (each category its own median and spread);
* **popularity**: a power law (exponent 1.0) over a random order of the items in a category;
* **sessions**: lengths 1 + geometric (mean ~6 views); each view stays in the session's current
  category with probability 0.85 (else a new category ∝ its popularity); with probability 0.3
  the next item is one of five fixed *related* items of the previous one (so transitions and
  co-occurrences are sparse but far from random), else an item of the category ∝ popularity;
* **funnel**: each view adds a ``cart`` with probability 0.08, a cart a ``purchase`` with
  probability 0.35, seconds apart;
* **time**: sessions start uniformly over 30 days, views 5–120 s apart (one session never
  spans the 30-minute inactivity gap).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from shopsim.data.formats import PrepareOptions
from shopsim.errors import ShopsimError

ITEMS_PER_CATEGORY = 200
"""Average category size (the number of categories is ``items // ITEMS_PER_CATEGORY``, ≥ 5)."""
STAY_IN_CATEGORY = 0.85
RELATED_NEXT = 0.3
N_RELATED = 5
CART_RATE = 0.08
PURCHASE_RATE = 0.35
MEAN_EXTRA_VIEWS = 5.0
MAX_VIEWS = 60
DAYS = 30
START = np.datetime64("2024-01-01T00:00:00")


@dataclass
class GeneratedShop:
    """What :func:`write_generated_shop` wrote."""

    items_path: Path
    events_path: Path
    n_items: int
    n_events: int
    n_sessions: int
    with_text: bool


@dataclass
class _Items:
    category: np.ndarray  # (I,) int64 category code 0..C-1
    order: np.ndarray  # item codes sorted by (category, popularity rank)
    starts: np.ndarray  # (C + 1,) segment starts of each category in ``order``
    key: np.ndarray  # (I,) increasing: category + cumulative popularity share within it
    rank: np.ndarray  # (I,) position of each item inside its category segment
    cat_weight: np.ndarray  # (C,) cumulative category popularity share


def _zipf_weights(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return w / w.sum()


def _make_items(n_items: int, rng: np.random.Generator) -> tuple[_Items, dict[str, np.ndarray]]:
    n_cat = max(5, n_items // ITEMS_PER_CATEGORY)
    category = rng.choice(n_cat, size=n_items, p=_zipf_weights(n_cat, 1.1))
    category = np.sort(category)  # item code order = category order (ids are shuffled below)
    starts = np.searchsorted(category, np.arange(n_cat + 1))
    sizes = np.diff(starts)
    rank = np.arange(n_items) - starts[category]
    pop = 1.0 / (rank + 1.0)  # power law inside each category, by rank
    seg_sum = np.add.reduceat(pop, starts[:-1][sizes > 0])
    cat_sum = np.zeros(n_cat)
    cat_sum[sizes > 0] = seg_sum
    share = pop / cat_sum[category]
    cum = np.cumsum(share)
    cum_before = np.zeros(n_cat)
    cum_before[sizes > 0] = cum[starts[:-1][sizes > 0]] - share[starts[:-1][sizes > 0]]
    key = category + np.minimum(cum - cum_before[category], 1.0)
    key[starts[1:][sizes > 0] - 1] = category[starts[1:][sizes > 0] - 1] + 1.0  # exact segment ends
    cat_pop = cat_sum * rng.lognormal(0.0, 0.5, n_cat)
    cat_weight = np.cumsum(cat_pop / cat_pop.sum())
    cat_weight[-1] = 1.0
    mu = rng.normal(3.0, 1.0, n_cat)
    sigma = rng.uniform(0.2, 0.8, n_cat)
    price = np.round(np.exp(mu[category] + sigma[category] * rng.standard_normal(n_items)), 2)
    n_brands = 1 + rng.poisson(4, n_cat)
    brand_in_cat = np.minimum(rng.zipf(1.6, n_items) - 1, n_brands[category] - 1)
    attrs = {"category": category, "brand_in_cat": brand_in_cat, "price": np.maximum(price, 0.01)}
    return _Items(category, np.arange(n_items), starts, key, rank, cat_weight), attrs


def _item_table(codes_to_id: np.ndarray, attrs: dict[str, np.ndarray], with_text: bool) -> pa.Table:
    cat = attrs["category"]
    cat_s = np.char.add("c", cat.astype(str))
    brand = np.char.add(
        np.char.add("b", cat.astype(str)), np.char.add("_", attrs["brand_in_cat"].astype(str))
    )
    cols: dict[str, object] = {
        "item_id": codes_to_id,
        "category": cat_s,
        "brand": brand,
        "price": attrs["price"],
    }
    if with_text:
        words = np.array(["classic", "new", "pro", "mini", "max", "eco", "soft", "smart", "lite", "plus"])
        w = words[(np.arange(len(cat)) * 7 + cat) % len(words)]
        cols["title"] = np.char.add(np.char.add(np.char.add(w, " "), brand), np.char.add(" ", cat_s))
    return pa.table(cols)


def _draw_items(items: _Items, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item of each category in ``cats``, ∝ popularity within the category."""
    u = rng.random(len(cats))
    pos = np.searchsorted(items.key, cats + u, side="left")
    return np.minimum(pos, len(items.key) - 1)


def _related(items: _Items, prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the ``N_RELATED`` fixed related items of each ``prev`` (same category, nearby rank)."""
    c = items.category[prev]
    size = items.starts[c + 1] - items.starts[c]
    k = rng.integers(0, N_RELATED, len(prev))
    r = (items.rank[prev] + 1 + 3 * k) % np.maximum(size, 1)
    return items.starts[c] + r


def _session_block(
    items: _Items, n_sessions: int, first_session: int, n_users: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The events of ``n_sessions`` sessions, in session then event order."""
    length = np.minimum(rng.geometric(1.0 / (1.0 + MEAN_EXTRA_VIEWS), n_sessions), MAX_VIEWS)
    cat = np.searchsorted(items.cat_weight, rng.random(n_sessions))
    cat = np.minimum(cat, len(items.cat_weight) - 1)
    prev = _draw_items(items, cat, rng)
    t = rng.integers(0, DAYS * 86_400, n_sessions)
    sess_ids, times, its = [np.arange(n_sessions)], [t.copy()], [prev.copy()]
    for j in range(1, int(length.max()) if n_sessions else 0):
        alive = np.flatnonzero(length > j)
        if len(alive) == 0:
            break
        p = prev[alive]
        switch = rng.random(len(alive)) > STAY_IN_CATEGORY
        c = items.category[p]
        new_c = np.minimum(
            np.searchsorted(items.cat_weight, rng.random(len(alive))), len(items.cat_weight) - 1
        )
        c = np.where(switch, new_c, c)
        nxt = _draw_items(items, c, rng)
        rel = ~switch & (rng.random(len(alive)) < RELATED_NEXT)
        nxt = np.where(rel, _related(items, p, rng), nxt)
        t[alive] += rng.integers(5, 121, len(alive))
        prev[alive] = nxt
        sess_ids.append(alive)
        times.append(t[alive].copy())
        its.append(nxt)
    s = np.concatenate(sess_ids)
    tt = np.concatenate(times)
    it = np.concatenate(its)
    ev = np.zeros(len(s), np.int8)  # 0 view, 1 cart, 2 purchase
    cart = rng.random(len(s)) < CART_RATE
    buy = cart & (rng.random(len(s)) < PURCHASE_RATE)
    s = np.concatenate([s, s[cart], s[buy]])
    it = np.concatenate([it, it[cart], it[buy]])
    tt = np.concatenate([tt, tt[cart] + 3, tt[buy] + 4])
    ev = np.concatenate([ev, np.ones(int(cart.sum()), np.int8), np.full(int(buy.sum()), 2, np.int8)])
    order = np.lexsort((ev, tt, s))
    users = rng.integers(0, max(n_users, 1), n_sessions)
    s = s[order]
    return {
        "session": s + first_session,
        "user": users[s],
        "item": it[order],
        "time": tt[order],
        "event": ev[order],
    }


def write_generated_shop(
    out: Path | str,
    n_items: int,
    n_events: int,
    *,
    seed: int = 0,
    with_text: bool = False,
    block_sessions: int = 200_000,
) -> GeneratedShop:
    """Write a generated shop (see the module docstring) into folder ``out``.

    :param n_items: catalog size I (every item is in ``items.csv``; popular ones get events).
    :param n_events: rows of ``events.csv`` (views, carts and purchases; the last session is cut).
    :param with_text: add a short ``title`` column to the items (``--text-cols title``).
    :param block_sessions: sessions generated and written per block (bounds memory).
    """
    if n_items < 10:
        raise ShopsimError(f"a generated shop needs at least 10 items, not {n_items}")
    if n_events < 1:
        raise ShopsimError(f"a generated shop needs at least 1 event, not {n_events}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items, attrs = _make_items(n_items, rng)
    # item ids are a seeded shuffle of i0..i(I-1), so code order carries no hidden signal
    ids = np.char.add("i", rng.permutation(n_items).astype(str))
    items_path = out / "items.csv"
    shuffle = rng.permutation(n_items)
    table = _item_table(ids, attrs, with_text).take(pa.array(shuffle))
    pacsv.write_csv(table, str(items_path))
    events_path = out / "events.csv"
    names = np.array(["view", "cart", "purchase"])
    price = attrs["price"]
    n_users = max(1, n_events // 20)
    written, sessions = 0, 0
    with pa.OSFile(str(events_path), "wb") as sink:
        first = True
        while written < n_events:
            # ~6.6 events per session: a block just large enough for the rest (bounded by block_sessions)
            want = min(block_sessions, (n_events - written) // 6 + 100)
            blk = _session_block(items, want, sessions, n_users, rng)
            n = min(len(blk["session"]), n_events - written)
            last = int(blk["session"][n - 1]) - sessions + 1
            secs = blk["time"][:n].astype("timedelta64[s]")
            part = pa.table(
                {
                    "session_id": np.char.add("s", blk["session"][:n].astype(str)),
                    "user_id": np.char.add("u", blk["user"][:n].astype(str)),
                    "item_id": ids[blk["item"][:n]],
                    "timestamp": (START + secs).astype(str),
                    "event": names[blk["event"][:n]],
                    "price": price[blk["item"][:n]],
                }
            )
            pacsv.write_csv(part, sink, pacsv.WriteOptions(include_header=first))
            first = False
            written += n
            sessions += last
    return GeneratedShop(items_path, events_path, n_items, written, sessions, with_text)


def generated_prepare_options(shop: GeneratedShop) -> PrepareOptions:
    """The ``prepare`` options of a generated shop (events format, its item table, its text)."""
    return PrepareOptions(
        format="events", items=shop.items_path, text_cols=["title"] if shop.with_text else None
    )


__all__ = ["GeneratedShop", "generated_prepare_options", "write_generated_shop"]
