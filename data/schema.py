"""The canonical session-log schema every shopsim stage reads, and its validation.

Canonical events (one row per event, rows of a session in event order):

============  ==========================  =====================================================
column        type                        meaning
============  ==========================  =====================================================
session_id    string                      one shopping session
user_id       string                      the shopper (placeholder ids are documented per format)
timestamp     datetime64 (UTC, naive)     when it happened — or int64, an order key for logs
              or int64                    with no clock
item_id       string                      the product / article / news item
event         string                      one of :data:`EVENT_TYPES`
price         float64, nullable           unit price paid or shown
position      Int64, nullable             1-based slot in a shown slate
slate_id      string, nullable            which shown slate the row belongs to
propensity    float64, nullable           logging policy's probability of what was shown
quantity      Int64, nullable             units (purchase-line logs); shopsim's extension
split         string                      ``train`` / ``valid`` / ``test`` (by session start)
============  ==========================  =====================================================

Formats may add extra columns after these (e.g. ``brand``, ``country``, OBD's user features).

Canonical items: ``item_id`` (string, unique), ``text`` (string, nullable), ``category``
(string, nullable), ``price`` (float64, nullable), then any extra columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import pandas as pd

from shopsim.errors import ShopsimError

EVENT_TYPES: tuple[str, ...] = ("impression", "view", "click", "cart", "purchase")
"""Canonical event types, in funnel order."""


class EventCode(IntEnum):
    """Integer code of each canonical event type (0 is padding), in funnel order so a larger
    code is a stronger signal. These are the codes of every history the encoders and the
    simulator see."""

    PAD = 0
    IMPRESSION = 1
    VIEW = 2
    CLICK = 3
    CART = 4
    PURCHASE = 5

    @classmethod
    def of(cls, event: str) -> EventCode:
        """The code of a canonical event type (``"view"`` → ``EventCode.VIEW``)."""
        return cls[event.upper()]


EVENT_CODES: dict[str, int] = {e: int(EventCode.of(e)) for e in EVENT_TYPES}
"""Event type → code, for mapping a pandas column (``events["event"].map(EVENT_CODES)``)."""

SPLITS: tuple[str, ...] = ("train", "valid", "test")

EVENT_COLUMNS: tuple[str, ...] = (
    "session_id",
    "user_id",
    "timestamp",
    "item_id",
    "event",
    "price",
    "position",
    "slate_id",
    "propensity",
    "quantity",
    "split",
)
"""Canonical event columns, in file order."""

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("user_id", "timestamp", "item_id", "event")
"""Columns a source log must provide (after ``--map``); ``event`` may come from
``--default-event`` and ``session_id`` is derived when absent."""

ITEM_COLUMNS: tuple[str, ...] = ("item_id", "text", "category", "price")
"""Canonical item columns, in file order."""

EVENT_SYNONYMS: dict[str, str] = {
    **{e: e for e in EVENT_TYPES},
    "impressions": "impression",
    "shown": "impression",
    "exposure": "impression",
    "display": "impression",
    "pageview": "view",
    "page_view": "view",
    "detail": "view",
    "views": "view",
    "clicks": "click",
    "addtocart": "cart",
    "add_to_cart": "cart",
    "add-to-cart": "cart",
    "addtobasket": "cart",
    "basket": "cart",
    "transaction": "purchase",
    "order": "purchase",
    "buy": "purchase",
    "purchased": "purchase",
    "sale": "purchase",
}
"""Source event names (lower-cased) accepted for each canonical event type."""


def validate_events(events: pd.DataFrame, *, where: str = "events") -> None:
    """Check that a table follows the canonical event schema.

    :param events: the table to check.
    :param where: name used in error messages (usually the file path).
    :raises ShopsimError: on the first violation, with a one-line message.
    """
    _require_columns(events, EVENT_COLUMNS, where)
    for col in ("session_id", "user_id", "item_id", "event", "split"):
        if events[col].isna().any():
            row = int(events[col].isna().to_numpy().argmax())
            raise ShopsimError(f"{where}: column {col!r} is empty at row {row}; it is required")
    bad = ~events["event"].isin(EVENT_TYPES)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ShopsimError(
            f"{where}: unknown event {events['event'].iloc[row]!r} at row {row}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
        )
    bad = ~events["split"].isin(SPLITS)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ShopsimError(f"{where}: unknown split {events['split'].iloc[row]!r} at row {row}")
    ts = events["timestamp"]
    if not (pd.api.types.is_datetime64_any_dtype(ts) or pd.api.types.is_integer_dtype(ts)):
        raise ShopsimError(f"{where}: column 'timestamp' has dtype {ts.dtype}; expected datetime or integer")
    per_session = events.groupby("session_id", sort=False)["split"].nunique()
    if (per_session > 1).any():
        sid = per_session.index[int((per_session > 1).to_numpy().argmax())]
        raise ShopsimError(f"{where}: session {sid!r} crosses splits")


def validate_items(items: pd.DataFrame, *, where: str = "items") -> None:
    """Check that a table follows the canonical item schema (unique, non-empty ``item_id``).

    :raises ShopsimError: on the first violation, with a one-line message.
    """
    _require_columns(items, ITEM_COLUMNS, where)
    if items["item_id"].isna().any():
        raise ShopsimError(f"{where}: column 'item_id' has empty values")
    dup = items["item_id"].duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise ShopsimError(f"{where}: item_id {items['item_id'].iloc[row]!r} appears twice (row {row})")


def _require_columns(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ShopsimError(
            f"{where}: missing column(s) {', '.join(missing)}; re-create it with `shopsim data prepare`"
        )
