"""The shop's evidence for an item: the nearest history items really are the nearest (brute
force over the toy catalog), counts agree with the catalog's own pair index, bands are quintiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shopsim.envs.model.simulator import Simulator
from shopsim.evaluation.explain.reasons import PRICE_BANDS, item_reasons, price_bands


def test_nearest_history_is_the_brute_force_nearest(toy_sim: Path) -> None:
    cat = Simulator.load(toy_sim).catalog
    rng = np.random.default_rng(0)
    full = cat.vectors.astype(np.float64) @ cat.vectors.T.astype(np.float64)  # every pair
    for _ in range(200):
        hist = np.r_[rng.choice(cat.n_items, rng.integers(1, 8), replace=False), [-1, -1]]
        item = int(rng.integers(cat.n_items))
        got = item_reasons(cat, hist, item, k=3).nearest_history
        h = [int(i) for i in hist if i >= 0 and i != item]
        want = sorted(h, key=lambda i: -full[item, i])[:3]
        assert [n.item for n in got] == want or np.allclose(
            [n.similarity for n in got], [full[item, i] for i in want]
        )  # ties may swap equally similar items
        assert all(abs(n.similarity - full[item, n.item]) < 1e-9 for n in got)


def test_together_counts_match_the_catalogs_pair_index(toy_sim: Path) -> None:
    cat = Simulator.load(toy_sim).catalog
    keys, counts = cat.pairs
    n = cat.n_items
    share = np.exp(cat.popularity.astype(np.float64))
    share /= share.sum()
    seen = 0
    for src in range(n):
        for dst in cat.trans_idx[src][cat.trans_idx[src] >= 0][:3]:
            links = item_reasons(cat, np.array([src, -1]), int(dst)).together
            trans = [t for t in links if t.table == "transition"]
            pos = np.searchsorted(keys, src * n + dst)
            assert trans[0].count == counts[pos]
            total = cat.trans_cnt[src][cat.trans_idx[src] >= 0].sum()
            assert np.isclose(trans[0].lift, counts[pos] / total / share[dst])
            seen += 1
    assert seen > 20


def test_price_bands_are_quintiles(toy_sim: Path) -> None:
    cat = Simulator.load(toy_sim).catalog
    bands = price_bands(cat)
    known = cat.has_price.astype(bool)
    assert set(np.unique(bands[known])) <= set(range(PRICE_BANDS))
    assert (bands[~known] == -1).all()
    counts = np.bincount(bands[known], minlength=PRICE_BANDS)
    assert counts.max() - counts.min() <= max(2, 0.5 * counts.mean())  # about equal bands
