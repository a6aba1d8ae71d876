"""The log layer on the bundled samples and the fixture slices (and, opt-in with ``real_data``, the
full public data sets): counts match the sources, the accounting holds."""

from __future__ import annotations

import gzip
import hashlib
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


# sha256 of the source files the bundled samples were cut from (REES46 head events.csv, the UCI
# 40,000-line sample as CSV): the samples are those files byte for byte, so the counts pinned
# below are the sources' counts.
SOURCE_SHA256 = {
    "rees46": "424a7f08c127a6190f9d4d1b88481b916fec4114322c5b1d78a87c3d606c0f20",
    "uci": "e5b0d8c334a871988139acbd4a5b5f18f4359704df2892808a1769c9d917a982",
}


@pytest.mark.parametrize("name", sorted(SOURCE_SHA256))
def test_bundled_sample_is_the_source_file(name: str) -> None:
    digest = hashlib.sha256(gzip.decompress(sample_path(name).read_bytes())).hexdigest()
    assert digest == SOURCE_SHA256[name]


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
    assert r.notes["customers"] == 3_621
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
    source = pd.read_csv(FIXTURES / "hm" / "transactions_train.csv", dtype=str)
    assert source.duplicated().sum() == 26  # identical rows are several units bought, kept
    assert r.dropped == {}
    s = r.summary
    assert (s["users"], s["items"]) == (source["customer_id"].nunique(), source["article_id"].nunique())
    # sessions are customer × day, and the slice covers one day
    assert source["t_dat"].nunique() == 1
    assert s["sessions"] == s["users"]
    assert s["items_with_text_share"] == 1.0
    items = pd.read_parquet(tmp_path / "items.parquet")
    assert items["text"].str.len().min() > 10
    assert {"prod_name", "detail_desc", "colour_group_name"} <= set(items.columns)


def test_mind_fixture(tmp_path: Path) -> None:
    r = prepare(FIXTURES / "mind", PrepareOptions(format="mind"), tmp_path)
    _check_accounting(tmp_path)
    source = pd.read_csv(
        FIXTURES / "mind" / "behaviors.tsv",
        sep="\t",
        header=None,
        names=["imp", "user", "time", "hist", "imps"],
    )
    shown = source["imps"].str.split().explode()
    assert r.notes["impression_logs"] == len(source) == 40
    assert r.notes["shown_items"] == len(shown)
    assert r.notes["clicks"] == shown.str.endswith("-1").sum()
    assert r.summary["users"] == source["user"].nunique()
    assert r.items["with_text"] == len(pd.read_csv(FIXTURES / "mind" / "news.tsv", sep="\t", header=None))
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


@pytest.mark.parametrize("policy", ["bts", "random"])
def test_obd_fixture_counts_match_the_source(policy: str, tmp_path: Path) -> None:
    r = prepare(FIXTURES / "obd", PrepareOptions(format="obd"), tmp_path)
    source = pd.read_csv(FIXTURES / "obd" / policy / "all.csv")
    assert r.notes[f"impressions[{policy}]"] == len(source)
    assert r.notes[f"clicks[{policy}]"] == source["click"].sum()
    events = pd.read_parquet(tmp_path / "events.parquet")
    clicks = events[(events["event"] == "click") & (events["logging_policy"] == policy)]
    assert len(clicks) == source["click"].sum()
    assert r.summary["items"] == len(pd.read_csv(FIXTURES / "obd" / policy / "item_context.csv")) == 80


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
