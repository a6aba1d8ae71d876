"""Off-policy estimators: obp's answers on identical inputs, identities, bad inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsim.errors import ShopsimError
from shopsim.evaluation.ope.estimators import LoggedBandit, diagnostics, estimate
from shopsim.tests.helpers import FIXTURES

OBD = FIXTURES / "obd"  # a slice of the Open Bandit Dataset + obp's reference estimates (SOURCE.md)
OBP_NAMES = {
    "ipw": ("ips", None),
    "snipw": ("snips", None),
    "dm": ("dm", None),
    "dr": ("dr", None),
    "sndr": ("sndr", None),
    "switch-dr": ("switch_dr", 100.0),
    "dr-os": ("dros", 1.0),
    "ipw_clip50": ("ips_clip", 50.0),
}


@pytest.mark.parametrize("target", ["uniform", "softmax"])
def test_estimators_equal_obp_on_identical_inputs(target: str) -> None:
    z = np.load(OBD / "obp_reference.npz")
    ref = json.loads((OBD / "obp_reference.json").read_text())[target]
    data = LoggedBandit(
        z["action"], z["reward"], z["pscore"], n_actions=80, position=z["position"], n_positions=3
    )
    n = data.n
    pi = np.full((n, 80), 1 / 80) if target == "uniform" else z["target_softmax"]
    q = z["estimated_rewards"].astype(np.float64)
    for obp_name, (name, lam) in OBP_NAMES.items():
        got = estimate(name, data, pi, q, lam=lam, n_boot=10)
        assert got.value == pytest.approx(ref[obp_name], abs=1e-9), obp_name
    d = diagnostics(data, pi)
    assert 0 < d["ess"] <= n
    assert d["max_weight"] >= d["mean_weight"] > 0


def _synthetic(n: int = 3000, k: int = 5, seed: int = 0) -> tuple[LoggedBandit, np.ndarray, np.ndarray]:
    """A logged bandit with known truth: behaviour softmax, target another softmax."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k))
    pb = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    pe = np.exp(-x) / np.exp(-x).sum(1, keepdims=True)
    a = np.array([rng.choice(k, p=p) for p in pb])
    mu = 1 / (1 + np.exp(-(x - 1)))
    r = (rng.random(n) < mu[np.arange(n), a]).astype(float)
    return LoggedBandit(a, r, pb[np.arange(n), a], n_actions=k), pe, mu


def test_exact_identities() -> None:
    data, pe, mu = _synthetic()
    zero = np.zeros_like(mu)
    dm = estimate("dm", data, pe, mu).value
    dr = estimate("dr", data, pe, mu).value
    assert estimate("switch_dr", data, pe, mu, lam=1e-12).value == pytest.approx(
        dm, abs=1e-12
    )  # Switch(0) = DM
    assert estimate("switch_dr", data, pe, mu, lam=1e12).value == pytest.approx(
        dr, abs=1e-12
    )  # Switch(∞) = DR
    assert estimate("dr", data, pe, zero).value == pytest.approx(estimate("ips", data, pe).value, abs=1e-12)
    assert estimate("sndr", data, pe, zero).value == pytest.approx(
        estimate("snips", data, pe).value, abs=1e-12
    )
    assert estimate("ips_clip", data, pe, lam=1e12).value == pytest.approx(estimate("ips", data, pe).value)
    no_reward = LoggedBandit(data.action, np.zeros(data.n), data.pscore, n_actions=data.n_actions)
    assert estimate("dr", no_reward, pe, zero).value == 0.0  # zero model, zero rewards
    sn = estimate("snips", data, pe)
    assert data.reward.min() <= sn.value <= data.reward.max()  # self-normalised: bounded
    assert sn.ci95[0] <= sn.value <= sn.ci95[1]


BAD = [
    ("pscore 0", dict(pscore=[0.5, 0.0, 0.2]), "pscore: round 1 has propensity 0.0, outside (0, 1]"),
    ("pscore > 1", dict(pscore=[0.5, 1.5, 0.2]), "pscore: round 1 has propensity 1.5, outside (0, 1]"),
    ("pscore length", dict(pscore=[0.5, 0.2]), "pscore: length 2 but action has 3 rounds"),
    ("reward length", dict(reward=[1, 0]), "reward: length 2 but action has 3 rounds"),
    ("action range", dict(action=[0, 4, 1]), "action: round 1 has action 4, outside [0, 4)"),
    ("position range", dict(position=[0, 0, 2]), "position: round 2 has position 2, outside [0, 2)"),
    ("reward nan", dict(reward=[1, np.nan, 0]), "reward: round 1 is not a finite number"),
]


@pytest.mark.parametrize(("case", "edit", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_logged_feedback_gives_one_clear_error(case: str, edit: dict, message: str) -> None:
    kw: dict = dict(
        action=[0, 1, 2],
        reward=[1, 0, 0],
        pscore=[0.5, 0.25, 0.25],
        n_actions=4,
        position=[0, 1, 0],
        n_positions=2,
    )
    kw.update(edit)
    with pytest.raises(ShopsimError) as exc:
        LoggedBandit(**kw)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_bad_target_and_missing_inputs() -> None:
    data = LoggedBandit([0, 1, 2], [1, 0, 0], [0.5, 0.25, 0.25], n_actions=4)
    pi = np.full((3, 4), 0.25)
    bad = pi.copy()
    bad[2, 0] = 0.5
    with pytest.raises(
        ShopsimError, match=r"action_dist: probabilities of round 2 at position 0 sum to 1.25, not 1"
    ):
        estimate("ips", data, bad)
    with pytest.raises(ShopsimError, match=r"action_dist: shape \(3, 3, 1\), expected"):
        estimate("ips", data, np.full((3, 3), 1 / 3))
    with pytest.raises(ShopsimError, match="dr: needs a reward model"):
        estimate("dr", data, pi)
    no_p = LoggedBandit([0, 1, 2], [1, 0, 0], None, n_actions=4)
    with pytest.raises(ShopsimError, match="pscore: this log has no propensities"):
        estimate("snips", no_p, pi)
    assert estimate("dm", no_p, pi, np.zeros((3, 4))).value == 0.0


def test_bandit_feedback_has_obps_keys_shapes_and_dtypes() -> None:
    from shopsim.evaluation.ope.feedback import SINGLE_KEYS, from_bandit_feedback, to_bandit_feedback

    z = np.load(OBD / "obp_reference.npz")
    data = LoggedBandit(
        z["action"], z["reward"], z["pscore"], n_actions=80, position=z["position"], n_positions=3
    )
    fb = to_bandit_feedback(data, context=np.ones((data.n, 4)), action_context=np.ones((80, 2)))
    assert tuple(fb) == SINGLE_KEYS
    assert fb["n_rounds"] == 2000
    assert fb["n_actions"] == 80
    for key, dtype in (
        ("action", np.int64),
        ("position", np.int64),
        ("reward", np.float64),
        ("pscore", np.float64),
    ):
        assert fb[key].shape == (2000,)
        assert fb[key].dtype == dtype
    assert fb["context"].shape == (2000, 4)
    assert fb["action_context"].shape == (80, 2)
    back = from_bandit_feedback(fb)
    pi = np.full((data.n, 80), 1 / 80)
    assert estimate("snips", back, pi).value == estimate("snips", data, pi).value


@pytest.mark.parametrize(
    ("joint", "prefix", "marginal", "message"),
    [
        ([0.1, 0.2], [0.1, 0.1], [0.5, 0.5], "pscore > pscore_cascade at row 1 (0.2 > 0.1)"),
        ([0.1, 0.1], [0.2, 0.6], [0.5, 0.5], "pscore_cascade > pscore_item_position at row 1 (0.6 > 0.5)"),
        ([0.1, 0.0], [0.2, 0.2], [0.5, 0.5], "pscore: row 1 is 0.0, outside (0, 1]"),
        ([0.1, 0.1], [0.2, 0.2], [0.5, 1.5], "pscore_item_position: row 1 is 1.5, outside (0, 1]"),
    ],
)
def test_slate_propensity_invariants(joint: list, prefix: list, marginal: list, message: str) -> None:
    from shopsim.evaluation.ope.feedback import check_slate_propensities

    with pytest.raises(ShopsimError) as exc:
        check_slate_propensities(np.array(joint), np.array(prefix), np.array(marginal))
    assert str(exc.value).startswith(message)
    check_slate_propensities(np.array([0.1]), np.array([0.2]), np.array([0.5]))  # valid: no error


# --- slate estimators against exact truth ----------------------------------------------------

K, L = 4, 2
PB = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])  # behaviour, per slot
PE = np.array([[0.1, 0.1, 0.3, 0.5], [0.5, 0.3, 0.1, 0.1]])  # target, per slot
MU = np.array([[0.05, 0.05, 0.60, 0.60], [0.20, 0.40, 0.10, 0.60]])  # click prob of item at slot


def _truth(cascade: bool) -> float:
    total = 0.0
    for a0 in range(K):
        for a1 in range(K):
            p = PE[0, a0] * PE[1, a1]
            c0 = MU[0, a0]
            c1 = MU[1, a1] * ((1 - c0) if cascade else 1.0)
            total += p * (c0 + c1)
    return total


def _slate_log(n: int, cascade: bool, rng: np.random.Generator) -> dict[str, Any]:
    a = np.stack([rng.choice(K, n, p=PB[s]) for s in range(L)], axis=1)
    u = rng.random((n, L))
    r0 = u[:, 0] < MU[0, a[:, 0]]
    r1 = (u[:, 1] < MU[1, a[:, 1]]) & (~r0 if cascade else True)
    pb = np.stack([PB[s, a[:, s]] for s in range(L)], axis=1)
    pe = np.stack([PE[s, a[:, s]] for s in range(L)], axis=1)
    return {
        "action": a,
        "reward": np.stack([r0, r1], axis=1).astype(float),
        "joint": (pe.prod(1), pb.prod(1)),
        "prefix": (np.cumprod(pe, 1), np.cumprod(pb, 1)),
        "marginal": (pe, pb),
    }


def _est(name: str, log: dict) -> float:
    from shopsim.evaluation.ope.slate import slate_round_values

    return float(
        slate_round_values(
            name, log["reward"], joint=log["joint"], prefix=log["prefix"], marginal=log["marginal"]
        ).mean()
    )


def test_slate_estimators_are_unbiased_and_iips_is_biased_on_cascades() -> None:
    rng = np.random.default_rng(0)
    for cascade, unbiased in (
        (False, ("sips", "iips", "rips", "pi", "cascade_dr")),
        (True, ("sips", "rips", "cascade_dr")),
    ):
        truth = _truth(cascade)
        ests: dict[str, list[float]] = {name: [] for name in ("sips", "iips", "rips", "pi", "cascade_dr")}
        for _ in range(300):
            log = _slate_log(2000, cascade, rng)
            for name in ests:
                ests[name].append(_est(name, log))
        for name in unbiased:
            e = np.array(ests[name])
            assert abs(e.mean() - truth) < 3.5 * e.std() / np.sqrt(len(e)), (name, cascade, e.mean(), truth)
        if cascade:  # the deliberate known-bias case: IIPS ignores that a click above stops the cascade
            e = np.array(ests["iips"])
            assert e.mean() - truth > 10 * e.std() / np.sqrt(len(e))


def test_slate_identities_error_decay_and_coverage() -> None:
    from shopsim.evaluation.ope.estimators import LoggedBandit, estimate
    from shopsim.evaluation.ope.slate import slate_estimate, slate_round_values

    rng = np.random.default_rng(1)
    log = _slate_log(3000, True, rng)
    rips = slate_round_values("rips", log["reward"], prefix=log["prefix"])
    cdr0 = slate_round_values("cascade_dr", log["reward"], prefix=log["prefix"], q_hat=np.zeros((3000, L)))
    np.testing.assert_allclose(cdr0, rips)  # Cascade-DR with a zero model = RIPS
    one = {k: (v[0][:, :1], v[1][:, :1]) for k, v in log.items() if k == "marginal"}
    pi1 = slate_round_values("pi", log["reward"][:, :1], marginal=one["marginal"]).mean()
    single = LoggedBandit(log["action"][:, 0], log["reward"][:, 0], one["marginal"][1][:, 0], n_actions=K)
    assert pi1 == pytest.approx(
        estimate("ips", single, np.tile(PE[0], (3000, 1))).value, rel=1e-12
    )  # PI(1 slot) = IPS
    truth = _truth(True)
    rmse = {}
    for n in (500, 2000, 8000):
        errs = [_est("rips", _slate_log(n, True, rng)) - truth for _ in range(150)]
        rmse[n] = float(np.sqrt(np.mean(np.square(errs))))
    assert 0.35 < rmse[2000] / rmse[500] < 0.7  # 1/√n: a 4× larger log halves the error
    assert 0.35 < rmse[8000] / rmse[2000] < 0.7
    cover = np.mean(
        [
            (lambda e: e.ci95[0] <= truth <= e.ci95[1])(
                slate_estimate("rips", lg["reward"], prefix=lg["prefix"], n_boot=300, seed=i)
            )
            for i, lg in enumerate(_slate_log(2000, True, rng) for _ in range(200))
        ]
    )
    assert 0.88 <= cover <= 0.99, cover


# --- multi-step sessions ---------------------------------------------------------------------

PB_S = np.array([0.7, 0.3])  # behaviour: the same distribution at both steps
PE_S = np.array([0.2, 0.8])
MU_S = np.array([0.2, 0.6])  # step-1 click probability of each action
CONT = np.array([0.9, 0.4])  # probability of a second step after each first action
NU = np.array([[0.1, 0.5], [0.7, 0.3]])  # step-2 click probability given (first, second) action


def _session_truth() -> float:
    v = 0.0
    for a in range(2):
        v += PE_S[a] * (MU_S[a] + CONT[a] * sum(PE_S[b] * NU[a, b] for b in range(2)))
    return v


def _two_step_sessions(
    rng: np.random.Generator, n: int = 1000
) -> tuple[list[np.ndarray], list[np.ndarray], Callable[[np.ndarray, np.ndarray], tuple[list, list]]]:
    """One log of ``n`` two-step sessions: rewards, importance ratios, and a reward model builder
    (q_hat, v_hat for given step-1 and step-2 click tables)."""
    a = (rng.random(n) < PB_S[1]).astype(int)
    b = (rng.random(n) < PB_S[1]).astype(int)
    r1 = (rng.random(n) < MU_S[a]).astype(float)
    go = rng.random(n) < CONT[a]
    r2 = (rng.random(n) < NU[a, b]).astype(float)
    rho1, rho2 = PE_S[a] / PB_S[a], PE_S[b] / PB_S[b]
    rw = [np.array([r1[j], r2[j]]) if go[j] else np.array([r1[j]]) for j in range(n)]
    rt = [np.array([rho1[j], rho2[j]]) if go[j] else np.array([rho1[j]]) for j in range(n)]

    def model(q1: np.ndarray, q2: np.ndarray) -> tuple[list, list]:
        v1 = float(PE_S @ q1)
        qs = [np.array([q1[a[j]], q2[a[j], b[j]]])[: len(rw[j])] for j in range(n)]
        vs = [np.array([v1, PE_S @ q2[a[j]]])[: len(rw[j])] for j in range(n)]
        return qs, vs

    return rw, rt, model


@pytest.mark.slow  # 300 simulated logs: a Monte Carlo check (~15 s)
def test_session_estimators_against_exact_truth() -> None:
    from shopsim.evaluation.ope.sessions import session_estimate

    rng = np.random.default_rng(3)
    truth = _session_truth()
    pdis, wpdis, cover = [], [], []
    for i in range(300):
        rw, rt, _ = _two_step_sessions(rng)
        e = session_estimate("pdis", rw, rt, n_boot=200, seed=i)
        pdis.append(e.value)
        cover.append(e.ci95[0] <= truth <= e.ci95[1])
        wpdis.append(session_estimate("wpdis", rw, rt, n_boot=10).value)
    p, w = np.array(pdis), np.array(wpdis)
    assert abs(p.mean() - truth) < 3.5 * p.std() / np.sqrt(len(p))  # PDIS: unbiased
    assert abs(w.mean() - truth) < 0.02  # WPDIS: consistent, small bias at n = 1000
    assert w.std() < p.std()  # and less variable
    assert 0.88 <= np.mean(cover) <= 0.99


def test_session_dr_with_a_zero_model_is_pdis() -> None:
    """Identities: a zero model turns DR into PDIS and WDR into WPDIS (value and interval)."""
    from shopsim.evaluation.ope.sessions import session_estimate

    rng = np.random.default_rng(4)
    for i in range(3):
        rw, rt, _ = _two_step_sessions(rng)
        zeros = [np.zeros(len(r)) for r in rw]
        for d_name, is_name in (("dr", "pdis"), ("wdr", "wpdis")):
            est = session_estimate(d_name, rw, rt, q_hat=zeros, v_hat=zeros, n_boot=50, seed=i)
            ref = session_estimate(is_name, rw, rt, n_boot=50, seed=i)
            assert est.value == pytest.approx(ref.value, abs=1e-12)
            assert est.ci95 == pytest.approx(ref.ci95, abs=1e-12)
    with pytest.raises(ShopsimError, match="dr: needs a reward model"):
        session_estimate("dr", rw, rt)


@pytest.mark.slow  # 300 simulated logs: a Monte Carlo check (~40 s)
def test_session_dr_is_unbiased_with_a_wrong_model() -> None:
    from shopsim.evaluation.ope.sessions import session_estimate

    rng = np.random.default_rng(4)
    truth = _session_truth()
    q_step1 = np.array([0.35, 0.35])  # a deliberately wrong immediate-reward model
    q_step2 = np.full((2, 2), 0.2)
    dr, pdis, dr_good = [], [], []
    for _ in range(300):
        rw, rt, model = _two_step_sessions(rng)
        qs, vs = model(q_step1, q_step2)
        dr.append(session_estimate("dr", rw, rt, q_hat=qs, v_hat=vs, n_boot=10).value)
        pdis.append(session_estimate("pdis", rw, rt, n_boot=10).value)
        # with the true immediate rewards (and no continuation value) DR varies less than PDIS
        qg, vg = model(MU_S, NU)
        dr_good.append(session_estimate("dr", rw, rt, q_hat=qg, v_hat=vg, n_boot=10).value)
    d = np.array(dr)
    assert abs(d.mean() - truth) < 3.5 * d.std() / np.sqrt(len(d))  # unbiased with a wrong model
    assert np.std(dr_good) < np.std(pdis)


def test_session_bad_inputs() -> None:
    from shopsim.evaluation.ope.sessions import session_estimate

    with pytest.raises(ShopsimError, match="session 1: 2 rewards but 1 importance ratios"):
        session_estimate("pdis", [np.array([1.0]), np.array([0.0, 1.0])], [np.array([1.0]), np.array([2.0])])
    with pytest.raises(ShopsimError, match="session 0: importance ratios must be finite and ≥ 0"):
        session_estimate("pdis", [np.array([1.0])], [np.array([-1.0])])
    with pytest.raises(ShopsimError, match="estimator 'wis': unknown"):
        session_estimate("wis", [np.array([1.0])], [np.array([1.0])])


def test_stochastic_logging_policy_records_exact_propensities() -> None:
    from shopsim.agents.logging_policies import StochasticSlate
    from shopsim.evaluation.ope.feedback import check_slate_propensities

    class Fixed:
        name = "fixed"

        def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
            return np.tile(np.array([2.0, 1.0, 0.5, 0.0, -1.0]), (len(obs["cand_mask"]), 1))

    obs = {"cand_mask": np.array([[1, 1, 1, 0, 1]], np.int8)}
    pol = StochasticSlate(Fixed(), 2, epsilon=0.2, temperature=0.5, n_mc=20_000, seed=0)
    valid = [0, 1, 2, 4]
    slates = np.array([(a, b) for a in valid for b in valid if a != b])
    many = {k: np.repeat(v, len(slates), axis=0) for k, v in obs.items()}
    p = pol.propensities(many, slates)
    assert p["joint"].sum() == pytest.approx(1.0, abs=1e-12)  # a distribution over all ordered slates
    check_slate_propensities(p["joint"], p["prefix"][:, 0], p["marginal"][:, 0])
    check_slate_propensities(p["joint"], p["prefix"][:, 1], p["marginal"][:, 1], atol=1e-9)
    for item in valid:  # marginal at slot 2 = sum of joints with that item second (MC within 0.01)
        exact = p["joint"][slates[:, 1] == item].sum()
        assert p["marginal"][slates[:, 1] == item, 1][0] == pytest.approx(exact, abs=0.01)
    drawer = StochasticSlate(Fixed(), 2, epsilon=0.2, temperature=0.5, n_mc=1, seed=1)
    draws = drawer.predict({"cand_mask": np.repeat(obs["cand_mask"], 20_000, axis=0)})[0]
    assert not (draws == 3).any()  # masked candidate never shown
    freq = np.array([np.mean((draws[:, 0] == a) & (draws[:, 1] == b)) for a, b in slates])
    np.testing.assert_allclose(freq, p["joint"], atol=0.01)  # the recorded joint is what it draws


def test_simulator_logs_carry_propensities_and_recover_a_policys_value(toy_sim: Path) -> None:
    from shopsim.agents.baselines.slates import ClickModelGreedy, TwoTowerSlate
    from shopsim.agents.logging_policies import StochasticSlate
    from shopsim.envs.engine import ShopperConfig
    from shopsim.envs.model.simulator import Simulator
    from shopsim.evaluation.ope.sim_logging import log_in_simulator, on_policy_value

    sim = Simulator.load(toy_sim)
    cfg = ShopperConfig(slate_size=3, n_candidates=20, split="test")
    beh = StochasticSlate(TwoTowerSlate(3), 3, epsilon=0.3, n_mc=0, seed=1)
    same = StochasticSlate(TwoTowerSlate(3), 3, epsilon=0.3, n_mc=0, seed=5)
    tgt = StochasticSlate(ClickModelGreedy(3), 3, epsilon=0.3, temperature=2.0, n_mc=0, seed=2)
    log = log_in_simulator(sim, beh, {"same": same, "greedy": tgt}, episodes=6000, config=cfg, seed=0)
    np.testing.assert_allclose(log["same_joint"], log["pscore_joint"], rtol=1e-12)  # same policy: weight 1
    assert (log["pscore_joint"] <= log["pscore_prefix"][:, 0] + 1e-12).all()
    w = log["greedy_joint"] / log["pscore_joint"]
    snips = np.sum(w * log["reward"]) / np.sum(w)
    res = on_policy_value(sim, tgt, episodes=6000, config=cfg, seed=99)
    truth = res.returns.sum() / res.steps.sum()
    assert abs(snips - truth) / truth < 0.1, (snips, truth)
    assert abs(snips - truth) < abs(log["reward"].mean() - truth)  # the estimate moved towards the target


def test_estimated_propensity_mode_is_labelled_and_recovers_uniform_logging() -> None:
    from shopsim.evaluation.ope.estimators import EstimatedPropensityWarning, with_estimated_pscore

    rng = np.random.default_rng(0)
    n, k = 20_000, 8
    a = rng.integers(0, k, n)  # uniform logging, propensities not recorded
    mu = np.linspace(0.05, 0.4, k)
    r = (rng.random(n) < mu[a]).astype(float)
    blind = LoggedBandit(a, r, None, n_actions=k)
    with pytest.warns(EstimatedPropensityWarning, match="can be biased"):
        est = with_estimated_pscore(blind)
    assert est.meta["pscore"] == "estimated"
    assert est.pscore is not None
    np.testing.assert_allclose(est.pscore, 1 / k, atol=0.01)
    pe = np.tile(np.eye(k)[k - 1], (n, 1))  # always the best action
    assert estimate("snips", est, pe).value == pytest.approx(mu[-1], abs=0.03)


class _Fixed:
    """A deterministic slate policy that always shows the same slate."""

    def __init__(self, slate: list[int]) -> None:
        self.slate = np.array(slate)

    def predict(self, obs: dict, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.tile(self.slate, (obs["cand_mask"].shape[0], 1)), None


def test_mixture_behaviour_propensities_are_exact_per_page_and_per_session() -> None:
    import itertools

    from shopsim.agents.logging_policies import MixtureSlate
    from shopsim.evaluation.ope.feedback import check_slate_propensities

    comps = {"random": None, "a": _Fixed([0, 1]), "b": _Fixed([0, 2])}
    slates = np.array(list(itertools.permutations(range(4), 2)))  # all 12 ordered slates
    obs = {"cand_mask": np.ones((len(slates), 4), np.int8)}
    for assignment in ("page", "session"):
        mix = MixtureSlate(comps, 2, epsilon=0.2, assignment=assignment, seed=0)
        mix.predict(obs)  # computes the component slates for this observation
        mix.reset_rows(np.arange(len(slates)))
        p = mix.propensities(obs, slates)
        assert p["joint"].sum() == pytest.approx(1.0, abs=1e-12)
        for slot in range(2):
            check_slate_propensities(p["joint"], p["prefix"][:, slot], p["marginal"][:, slot], atol=1e-12)
        for slot in range(2):  # each slot's marginals over items sum to 1
            items = np.zeros(4)
            np.add.at(items, slates[:, slot], p["joint"])
            marg = [p["marginal"][slates[:, slot] == i, slot][0] for i in range(4)]
            np.testing.assert_allclose(items, marg)
        # (0, 1): ⅓·(0.8 + 0.2/12) + ⅓·0.2/12 + ⅓/12
        assert p["joint"][0] == pytest.approx((0.8 + 0.2 / 12) / 3 + 0.2 / 36 + 1 / 36)
    # per session: the product of recorded page propensities is the trajectory's probability
    n = 60_000
    mix = MixtureSlate(comps, 2, epsilon=0.2, assignment="session", seed=1)
    one = {"cand_mask": np.ones((n, 4), np.int8)}
    mix.reset_rows(np.arange(n))
    s1, _ = mix.predict(one)
    j1 = mix.last["joint"]
    s2, _ = mix.predict(one)
    j2 = mix.last["joint"]
    traj = (s1[:, 0] == 0) & (s1[:, 1] == 1) & (s2[:, 0] == 0) & (s2[:, 1] == 1)
    mu = {"random": 1 / 12, "a": 0.8 + 0.2 / 12, "b": 0.2 / 12}
    exact = sum(m**2 for m in mu.values()) / 3  # Σ_k P(k) μ_k(s)·μ_k(s), not (Σ_k P(k) μ_k(s))²
    assert (j1 * j2)[traj] == pytest.approx(exact, rel=1e-12)
    assert traj.mean() == pytest.approx(exact, abs=4 * np.sqrt(exact / n))


def test_slot_reward_model_recovers_click_probabilities() -> None:
    from shopsim.evaluation.ope.reward_model import SlotRewardModel, cross_fit

    rng = np.random.default_rng(0)
    n, k, f = 20_000, 3, 4
    feat = rng.normal(size=(n, k, f)).astype(np.float32)
    theta, beta = np.array([1.0, -0.5, 0.0, 0.8]), np.array([-1.0, -1.5, -2.0])
    p = 1 / (1 + np.exp(-(feat @ theta + beta)))
    clicks = (rng.random((n, k)) < p).astype(float)
    model = SlotRewardModel().fit(feat, clicks, 2 * clicks, 2 * clicks.sum(1) + 0.5)
    err = np.abs(model.predict(feat) - 2 * p)  # slot value = reward per click × P(click)
    assert err.mean() < 0.01
    assert err.max() < 0.08
    assert model.c0 == pytest.approx(0.5)
    fold = np.arange(n) % 2
    q, others, c0 = cross_fit(fold, feat, clicks, clicks, clicks.sum(1), {"t": feat[:, ::-1]})
    assert q.shape == (n, k)
    assert others["t"].shape == (n, k)
    assert c0 == pytest.approx(0.0)
    assert np.abs(q - p).mean() < 0.01


def test_logged_bandit_from_canonical_events_matches_the_raw_obd_log(tmp_path: Path) -> None:
    import pandas as pd

    from shopsim.data import PrepareOptions, prepare
    from shopsim.evaluation.ope.feedback import from_events
    from shopsim.experiments.ope_obd import read_policy_log

    prepare(OBD / "bts", PrepareOptions(format="obd", split=(1.0, 0.0, 0.0)), tmp_path / "d")
    events = pd.read_parquet(tmp_path / "d" / "events.parquet")
    data, ids = from_events(events, source="bts")
    raw = read_policy_log(OBD / "bts")
    assert data.n == len(raw)
    assert data.reward.sum() == raw["click"].sum()
    assert sorted(data.pscore) == pytest.approx(sorted(raw["propensity_score"]))  # type: ignore[arg-type]
    np.testing.assert_array_equal(np.bincount(data.position), np.bincount(raw["position"] - 1))
    # the clicked (item, position) pairs are the raw log's
    clicked = {(ids[a], p) for a, p, r in zip(data.action, data.position, data.reward, strict=True) if r}
    assert clicked == {(str(i), p - 1) for i, p in raw.loc[raw["click"] == 1, ["item_id", "position"]].values}
    # bad canonical events: one clear line each
    with pytest.raises(ShopsimError, match=r"^bts: 3 impression rows have no position"):
        from_events(events.assign(position=events["position"].mask(events.index < 3)), source="bts")
    half = events.assign(propensity=events["propensity"].mask(events.index % 2 == 0))
    with pytest.raises(ShopsimError, match=r"impressions have no propensity; drop them or use the estimated"):
        from_events(half, source="bts")
    with pytest.raises(ShopsimError, match=r"^x: no impression rows"):
        from_events(events[events["event"] != "impression"], source="x")


def test_simulator_log_exports_obps_long_slate_format_and_back(toy_sim: Path) -> None:
    from shopsim.agents.baselines.slates import ClickModelGreedy, TwoTowerSlate
    from shopsim.agents.logging_policies import ComponentTarget, MixtureSlate
    from shopsim.envs.engine import ShopperConfig
    from shopsim.envs.model.simulator import Simulator
    from shopsim.evaluation.ope.feedback import (
        SLATE_KEYS,
        from_slate_bandit_feedback,
        to_slate_bandit_feedback,
    )
    from shopsim.evaluation.ope.sim_logging import log_in_simulator
    from shopsim.evaluation.ope.slate import slate_estimate

    sim = Simulator.load(toy_sim)
    cfg = ShopperConfig(slate_size=3, n_candidates=20, split="test")
    mix = MixtureSlate(
        {"random": None, "tt": TwoTowerSlate(3), "g": ClickModelGreedy(3)}, 3, epsilon=0.2, seed=0
    )
    log = log_in_simulator(sim, mix, {"g": ComponentTarget(mix, "g")}, config=cfg, episodes=300, seed=1)
    n = len(log["reward"])
    fb = to_slate_bandit_feedback(log, n_unique_action=sim.catalog.n_items, context=np.ones((n, 2)))
    assert tuple(fb) == SLATE_KEYS
    assert (fb["n_rounds"], fb["len_list"], fb["n_unique_action"]) == (n, 3, sim.catalog.n_items)
    for key in SLATE_KEYS[3:]:
        want = (n, 2) if key == "context" else (n * 3,)
        assert fb[key].shape == want, key
        assert fb[key].dtype == (np.int64 if key in ("slate_id", "position", "action") else np.float64), key
    back = from_slate_bandit_feedback(fb)
    np.testing.assert_array_equal(back["items"], log["items"])
    np.testing.assert_array_equal(back["pscore_prefix"], log["pscore_prefix"])
    joint = (log["g_joint"], back["pscore_joint"])
    assert slate_estimate("sips", back["reward"], joint=joint).value == pytest.approx(
        slate_estimate("sips", log["slot_reward"], joint=(log["g_joint"], log["pscore_joint"])).value,
        abs=1e-12,
    )
    with pytest.raises(ShopsimError, match="pscore \\(the joint propensity\\) differs within a slate"):
        from_slate_bandit_feedback({**fb, "pscore": fb["pscore"] * np.tile([1.0, 0.5, 1.0], n)})
    with pytest.raises(ShopsimError, match=r"slate bandit_feedback: missing key\(s\) pscore_cascade"):
        from_slate_bandit_feedback({k: v for k, v in fb.items() if k != "pscore_cascade"})
