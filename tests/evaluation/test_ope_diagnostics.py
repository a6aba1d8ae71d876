"""Trust verdicts of OPE estimates (shopsim.evaluation.ope.diagnostics) on logs with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from shopsim.envs.rewards import WeightedReward
from shopsim.evaluation.ope.diagnostics import (
    CLICK_RANGE,
    MIN_ESS,
    page_reward_range,
    session_return_range,
    summary_line,
    trust,
    usable,
    weight_stats,
)
from shopsim.evaluation.ope.estimators import (
    SINGLE_SLOT,
    LoggedBandit,
    check_action_dist,
    estimate,
    importance_weights,
)

K = 50  # actions
MU = np.linspace(0.05, 0.6, K)  # click probability of each action: the truth of "always play a" is MU[a]


def _log(pb: np.ndarray, n: int, seed: int) -> tuple[LoggedBandit, np.ndarray]:
    """n rounds of a context-free behaviour ``pb`` over K actions with Bernoulli(MU[a]) clicks;
    returns the log and the true reward model (n, K) that DM gets."""
    rng = np.random.default_rng(seed)
    a = rng.choice(K, size=n, p=pb)
    r = (rng.random(n) < MU[a]).astype(float)
    return LoggedBandit(a, r, pb[a], n_actions=K), np.broadcast_to(MU, (n, K))


def _all(data: LoggedBandit, pi: np.ndarray, q: np.ndarray) -> dict[str, dict]:
    """Every single-slot estimate with its trust block, as ope obd computes them."""
    w = importance_weights(data, check_action_dist(data, pi))
    out = {}
    for name in SINGLE_SLOT:
        e = estimate(name, data, pi, q, n_boot=200, seed=0)
        out[name] = {"value": e.value, "ci95": e.ci95, "trust": trust(name, e.value, w, CLICK_RANGE)}
    out["dm"]["trust"] = trust("dm", out["dm"]["value"], None, CLICK_RANGE)
    return out


def test_low_overlap_flags_ips_and_dr_but_not_dm() -> None:
    # behaviour: greedy on action 0 with ε = 0.004 uniform; target: always action 7, logged with
    # probability ε/K = 8e-5, so its weight is 12,500 and ~4 of 50,000 rounds carry all of Σw
    eps, n, target = 0.004, 50_000, 7
    pb = np.full(K, eps / K)
    pb[0] += 1 - eps
    data, q = _log(pb, n, seed=0)
    hits = int((data.action == target).sum())
    assert hits == 4  # the low-overlap log this test is about: 2 clicks in 4 rounds
    pi = np.zeros((n, K))
    pi[:, target] = 1.0
    est = _all(data, pi, q)
    for name in ("ips", "snips", "dr", "sndr"):
        t = est[name]["trust"]
        assert t["reasons"] == ["low_ess", "heavy_weight"], name
        assert t["verdict"] == "flagged"
        assert t["ess"] == pytest.approx(hits)  # equal weights on the hits: ESS = their number
        assert t["max_weight"] == pytest.approx(1 / pb[target])
        assert t["max_weight_share"] == pytest.approx(1 / hits)
        assert est[name]["value"] > 3 * MU[target]  # what the flags warn of: IS-type estimates 4x off
    # DM with the true model is right, and so are the shrinkage estimators that fall back on it
    assert est["dm"]["value"] == pytest.approx(MU[target], abs=1e-12)
    assert est["dm"]["trust"]["reasons"] == []
    assert est["dm"]["trust"]["ess"] is None
    for name in ("switch_dr", "dros"):
        assert est[name]["trust"]["reasons"] == [], name
        assert est[name]["trust"]["shrunk_rows"] == hits
        assert est[name]["value"] == pytest.approx(MU[target], abs=0.01)
    trusts = {n: e["trust"] for n, e in est.items()}
    assert usable(trusts) == ["dm", "switch_dr", "dros"]
    assert summary_line(trusts).startswith(
        "usable here: dm (model), switch_dr (shrinkage), dros (shrinkage); "
    )


def test_ips_above_the_largest_possible_click_rate_is_flagged_outside_range() -> None:
    # uniform logging, target always action 3 whose click probability is 1: IPS = K·hits·(1)/n
    # overshoots 1 whenever action 3 was logged more than n/K times; SNIPS is exactly 1
    k, n = 10, 5000
    rng = np.random.default_rng(3)
    a = rng.integers(0, k, n)
    assert (a == 3).sum() > n / k  # this seed overshoots
    r = (a == 3).astype(float)
    data = LoggedBandit(a, r, np.full(n, 1 / k), n_actions=k)
    pi = np.zeros((n, k))
    pi[:, 3] = 1.0
    w = importance_weights(data, check_action_dist(data, pi))
    ips = estimate("ips", data, pi, n_boot=50).value
    snips = estimate("snips", data, pi, n_boot=50).value
    assert ips > 1.0
    assert snips == pytest.approx(1.0)
    assert trust("ips", ips, w, CLICK_RANGE)["reasons"] == ["outside_range"]  # ESS ≈ 500: enough
    assert trust("snips", snips, w, CLICK_RANGE)["reasons"] == []
    assert trust("dm", -0.01, None, CLICK_RANGE)["reasons"] == ["outside_range"]  # every kind is checked
    assert trust("ips", ips, w, None)["reasons"] == []  # unknown range: not checked


def test_on_policy_log_is_not_flagged_and_recovers_the_truth() -> None:
    pb = np.random.default_rng(0).dirichlet(np.ones(K))
    n = 20_000
    data, q = _log(pb, n, seed=5)
    pi = np.broadcast_to(pb, (n, K))  # target = behaviour: every weight is 1
    truth = float(pb @ MU)
    est = _all(data, pi, q)
    for name, e in est.items():
        assert e["trust"]["reasons"] == [], name
        assert e["trust"]["verdict"] == "ok"
        assert e["ci95"][0] - 1e-12 <= truth <= e["ci95"][1] + 1e-12, name  # DM's interval is a point
    t = est["ips"]["trust"]
    assert t["ess"] == pytest.approx(n)
    assert t["ess_share"] == pytest.approx(1.0)
    assert t["max_weight_share"] == pytest.approx(1 / n)
    assert usable({n: e["trust"] for n, e in est.items()}) == list(SINGLE_SLOT)


def test_thresholds_and_unshrunk_switch_dr() -> None:
    # 10 equal weights among 1,000 rounds: ESS 10 < 100 and one round carries 10% of Σw
    w = np.r_[np.zeros(990), np.ones(10)]
    assert trust("ips", 0.1, w, CLICK_RANGE)["reasons"] == ["low_ess", "heavy_weight"]
    # Switch-DR changed no weight (all ≤ λ = 100): it is DR and gets DR's flags; DRos shrank them
    assert trust("switch_dr", 0.1, w, CLICK_RANGE)["reasons"] == ["low_ess", "heavy_weight"]
    assert trust("switch_dr", 0.1, w, CLICK_RANGE)["shrunk_rows"] == 0
    assert trust("dros", 0.1, w, CLICK_RANGE)["reasons"] == []
    # the ESS floor is max(100, 1% of n): 150 equal weights pass at n = 10,000, fail at n = 20,000
    assert trust("ips", 0.1, np.r_[np.zeros(9850), np.ones(150)], CLICK_RANGE)["reasons"] == []
    assert trust("ips", 0.1, np.r_[np.zeros(19850), np.ones(150)], CLICK_RANGE)["reasons"] == ["low_ess"]
    assert trust("ips", 0.1, np.ones(int(MIN_ESS) - 1), CLICK_RANGE)["reasons"] == ["low_ess"]


def test_weight_stats_of_slots_take_the_worst_column() -> None:
    w = np.c_[np.ones(400), np.r_[np.zeros(380), np.full(20, 20.0)]]
    s = weight_stats(w)
    assert s["n"] == 400
    assert s["ess"] == pytest.approx(20.0)
    assert s["max_weight"] == 20.0
    assert s["max_weight_share"] == pytest.approx(1 / 20)


def test_reward_ranges() -> None:
    assert page_reward_range(WeightedReward(), 3) == (0.0, 3.0)
    assert session_return_range(page_reward_range(WeightedReward(), 3), 20) == (0.0, 60.0)
    penalised = WeightedReward(click=1.0, purchase=2.0, no_click=-0.1, leave=-1.0, diversity=0.5)
    assert page_reward_range(penalised, 4) == (-1.1, 12.5)
    assert session_return_range((-1.1, 12.5), 10) == (-11.0, 125.0)
    assert page_reward_range(WeightedReward(revenue=1.0), 3) is None
    assert session_return_range(None, 10) is None
