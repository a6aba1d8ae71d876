"""The generic ``events`` format: mapping, defaults, text columns, sessions, order keys, split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsim.data import PrepareOptions, SessionLog, prepare, sample_path
from shopsim.errors import ShopsimError


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "log.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def test_map_default_event_and_text_cols(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "customer": ["a", "a", "b"],
            "sku": ["p1", "p2", "p1"],
            "when": ["2024-03-01T10:00:00Z", "2024-03-01T10:05:00Z", "2024-03-02T08:00:00Z"],
            "title": ["Red mug", "Blue plate", "Red mug"],
            "brand": ["Acme", "Bolt", "Acme"],
        }
    )
    src = _write(tmp_path, df)
    opts = PrepareOptions(
        format="events",
        column_map={"user_id": "customer", "item_id": "sku", "timestamp": "when"},
        default_event="purchase",
        text_cols=["title", "brand"],
    )
    r = prepare(src, opts, tmp_path / "out")
    log = SessionLog.load(tmp_path / "out")
    assert r.summary["events_by_type"] == {"purchase": 3}
    assert dict(zip(log.items["item_id"], log.items["text"], strict=True)) == {
        "p1": "Red mug | Acme",
        "p2": "Blue plate | Bolt",
    }
    # unmapped columns travel with the events
    assert {"title", "brand"} <= set(log.events.columns)
    assert str(log.events["timestamp"].iloc[0]) == "2024-03-01 10:00:00"


def test_sessions_derived_by_30_minute_gap(tmp_path: Path) -> None:
    times = ["10:00", "10:20", "10:49", "11:20", "11:21"]  # gaps 20, 29, 31, 1 minutes
    df = pd.DataFrame(
        {
            "user_id": ["u"] * 5,
            "item_id": list("abcde"),
            "timestamp": [f"2024-01-01 {t}:00" for t in times],
            "event": ["view"] * 5,
        }
    )
    prepare(_write(tmp_path, df), PrepareOptions(format="events"), tmp_path / "o")
    ev = SessionLog.load(tmp_path / "o").events
    assert ev["session_id"].tolist() == ["u#1", "u#1", "u#1", "u#2", "u#2"]
    prepare(
        _write(tmp_path, df),
        PrepareOptions(format="events", session_gap_minutes=25),
        tmp_path / "o25",
    )
    ev = SessionLog.load(tmp_path / "o25").events
    assert ev["session_id"].tolist() == ["u#1", "u#1", "u#2", "u#3", "u#3"]


def test_integer_order_key(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["a", "b", "a"],
            "timestamp": [3, 1, 2],
            "event": ["click", "view", "view"],
        }
    )
    r = prepare(_write(tmp_path, df), PrepareOptions(format="events"), tmp_path / "o")
    ev = SessionLog.load(tmp_path / "o").events
    assert pd.api.types.is_integer_dtype(ev["timestamp"])
    u1 = ev[ev["user_id"] == "u1"]
    assert u1["item_id"].tolist() == ["b", "a"]  # ordered by the key, not by file order
    assert r.notes["timestamp"] == "integer order key"


def test_unix_time_unit(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"user_id": ["u"], "item_id": ["a"], "timestamp": [1_700_000_000_000], "event": ["view"]}
    )
    prepare(_write(tmp_path, df), PrepareOptions(format="events", timestamp_unit="ms"), tmp_path / "o")
    ev = SessionLog.load(tmp_path / "o").events
    assert ev["timestamp"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20")


def test_parquet_and_gzip_sources_give_the_same_tables(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 500
    df = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n).astype(str),
            "item_id": rng.integers(0, 60, n).astype(str),
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 86_400 * 3, n)), unit="s"),
            "event": rng.choice(["view", "cart", "purchase"], n),
            "price": rng.uniform(1, 50, n).round(2),
        }
    )
    csv = _write(tmp_path, df, "log.csv")
    gz = tmp_path / "log.csv.gz"
    df.to_csv(gz, index=False, compression="gzip")
    pq = _write(tmp_path, df, "log.parquet")
    tables = []
    for i, src in enumerate((csv, gz, pq)):
        prepare(src, PrepareOptions(format="events"), tmp_path / f"o{i}")
        tables.append(SessionLog.load(tmp_path / f"o{i}").events)
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_event_synonyms(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "user_id": ["u"] * 4,
            "item_id": ["a"] * 4,
            "timestamp": [f"2024-01-01 10:0{i}:00" for i in range(4)],
            "event": ["PageView", "addtocart", "transaction", "Click"],
        }
    )
    r = prepare(_write(tmp_path, df), PrepareOptions(format="events"), None)
    assert r.summary["events_by_type"] == {"view": 1, "click": 1, "cart": 1, "purchase": 1}


# ----------------------------------------------------------------------------- split
def _many_sessions(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for s in range(200):
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=int(rng.integers(0, 50_000)))
        for k in range(int(rng.integers(1, 6))):
            rows.append(
                {
                    "user_id": f"u{s % 50}",
                    "session_id": f"s{s}",
                    "item_id": f"i{rng.integers(0, 30)}",
                    "timestamp": start + pd.Timedelta(minutes=k),
                    "event": "view",
                }
            )
    return _write(tmp_path, pd.DataFrame(rows).sample(frac=1, random_state=0))


def test_split_is_by_session_start_and_whole_sessions(tmp_path: Path) -> None:
    prepare(_many_sessions(tmp_path), PrepareOptions(format="events"), tmp_path / "o")
    ev = SessionLog.load(tmp_path / "o").events
    assert (ev.groupby("session_id")["split"].nunique() == 1).all()
    starts = ev.groupby("session_id").agg(start=("timestamp", "min"), split=("split", "first"))
    counts = starts["split"].value_counts()
    assert (counts["train"], counts["valid"], counts["test"]) == (160, 20, 20)
    assert (
        starts.loc[starts.split == "train", "start"].max()
        <= starts.loc[starts.split == "valid", "start"].min()
    )
    assert (
        starts.loc[starts.split == "valid", "start"].max()
        <= starts.loc[starts.split == "test", "start"].min()
    )
    # rows of a session are contiguous and in time order
    assert ev.groupby("session_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    first_pos = ev.reset_index().groupby("session_id")["index"].agg(["min", "max", "count"])
    assert (first_pos["max"] - first_pos["min"] + 1 == first_pos["count"]).all()


def test_split_fractions_configurable(tmp_path: Path) -> None:
    r = prepare(_many_sessions(tmp_path), PrepareOptions(format="events", split=(0.5, 0.25, 0.25)), None)
    assert [r.summary["splits"][s]["sessions"] for s in ("train", "valid", "test")] == [100, 50, 50]


def test_prepare_is_reproducible(tmp_path: Path) -> None:
    src = _many_sessions(tmp_path)
    prepare(src, PrepareOptions(format="events"), tmp_path / "a")
    prepare(src, PrepareOptions(format="events"), tmp_path / "b")
    for name in ("events.parquet", "items.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name)
        )


def test_load_rejects_a_folder_that_was_not_prepared(tmp_path: Path) -> None:
    with pytest.raises(ShopsimError, match=r"no events\.parquet"):
        SessionLog.load(tmp_path)


def test_negative_quantities_are_dropped_and_counted(tmp_path: Path) -> None:
    # the bundled UCI sample read as a shop's own export (the README's `data inspect` example):
    # its return/cancellation lines carry a negative Quantity and are not purchases
    opts = PrepareOptions(
        format="events",
        column_map={
            "session_id": "InvoiceNo",
            "item_id": "StockCode",
            "user_id": "CustomerID",
            "timestamp": "InvoiceDate",
            "price": "UnitPrice",
            "quantity": "Quantity",
        },
        default_event="purchase",
        text_cols=["Description"],
    )
    out = tmp_path / "o"
    r = prepare(sample_path("uci"), opts, out)
    # 778 source lines have Quantity < 0; 130 of them have no CustomerID (dropped for that first)
    assert r.dropped == {"duplicate_row": 28, "missing_user_id": 10_057, "negative_quantity": 648}
    assert (r.rows_in, r.rows_out) == (40_000, 29_267)
    example = r.examples["negative_quantity"]
    assert example["column"] == "Quantity"
    assert int(example["value"]) < 0
    events = pd.read_parquet(out / "events.parquet")
    assert len(events) == 29_267
    assert (events["quantity"] >= 0).all()
