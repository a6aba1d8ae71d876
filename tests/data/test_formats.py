"""The log layer on the real data sets: counts match the sources, the accounting holds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shopsim.data import EVENT_COLUMNS, PrepareOptions, SessionLog, prepare, sample_path
from shopsim.tests.helpers import FIXTURES, shared


def _check_accounting(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    assert report["rows_in"] == report["rows_out"] + sum(report["dropped"].values())
    log = SessionLog.load(out)  # validates the canonical schema
    assert len(log.events) == report["rows_out"]
    assert list(log.events.columns[: len(EVENT_COLUMNS)]) == list(EVENT_COLUMNS)
    assert set(log.events["item_id"]) <= set(log.items["item_id"])
    return report


def test_rees46_bundled_sample_matches_source(tmp_path: Path) -> None:
    r = prepare(sample_path("rees46"), PrepareOptions(format="rees46"), tmp_path)
    report = _check_accounting(tmp_path)
    assert r.rows_in == 17_434
    assert r.events_in_by_type == {"view": 17_055, "cart": 165, "purchase": 214}
    # five exact duplicate rows (same user, session, item, second, event, price) are dropped
    assert report["dropped"] == {"duplicate_row": 5}
    s = r.summary
    assert (s["sessions"], s["users"], s["items"]) == (5_066, 4_504, 6_493)
    assert r.examples["duplicate_row"]["row"] > 0


def test_rees46_keep_duplicates_reproduces_source_counts(tmp_path: Path) -> None:
    r = prepare(sample_path("rees46"), PrepareOptions(format="rees46", duplicates="keep"), tmp_path)
    assert r.summary["events_by_type"] == {"view": 17_055, "cart": 165, "purchase": 214}
    assert r.dropped == {}


@pytest.mark.real_data
def test_rees46_shared_copy_equals_bundled(tmp_path: Path) -> None:
    a = prepare(shared("rees46_oct2019_head"), PrepareOptions(format="rees46"), tmp_path / "a")
    b = prepare(sample_path("rees46"), PrepareOptions(format="rees46"), tmp_path / "b")
    assert a.summary == b.summary
    ea = pd.read_parquet(tmp_path / "a" / "events.parquet")
    eb = pd.read_parquet(tmp_path / "b" / "events.parquet")
    pd.testing.assert_frame_equal(ea, eb)


def test_rees46_item_table(tmp_path: Path) -> None:
    prepare(sample_path("rees46"), PrepareOptions(format="rees46"), tmp_path)
    items = pd.read_parquet(tmp_path / "items.parquet").set_index("item_id")
    # product 3900821: appliances.environment.water_heater by aqua, 33.20
    row = items.loc["3900821"]
    assert row["text"] == "appliances environment water_heater aqua"
    assert row["brand"] == "aqua"
    assert row["price"] == pytest.approx(33.2)
    assert row["category"] == "2053013552326770905"


def test_uci_bundled_sample_matches_source(tmp_path: Path) -> None:
    r = prepare(sample_path("uci"), PrepareOptions(format="uci"), tmp_path)
    _check_accounting(tmp_path)
    assert r.rows_in == 40_000
    assert r.notes["invoices"] == 13_199
    assert r.notes["cancellation_lines"] == 674
    assert r.notes["lines_without_customer_id (user = guest-<InvoiceNo>)"] == 10_057
    assert r.dropped["cancellation"] == 674
    events = pd.read_parquet(tmp_path / "events.parquet")
    # no CustomerID → placeholder user per invoice, never dropped for it
    guests = events[events["user_id"].str.startswith("guest-")]
    assert len(guests) > 0
    assert (guests["user_id"] == "guest-" + guests["session_id"]).all()
    assert "missing_user_id" not in r.dropped
    assert events["quantity"].min() >= 1
    assert not events["session_id"].str.startswith("C").any()


@pytest.mark.real_data
def test_uci_shared(tmp_path: Path) -> None:
    r = prepare(shared("uci_online_retail_sample"), PrepareOptions(format="uci"), tmp_path)
    _check_accounting(tmp_path)
    assert r.rows_in == 40_000
    assert r.notes["customers"] == 3_621


@pytest.mark.real_data
def test_hm_shared(tmp_path: Path) -> None:
    r = prepare(shared("hm_fashion_subset"), PrepareOptions(format="hm"), tmp_path)
    _check_accounting(tmp_path)
    assert r.rows_in == 10_000
    assert r.dropped == {}  # identical rows are several units bought, kept
    s = r.summary
    assert (s["users"], s["items"]) == (2_954, 4_903)
    # sessions are customer × day, and the subset covers one day
    assert s["sessions"] == 2_954
    assert s["items_with_text_share"] == 1.0


def test_hm_fixture(tmp_path: Path) -> None:
    r = prepare(FIXTURES / "hm", PrepareOptions(format="hm"), tmp_path)
    _check_accounting(tmp_path)
    assert r.rows_in == 300
    items = pd.read_parquet(tmp_path / "items.parquet")
    assert items["text"].str.len().min() > 10
    assert {"prod_name", "detail_desc", "colour_group_name"} <= set(items.columns)


def test_mind_fixture(tmp_path: Path) -> None:
    r = prepare(FIXTURES / "mind", PrepareOptions(format="mind"), tmp_path)
    _check_accounting(tmp_path)
    events = pd.read_parquet(tmp_path / "events.parquet")
    imp = events[events["event"] == "impression"]
    assert len(imp) == r.notes["shown_items"]
    assert (events["event"] == "click").sum() >= r.notes["clicks"]
    # every click on an impression has the impression's slate and position
    clicks = events[(events["event"] == "click") & events["slate_id"].notna()]
    assert len(clicks) == r.notes["clicks"]
    merged = clicks.merge(imp, on=["slate_id", "item_id"], suffixes=("", "_imp"))
    assert (merged["position"] == merged["position_imp"]).all()
    # history clicks come before the user's first impression
    hist = events[events["session_id"].str.startswith("hist-")]
    first_imp = imp.groupby("user_id")["timestamp"].min()
    last_hist = hist.groupby("user_id")["timestamp"].max()
    common = last_hist.index.intersection(first_imp.index)
    assert (last_hist[common] < first_imp[common]).all()


@pytest.mark.real_data
def test_mind_shared(tmp_path: Path) -> None:
    r = prepare(shared("mind_small_subset"), PrepareOptions(format="mind"), tmp_path)
    _check_accounting(tmp_path)
    assert r.notes["impression_logs"] == 5_000
    assert r.notes["shown_items"] == 189_359
    assert r.notes["clicks"] == 7_542
    assert r.summary["users"] == 4_637
    assert r.items["with_text"] == 2_000


def test_obd_fixture_two_policies(tmp_path: Path) -> None:
    prepare(FIXTURES / "obd", PrepareOptions(format="obd"), tmp_path)
    _check_accounting(tmp_path)
    events = pd.read_parquet(tmp_path / "events.parquet")
    assert set(events["logging_policy"]) == {"bts", "random"}
    imp = events[events["event"] == "impression"]
    assert imp["propensity"].notna().all()
    assert set(imp["position"]) == {1, 2, 3}
    random_p = imp.loc[imp["logging_policy"] == "random", "propensity"]
    assert random_p.to_numpy() == pytest.approx(1 / 80)


@pytest.mark.real_data
def test_obd_shared(tmp_path: Path) -> None:
    r = prepare(shared("obd_sample"), PrepareOptions(format="obd"), tmp_path)
    _check_accounting(tmp_path)
    assert r.notes["impressions[random]"] == 10_000
    assert r.notes["impressions[bts]"] == 10_000
    events = pd.read_parquet(tmp_path / "events.parquet")
    ctr = events.assign(click=events["event"] == "click").groupby("logging_policy")["click"].sum() / 10_000
    assert ctr["random"] == pytest.approx(0.0038)
    assert ctr["bts"] == pytest.approx(0.0042)
    assert r.summary["items"] == 80
