"""Off-policy estimators: obp's answers on identical inputs, identities, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shopsim.errors import ShopsimError
from shopsim.experiments.ope.estimators import LoggedBandit, diagnostics, estimate

OBD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "obd_sample"
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


@pytest.mark.skipif(not (OBD / "obp_reference.npz").exists(), reason="needs ../shared/data/obd_sample")
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
