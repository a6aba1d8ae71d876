"""Catalog at scale: the generated shop, the exact/approximate neighbour switch, the vectorised
count-table helpers (against the per-row loops they replaced, kept here as oracles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from shopsim.data import SessionLog, prepare
from shopsim.data.generated import generated_prepare_options, write_generated_shop
from shopsim.envs.model import catalog as catalog_mod
from shopsim.envs.model.catalog import embedding_neighbours, neighbour_recall
from shopsim.errors import ShopsimError


def _top_m_loop(mat: sparse.csr_matrix, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The original per-row loop of ``_top_m`` (the oracle)."""
    n = mat.shape[0]
    idx = np.full((n, m), -1, dtype=np.int32)
    cnt = np.zeros((n, m), dtype=np.float32)
    for r in range(n):
        lo, hi = mat.indptr[r], mat.indptr[r + 1]
        if lo == hi:
            continue
        cols, vals = mat.indices[lo:hi], mat.data[lo:hi]
        order = np.lexsort((cols, -vals))[:m]
        idx[r, : len(order)] = cols[order]
        cnt[r, : len(order)] = vals[order]
    return idx, cnt


def _pairs_loop(seqs: list[np.ndarray], tail: int) -> list[tuple[int, int]]:
    """The original per-session meshgrid of the co-occurrence counts (the oracle)."""
    out: list[tuple[int, int]] = []
    for s in seqs:
        u = np.unique(s[-tail:])
        if len(u) > 1:
            a, b = np.meshgrid(u, u)
            keep = a != b
            out += list(zip(a[keep].tolist(), b[keep].tolist(), strict=True))
    return sorted(out)


def _brute_force(vectors: np.ndarray, m: int) -> np.ndarray:
    """Exact neighbours by a full sort of every row (ties: lower item code first)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    return order[:, :m].astype(np.int32)


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(8))
def test_top_m_vectorised_equals_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 200)), int(rng.integers(1, 15))
    mat = sparse.random(n, n, density=float(rng.uniform(0, 0.3)), random_state=seed, format="csr")
    mat.data = np.round(mat.data * 3) + 1  # small integer counts: many ties
    got, want = catalog_mod._top_m(mat, m), _top_m_loop(mat, m)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])


def test_session_pairs_equal_meshgrid_loop() -> None:
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 40, int(rng.integers(1, 90))) for _ in range(300)] + [np.array([5])]
    r, c = catalog_mod._session_pairs(seqs, tail=50)
    assert sorted(zip(r.tolist(), c.tolist(), strict=True)) == _pairs_loop(seqs, 50)


def test_exact_neighbours_equal_brute_force() -> None:
    v = _unit(700, 12, 0)
    idx, report = embedding_neighbours(v, 10)
    assert report["kind"] == "exact"
    assert np.array_equal(idx, _brute_force(v, 10))


def test_approximate_neighbours_above_threshold_report_recall() -> None:
    # clustered vectors (like item embeddings): an IVF index should find most neighbours
    rng = np.random.default_rng(1)
    centres = _unit(40, 16, 2)
    v = centres[rng.integers(0, 40, 4000)] + 0.15 * rng.standard_normal((4000, 16)).astype(np.float32)
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    idx, report = embedding_neighbours(v, 10, exact_max=1000)
    assert report["kind"] == "approximate"
    assert report["recall_queries"] == 1000
    assert 0.8 < report["recall_at_m"] <= 1.0
    assert idx.shape == (4000, 10)
    assert not (idx == np.arange(4000)[:, None]).any()  # never an item's own neighbour
    # the reported recall is the recall of the returned table on those queries
    q = np.sort(np.random.default_rng(0).choice(4000, 1000, replace=False))
    exact = _brute_force(v, 10)[q]
    assert report["recall_at_m"] == neighbour_recall(idx[q], exact)
    again, _ = embedding_neighbours(v, 10, exact_max=1000)
    assert np.array_equal(idx, again)  # seeded: same table twice


def test_neighbour_recall_counts_shared_neighbours() -> None:
    assert neighbour_recall(np.array([[1, 2, -1]]), np.array([[2, 3, 4]])) == round(1 / 3, 4)


def test_generated_shop_is_seeded_and_prepares(tmp_path) -> None:
    a = write_generated_shop(tmp_path / "a", 500, 3000, seed=4, with_text=True)
    b = write_generated_shop(tmp_path / "b", 500, 3000, seed=4, with_text=True)
    c = write_generated_shop(tmp_path / "c", 500, 3000, seed=5)
    assert a.events_path.read_bytes() == b.events_path.read_bytes()
    assert a.items_path.read_bytes() == b.items_path.read_bytes()
    assert a.events_path.read_bytes() != c.events_path.read_bytes()
    ev = pd.read_csv(a.events_path)
    items = pd.read_csv(a.items_path)
    assert len(ev) == a.n_events == 3000
    assert len(items) == 500
    assert set(ev["event"]) == {"view", "cart", "purchase"}
    assert set(ev["item_id"]) <= set(items["item_id"])
    assert {"item_id", "category", "brand", "price", "title"} <= set(items.columns)
    assert "title" not in pd.read_csv(c.items_path).columns
    # category-sticky sessions: consecutive views mostly share a category
    views = ev[ev["event"] == "view"].merge(items[["item_id", "category"]], on="item_id")
    views = views.sort_values(["session_id", "timestamp"], kind="stable")
    same = (views["session_id"] == views["session_id"].shift()) & (
        views["category"] == views["category"].shift()
    )
    pairs = views["session_id"] == views["session_id"].shift()
    assert same.sum() / pairs.sum() > 0.6
    res = prepare(a.events_path, generated_prepare_options(a), tmp_path / "data")
    log = SessionLog.load(tmp_path / "data")
    assert res.rows_out == 3000
    assert len(log.items) == 500
    assert log.items["text"].notna().all()


def test_generated_shop_bad_sizes(tmp_path) -> None:
    with pytest.raises(ShopsimError):
        write_generated_shop(tmp_path, 5, 100)
    with pytest.raises(ShopsimError):
        write_generated_shop(tmp_path, 100, 0)


def test_cap_sessions_samples_valid_and_test_only(tmp_path) -> None:
    from shopsim.envs.fitting.fit import SimulatorConfig, cap_sessions

    shop = write_generated_shop(tmp_path / "shop", 300, 4000, seed=1)
    prepare(shop.events_path, generated_prepare_options(shop), tmp_path / "data")
    log = SessionLog.load(tmp_path / "data")
    capped = cap_sessions(log, 20, seed=0)
    for split in ("valid", "test"):
        assert capped.split(split)["session_id"].nunique() == 20
        assert set(capped.split(split)["session_id"]) <= set(log.split(split)["session_id"])
    assert capped.split("train").equals(log.split("train"))
    assert cap_sessions(log, 10**9) is log  # nothing to cut
    with pytest.raises(ShopsimError):
        SimulatorConfig(max_sessions=0)


def test_scale_report_table_and_sizes() -> None:
    from shopsim.experiments.scale import parse_sizes, scale_summary, scale_table

    assert parse_sizes("10000,1e6") == [10_000, 1_000_000]
    for bad in ("10,100", "ten", ""):
        with pytest.raises(ShopsimError):
            parse_sizes(bad)

    def row(items: int, step: float, recall: float | None) -> dict[str, object]:
        nb = {"kind": "exact"} if recall is None else {"kind": "approximate", "recall_at_m": recall}
        return {
            "items": items,
            "events": 10 * items,
            "prepare_rows_per_s": 1000,
            "encode_s": 1.0,
            "fit_s": 2.0,
            "fit_peak_rss_mb": 2048.0,
            "embedding_neighbours": nb,
            "env_step_us": step,
            "vec256_step_us": 10 * step,
        }

    rep = scale_summary([row(10_000, 100.0, None), row(1_000_000, 110.0, 0.93)])
    assert rep["step_time_ratio"] == {"sizes": [10_000, 1_000_000], "env": 1.1, "vec256": 1.1}
    table = scale_table(rep)
    assert "| 1,000,000 | 10,000,000 |" in table
    assert "| approximate | 0.93 |" in table
    assert "| 2.00 |" in table  # peak RSS in GB
