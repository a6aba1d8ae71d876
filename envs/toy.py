"""A tiny synthetic shop whose best slate is known: for learning tests of agents.

32 items in 4 categories of 8 (``t00``–``t31``, category ``c0``–``c3``, price 10 + index).
Every logged session starts at a random item and walks its category's cycle: after item
``x = 8c + j`` the shopper views :func:`toy_next` ``(x) = 8c + (j + 1) mod 8`` (with
probability 0.9; otherwise a uniformly random item). Each category's first item (``j = 0``)
is bought when viewed with probability 0.8, every other item with 0.02.

Known optimum. In a simulator fitted on this log the item most likely to be clicked after
``x`` is ``toy_next(x)``: a slate that puts it in slot 1 maximises the click reward, and a
slate that also reaches the category's first item maximises purchases. Learning tests assert
that an agent finds it (see :func:`toy_oracle_slot`).

The log ships as ``data/samples/toy_events.csv.gz`` (``--format events``, no text: the
ID/attribute-only path). :func:`write_toy_log` regenerates it bit for bit.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

N_CATEGORIES = 4
PER_CATEGORY = 8
N_ITEMS = N_CATEGORIES * PER_CATEGORY


def toy_next(item: int) -> int:
    """The item a toy shopper goes to after ``item`` (index 0..31)."""
    c, j = divmod(item, PER_CATEGORY)
    return c * PER_CATEGORY + (j + 1) % PER_CATEGORY


def toy_item_id(item: int) -> str:
    return f"t{item:02d}"


def toy_log(n_sessions: int = 3000, seed: int = 7) -> pd.DataFrame:
    """The toy log as a DataFrame in canonical column names (``--format events``)."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = pd.Timestamp("2026-01-01")
    for s in range(n_sessions):
        length = 2 + int(rng.geometric(0.3))
        x = int(rng.integers(N_ITEMS))
        ts = t0 + pd.Timedelta(hours=s)
        for step in range(min(length, 12)):
            when = ts + pd.Timedelta(minutes=step)
            cat = f"c{x // PER_CATEGORY}"
            price = 10.0 + x
            rows.append((f"s{s}", f"u{s % 500}", when, toy_item_id(x), "view", price, cat))
            buy_p = 0.8 if x % PER_CATEGORY == 0 else 0.02
            if rng.random() < buy_p:
                rows.append(
                    (
                        f"s{s}",
                        f"u{s % 500}",
                        when + pd.Timedelta(seconds=20),
                        toy_item_id(x),
                        "purchase",
                        price,
                        cat,
                    )
                )
            x = toy_next(x) if rng.random() < 0.9 else int(rng.integers(N_ITEMS))
    df = pd.DataFrame(
        rows, columns=["session_id", "user_id", "timestamp", "item_id", "event", "price", "category"]
    )
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return df


def write_toy_log(path: Path, n_sessions: int = 3000, seed: int = 7) -> Path:
    """Write the toy log as gzip CSV (deterministic bytes: no gzip timestamp)."""
    data = toy_log(n_sessions, seed).to_csv(index=False).encode()
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(data)
    return path


def toy_oracle_slot(cand: np.ndarray, last_item: int) -> int | None:
    """Index of :func:`toy_next` of ``last_item`` among candidate item codes, if present.

    Item codes follow the canonical items table, which lists toy items in id order, so
    code ``i`` is ``t{i:02d}``."""
    hit = np.flatnonzero(cand == toy_next(last_item))
    return int(hit[0]) if len(hit) else None
