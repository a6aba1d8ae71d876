"""shopsim.stats: pinned intervals of the pre-redesign code, coverage, paired vs unpaired width."""

from __future__ import annotations

import numpy as np
import pytest

from shopsim import stats
from shopsim.envs.fitting.fidelity import auc, grouped_bootstrap_auc, paired_auc_difference
from shopsim.evaluation.ope.estimators import ratio_estimate

# Values computed with the four per-site copies this module replaced (in_simulator, next_item,
# fidelity, ope.estimators at commit 85d48e2); every report's intervals must stay these, bit for bit.


def _inputs() -> dict[str, np.ndarray]:
    g = np.random.default_rng(11)
    x = g.normal(size=40)
    a = g.random(60)
    b = a + g.normal(0.05, 0.1, 60)
    grp = g.integers(0, 12, 60)
    y = g.random(80) < 0.4
    s1 = g.random(80) + 0.5 * y
    s2 = g.random(80) + 0.2 * y
    gg = g.integers(0, 15, 80)
    w = g.uniform(0.5, 2, 50)
    r = (g.random(50) < 0.3).astype(float)
    return {"x": x, "a": a, "b": b, "grp": grp, "y": y, "s1": s1, "s2": s2, "gg": gg, "w": w, "r": r}


def test_pinned_intervals_of_the_old_code() -> None:
    d = _inputs()
    assert stats.bootstrap_mean_ci(d["x"]) == (-0.3512473707898781, 0.1741114314304426)
    assert stats.bootstrap_mean_ci(d["x"][:7], n_boot=200, seed=3) == (
        -0.15978753493044545,
        0.9272853602386992,
    )
    assert stats.grouped_mean_ci(d["a"], d["grp"], n_boot=500, seed=1) == (
        0.44080204899128483,
        0.3618133173213701,
        0.5164878358076174,
    )
    assert stats.paired_difference_ci(d["a"], d["b"], d["grp"], n_boot=500, seed=1) == (
        -0.05889479297733171,
        -0.07788759360825992,
        -0.03839013236547118,
    )
    assert grouped_bootstrap_auc(d["y"], d["s1"], d["gg"], seed=2) == (0.7800157400743019, 0.9397834075863979)
    assert paired_auc_difference(d["y"], d["s1"], d["s2"], d["gg"], n_boot=100, seed=2) == (
        0.16294793779580796,
        -0.0052313311688311544,
        0.3322533444816052,
    )
    assert stats.boot_counts(5, 3, 0).tolist() == [[1, 0, 0, 0, 4], [2, 2, 0, 1, 0], [1, 2, 1, 0, 1]]
    snips = ratio_estimate(np.zeros(50), d["w"] * d["r"], d["w"], stats.boot_counts(50, 300, 4))
    assert (snips.value, snips.ci95) == (0.2601402088388351, (0.14505512913520544, 0.3848825951015124))


@pytest.mark.parametrize("n", [2, 3, 17, 250])
@pytest.mark.parametrize("seed", [0, 5])
def test_scipy_path_is_the_historical_iid_bootstrap(n: int, seed: int) -> None:
    """scipy's resamples are ``rng.integers(0, n, (B, n))``; the interval is np.percentile's."""
    x = np.random.default_rng(n).exponential(2.0, n)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, (300, n))].mean(1)
    want = tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))
    assert stats.bootstrap_mean_ci(x, n_boot=300, seed=seed) == want


def test_cluster_resamples_draw_whole_groups_in_order() -> None:
    groups = np.array([7, 3, 7, 9, 3, 7])
    members = {3: [1, 4], 7: [0, 2, 5], 9: [3]}
    rng = np.random.default_rng(4)
    for idx in stats.cluster_resamples(groups, 20, 4):
        pick = np.array([3, 7, 9])[rng.integers(0, 3, 3)]
        assert idx.tolist() == [i for g in pick for i in members[int(g)]]
    assert [len(i) for i in stats.cluster_resamples(np.array([], int), 2, 0)] == [0, 0]


def test_edge_cases() -> None:
    assert stats.bootstrap_mean_ci(np.array([2.5])) == (2.5, 2.5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        stats.bootstrap_mean_ci(np.array([]))
    assert all(np.isnan(stats.grouped_mean_ci(np.array([]), np.array([]))))
    # one-class resamples give NaN AUCs, which the AUC interval leaves out
    y = np.array([1, 0, 0, 0, 0, 0], bool)
    vals = stats.grouped_bootstrap(lambda i: auc(y[i], np.arange(6.0)[i]), np.arange(6), n_boot=50, seed=0)
    assert np.isnan(vals).any()
    assert not np.isnan(stats.percentile_interval(vals, omit_nan=True)).any()


def test_mean_ci_covers_the_true_mean_about_95_percent() -> None:
    """400 samples of N(1, 2²), n = 100: the binomial SE of the hit rate at p = 0.95 is
    √(0.95·0.05/400) ≈ 0.011, so a correct 95% interval lands within 3 SE (±0.033) of 0.95."""
    g = np.random.default_rng(2024)
    hits = 0
    for k in range(400):
        lo, hi = stats.bootstrap_mean_ci(g.normal(1.0, 2.0, 100), n_boot=1000, seed=k)
        hits += lo <= 1.0 <= hi
    assert abs(hits / 400 - 0.95) <= 0.033, hits


def test_paired_interval_is_narrower_than_unpaired_on_correlated_data() -> None:
    g = np.random.default_rng(3)
    base = g.normal(0, 3, 300)  # shared by both arms: same episodes / targets
    a = base + g.normal(0, 0.5, 300)
    b = base + g.normal(0.2, 0.5, 300)
    diff, lo, hi = stats.paired_difference_ci(a, b, n_boot=1000, seed=0)
    assert lo < diff < hi
    # unpaired: each arm resampled independently, then the difference of the replicate means
    units = np.arange(300)
    ma = stats.grouped_bootstrap(lambda i: a[i].mean(), units, n_boot=1000, seed=1)
    mb = stats.grouped_bootstrap(lambda i: b[i].mean(), units, n_boot=1000, seed=2)
    ulo, uhi = stats.percentile_interval(ma - mb)
    assert hi - lo < 0.3 * (uhi - ulo)
    # the same holds for the session (cluster) bootstrap
    groups = np.repeat(np.arange(60), 5)
    _, glo, ghi = stats.paired_difference_ci(a, b, groups, n_boot=500, seed=0)
    assert ghi - glo < 0.3 * (uhi - ulo)
