"""The shop's own evidence for an item shown to a shopper: what a merchandiser can check.

Every reason is read from tables the simulator already measured on the **train** split
(:class:`~shopsim.envs.model.catalog.Catalog`), never from the simulated shopper's hidden
intent (those reasons are the shopper model's, and labelled simulator-only there):

* **similar to your history** — the history items nearest to the item in the encoder's space
  (cosine of the L2-normalised item vectors), exact over the whole history;
* **shared attributes** — category in common with the history (how many history items), and
  the price band (train price quintiles) in common;
* **bought/viewed together** — train transitions *history item → item* and same-session
  co-occurrences, with their lift: the share of the history item's stored pairs that go to
  this item over the item's share of train interactions. The catalog keeps the ``M`` strongest
  pairs per item, so the share's denominator counts those only (lift is then an upper bound).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shopsim.envs.model.catalog import Catalog

PRICE_BANDS = 5
"""Price bands: train price quintiles of the items with a known price."""


@dataclass(frozen=True)
class Neighbour:
    """A history item near the explained item in the encoder's space."""

    item: int
    """Item code (row of the catalog)."""
    similarity: float
    """Cosine of the two item vectors."""


@dataclass(frozen=True)
class Together:
    """A train count linking a history item to the explained item."""

    item: int
    """The history item (code)."""
    table: str
    """``"transition"`` (history item, then this one) or ``"co-occurrence"`` (same session)."""
    count: int
    lift: float


@dataclass(frozen=True)
class ItemReasons:
    """The evidence for one (history, item) pair."""

    nearest_history: list[Neighbour]
    same_category: int
    """History items in the item's category (unknown category: 0)."""
    price_band: int | None
    """The item's price band 0..4 (None: unknown price)."""
    same_price_band: int
    """History items in the same price band."""
    together: list[Together]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return asdict(self)


def price_bands(cat: Catalog) -> np.ndarray:
    """(I,) price band of every item (-1: unknown price), from train price quintiles."""
    known = cat.has_price.astype(bool)
    band = np.full(cat.n_items, -1, dtype=np.int64)
    if known.any():
        edges = np.quantile(cat.price[known], np.linspace(0, 1, PRICE_BANDS + 1)[1:-1])
        band[known] = np.searchsorted(edges, cat.price[known], side="right")
    return band


def nearest_history(cat: Catalog, hist: np.ndarray, item: int, k: int = 3) -> list[Neighbour]:
    """The ``k`` history items (codes ≥ 0, distinct) nearest to ``item`` by cosine, nearest
    first (ties: the most recent first); the item itself is left out."""
    h = _distinct([int(i) for i in hist if i >= 0 and i != item])
    if not h:
        return []
    sims = cat.vectors[h].astype(np.float64) @ cat.vectors[item].astype(np.float64)
    order = np.argsort(-sims, kind="stable")[:k]
    return [Neighbour(h[i], float(sims[i])) for i in order]


def _distinct(values: list[int]) -> list[int]:
    """``values`` without repeats, first occurrence kept (history order: most recent first)."""
    return list(dict.fromkeys(values))


def _pair_count(cat: Catalog, table: int, src: int, dst: int) -> tuple[int, int]:
    """(count of src → dst, total stored count of src's pairs) in ``table`` (0 trans, 1 cooc)."""
    idx, cnt = (cat.trans_idx, cat.trans_cnt) if table == 0 else (cat.cooc_idx, cat.cooc_cnt)
    row, counts = idx[src], cnt[src]
    hit = np.flatnonzero(row == dst)
    total = int(counts[row >= 0].sum())
    return (int(counts[hit[0]]) if hit.size else 0), total


def together(cat: Catalog, hist: np.ndarray, item: int) -> list[Together]:
    """Every train link from a history item to ``item``, strongest lift first."""
    share = np.exp(cat.popularity.astype(np.float64))
    share = share / share.sum()
    out: list[Together] = []
    for h in _distinct([int(i) for i in hist if i >= 0 and i != item]):
        for table, name in ((0, "transition"), (1, "co-occurrence")):
            count, total = _pair_count(cat, table, h, item)
            if count:
                out.append(Together(h, name, count, float(count / total / share[item])))
    return sorted(out, key=lambda t: -t.lift)


def item_reasons(
    cat: Catalog, hist: np.ndarray, item: int, *, bands: np.ndarray | None = None, k: int = 3
) -> ItemReasons:
    """All of the shop's evidence for showing ``item`` after history ``hist`` (codes, most
    recent first, -1 padded)."""
    bands = price_bands(cat) if bands is None else bands
    h = np.array([i for i in hist if i >= 0], dtype=np.int64)
    c = int(cat.category[item])
    band = int(bands[item])
    return ItemReasons(
        nearest_history=nearest_history(cat, hist, item, k),
        same_category=int((cat.category[h] == c).sum()) if c else 0,
        price_band=None if band < 0 else band,
        same_price_band=int((bands[h] == band).sum()) if band >= 0 else 0,
        together=together(cat, hist, item),
    )


__all__ = [
    "PRICE_BANDS",
    "ItemReasons",
    "Neighbour",
    "Together",
    "item_reasons",
    "nearest_history",
    "price_bands",
    "together",
]
