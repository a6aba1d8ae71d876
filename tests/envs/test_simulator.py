"""The shopper response model, the fidelity report and the rewards, against ground truth."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from shopsim.encoders.bundle import EncoderBundle, NumpyStateEncoder
from shopsim.encoders.finetune import pad_histories
from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.env import ShopperEnv
from shopsim.envs.fitting.fidelity import auc, grouped_auc, reliability
from shopsim.envs.model.features import CLICK_FEATURES, click_features
from shopsim.envs.model.response import fit_scorer
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import StepEvents, WeightedReward, make_reward
from shopsim.envs.toy import toy_next
from shopsim.errors import ShopsimError
from shopsim.tests.helpers import reseal

# --- metrics --------------------------------------------------------------------------------


def test_auc_equals_pair_counting() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.3
    s = np.round(rng.normal(size=60), 1)  # with ties
    pairs = [(i, j) for i, j in combinations(range(60), 2) if y[i] != y[j]]
    wins = sum(
        1.0 if s[p] > s[n] else 0.5 if s[p] == s[n] else 0.0
        for i, j in pairs
        for p, n in [(i, j) if y[i] else (j, i)]
    )
    assert auc(y, s) == pytest.approx(wins / (y.sum() * (~y).sum()))
    groups = np.repeat(np.arange(6), 10)
    per = [auc(y[groups == g], s[groups == g]) for g in range(6)]
    assert grouped_auc(y, s, groups) == pytest.approx(np.nanmean(per))


def test_ece_is_small_for_calibrated_and_large_for_overconfident() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = rng.random(p.size) < p
    assert reliability(y, p)["ece"] < 0.01
    assert reliability(y, np.clip(p * 1.8, 0, 1))["ece"] > 0.2


# --- fitting recovers known parameters ------------------------------------------------------


def test_logistic_fit_recovers_coefficients() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40_000, 3))
    w = np.array([1.5, -2.0, 0.0])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(x @ w - 1.0)))).astype(float)
    res = fit_scorer(x, y, np.arange(len(x)) % 500, hidden=0, seed=0)
    np.testing.assert_allclose(res.scorer.w2 / res.scorer.std, w, atol=0.08)


def test_position_based_model_recovers_examination() -> None:
    """Impression logs: e(p) and the relevance model are identified jointly (e(1) = 1)."""
    rng = np.random.default_rng(3)
    n, k = 20_000, 4
    exam = np.array([1.0, 0.7, 0.45, 0.3])
    x = rng.normal(size=(n, k, 1))
    rel = 1 / (1 + np.exp(-(1.2 * x[..., 0] - 0.5)))
    y = rng.random((n, k)) < exam * rel
    pos = np.broadcast_to(np.arange(k), (n, k))
    res = fit_scorer(
        x.reshape(-1, 1), y.reshape(-1).astype(float), np.repeat(np.arange(n) % 400, k),
        hidden=0, positions=pos.reshape(-1), n_positions=k, seed=0,
    )  # fmt: skip
    assert res.examination is not None
    np.testing.assert_allclose(res.examination, exam, atol=0.05)


def test_numpy_state_encoder_equals_torch(toy_sim: Path) -> None:
    enc_dir = toy_sim.parent / "enc"
    bundle = EncoderBundle.load(enc_dir)
    np_enc = NumpyStateEncoder.from_model(bundle.model)
    rng = np.random.default_rng(4)
    hists = [rng.integers(0, 32, rng.integers(1, 25)) for _ in range(50)]
    evs = [rng.integers(1, 6, len(h)) for h in hists]
    expected = bundle.encode_state(hists, evs)
    idx, evc, mask = pad_histories(hists, evs, np_enc.max_history)
    got = np_enc(np.asarray(bundle.item_vectors), np.where(mask.numpy(), idx.numpy(), -1), evc.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with torch.no_grad():
        assert np.all(np_enc(bundle.item_vectors, np.full((2, 3), -1), np.zeros((2, 3), int)) == 0)


# --- the toy shop: the simulator learned the known optimum ----------------------------------


def test_toy_simulator_ranks_the_known_best_item_first(toy_sim: Path) -> None:
    sim = Simulator.load(toy_sim)
    core = ShopperBatch(sim, 32, ShopperConfig(n_candidates=31, split="test"))
    hist = np.full((32, core.hist.shape[1]), -1)
    hist[:, 0] = np.arange(32)
    core.hist[:] = hist
    core.hist_ev[:] = np.where(hist >= 0, 2, 0)
    core.intent[:] = -1  # no hidden intent: the history alone
    core.state[:] = sim.state_encoder(sim.catalog.vectors, core.hist, core.hist_ev)
    others = np.array([[j for j in range(32) if j != i] for i in range(32)])
    g = sim.click.logit(click_features(sim.catalog, core.context(), others).reshape(-1, len(CLICK_FEATURES)))
    best = others[np.arange(32), g.reshape(32, 31).argmax(1)]
    assert [int(b) for b in best] == [toy_next(i) for i in range(32)]


def test_toy_oracle_slate_beats_random(toy_sim: Path) -> None:
    env = ShopperEnv(toy_sim, split="test", slate_size=3, n_candidates=20)
    rng = np.random.default_rng(0)

    def mean_return(policy: Callable[[], np.ndarray], n: int = 600) -> float:
        total = 0.0
        env.reset(seed=1)
        for _ in range(n):
            done = False
            while not done:
                _, r, term, trunc, _ = env.step(policy())
                total += float(r)
                done = term or trunc
            env.reset()
        return total / n

    def oracle() -> np.ndarray:
        cand, last = env.core.cand[0], int(env.core.hist[0, 0])
        hit = np.flatnonzero(cand == toy_next(last))
        first = int(hit[0]) if len(hit) else 0
        return np.r_[first, [i for i in range(3) if i != first][:2]]

    rand = mean_return(lambda: rng.choice(20, 3, replace=False))
    best = mean_return(oracle)
    assert best > 1.5 * rand, (best, rand)


def test_toy_fidelity_report(toy_sim: Path) -> None:
    rep = json.loads((toy_sim / "fidelity.json").read_text())
    aucs = rep["click"]["held_out"]["auc"]
    assert aucs["simulator"] >= aucs["history"] - 0.005
    assert aucs["history"] > aucs["popularity"] + 0.2
    assert rep["examination"]["kind"] == "assumption"
    assert rep["calibration"]["kind"] == "calibrated"
    cal = rep["calibration"]
    assert cal["valid_sim_clicks_per_session"] == pytest.approx(
        cal["valid_real_clicks_per_session"], rel=0.05
    )
    assert rep["replay"]["clicks"]["ks"] < 0.2
    assert rep["leave"]["leave_no_click_logit"]["kind"] == "assumption"
    assert {"sessions.png", "categories.png"} <= set(rep["plots"])
    assert all((toy_sim / "plots" / p).stat().st_size > 0 for p in rep["plots"])


# --- rewards --------------------------------------------------------------------------------


def _events() -> StepEvents:
    clicked = np.array([[1, 1, 0], [0, 0, 0]], bool)
    purchased = np.array([[1, 0, 0], [0, 0, 0]], bool)
    return StepEvents(
        items=np.array([[4, 5, 6], [7, -1, 8]]),
        shown=np.array([[1, 1, 1], [1, 0, 1]], bool),
        clicked=clicked,
        purchased=purchased,
        price=np.array([[10.0, 20.0, 30.0], [5.0, 0.0, 5.0]]),
        category=np.array([[1, 1, 2], [3, 0, 3]]),
        new_category=np.array([[1, 0, 1], [0, 0, 0]], bool),
        in_basket=np.array([[1, 0, 0], [0, 0, 0]], bool),
        popularity=np.array([[-2.0, -3.0, -1.0], [-1.0, 0.0, -1.0]]),
        left=np.array([False, True]),
        step=np.array([1, 4]),
    )


def test_weighted_reward_terms() -> None:
    ev = _events()
    np.testing.assert_allclose(WeightedReward()(ev), [2, 0])
    np.testing.assert_allclose(WeightedReward(click=0, purchase=1, revenue=0.1)(ev), [2.0, 0])
    np.testing.assert_allclose(WeightedReward(click=0, cross_category=2, basket=3)(ev), [5, 0])
    np.testing.assert_allclose(WeightedReward(click=0, diversity=1.0)(ev), [2 / 3, 1 / 3])
    np.testing.assert_allclose(WeightedReward(click=0, novelty=1.0)(ev), [5.0, 0])
    np.testing.assert_allclose(WeightedReward(click=0, no_click=-0.5, leave=-1)(ev), [0, -1.5])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"click": float("nan")}, "reward weight click=nan: expected a finite number"),
        ({"purchases": 1}, "reward: unknown term(s) purchases; use click, purchase"),
        (3, "reward: expected a callable or a dict of weights, got int"),
    ],
)
def test_bad_reward_specs(spec: object, message: str) -> None:
    with pytest.raises(ShopsimError) as exc:
        make_reward(spec)  # type: ignore[arg-type]
    assert message in str(exc.value)


# --- the CLI --------------------------------------------------------------------------------


def test_cli_fit_rejects_embeddings_of_other_data(
    toy_sim: Path, tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    other = tmp_path / "other_enc"
    shutil.copytree(toy_sim.parent / "enc", other)
    ids = json.loads((other / "item_ids.json").read_text())
    (other / "item_ids.json").write_text(json.dumps([*ids[:-1], "zzz"]))
    reseal(other)  # a consistent encoder folder, of other data
    code, out, err = cli(
        "simulator", "fit", toy_sim.parent / "data", "--embeddings", other, "--out", tmp_path / "s"
    )
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "embeddings do not match the data (32 items, 31 shared with the data's 32)" in err


def test_cli_fit_rejects_a_log_without_a_test_split(
    toy_sim: Path, tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    import pandas as pd

    data = tmp_path / "data"
    shutil.copytree(toy_sim.parent / "data", data)
    ev = pd.read_parquet(data / "events.parquet")
    ev.loc[ev["split"] == "test", "split"] = "train"
    ev.to_parquet(data / "events.parquet")
    reseal(data)  # a consistent log folder, without a test split
    code, _, err = cli(
        "simulator", "fit", data, "--embeddings", toy_sim.parent / "enc", "--out", tmp_path / "s"
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "the test split has no sessions; prepare the data with a test fraction" in err


def test_impression_log_fidelity_measures_examination_and_calibration(mind_sim: Path) -> None:
    rep = json.loads((mind_sim / "fidelity.json").read_text())
    held = rep["click"]["held_out"]
    assert rep["impressions"] is True
    assert rep["click"]["negatives"] == "impressions (shown, not clicked)"
    assert rep["examination"]["kind"] == "measured"
    assert rep["examination"]["values"][0] == 1.0
    assert set(held["ece"]) == set(held["auc"])
    assert set(held["auc_per_impression"]) == set(held["auc"])
    assert rep["calibration"]["click_offset"] == 0.0
    assert rep["purchase"]["mode"] == "never"
    assert (mind_sim / "plots" / "reliability.png").stat().st_size > 0
    assert rep["replay"]["policy"] == "logged first slate"


def test_env_sees_the_features_the_model_was_fitted_on(mind_sim: Path) -> None:
    """No train/serve skew: a simulated shopper's first logged slate gets exactly the click
    features of the same logged slate in the fitting/evaluation tables."""
    import pandas as pd

    from shopsim.data import SessionLog
    from shopsim.envs.fitting.fit import _contexts
    from shopsim.envs.model.episodes import click_examples

    sim = Simulator.load(mind_sim)
    eps = sim.episodes["test"]
    log = SessionLog.load(mind_sim.parent / "data")
    index = pd.Index(log.items["item_id"])
    ex = click_examples(
        log.split("test"), log.events, sim.catalog, index,
        max_history=sim.state_encoder.max_history, rng=np.random.default_rng(0),
    )  # fmt: skip
    first = np.r_[True, ex.session[1:] != ex.session[:-1]]
    assert list(ex.session[first]) == list(eps.session_ids)
    width = eps.logged_slate.shape[1]
    core = ShopperBatch(
        sim, len(eps), ShopperConfig(slate_size=width, n_candidates=max(width, 100), split="test")
    )
    core.reset_rows(np.arange(len(eps)), np.random.default_rng(0), np.arange(len(eps)))
    env_phi = click_features(sim.catalog, core.context(), eps.logged_slate.astype(np.int64))
    rows = np.flatnonzero(first)
    ctx = _contexts(
        sim.catalog,
        sim.state_encoder,
        ex.hist[rows],
        ex.hist_ev[rows],
        ex.intent[rows],
        ex.intent_ev[rows],
        ex.time[rows],
    )
    fit_phi = click_features(sim.catalog, ctx, ex.items[rows][:, :width])
    np.testing.assert_allclose(env_phi, fit_phi, atol=1e-5)


def test_dynamics_recover_the_toy_shops_structure(toy_sim: Path) -> None:
    """The toy walks its category's cycle 90% of the time and buys a category's first item 80%
    of the time: the measurements must show it (and they land in fidelity.json)."""
    from shopsim.data import SessionLog
    from shopsim.envs.model.dynamics import measure_dynamics

    log = SessionLog.load(toy_sim.parent / "data")
    dyn = measure_dynamics(log.split("train"), log.items)
    same = dyn["same_category_next"]
    assert same["rate"] > 0.85  # 0.9 cycle steps + 1/4 of the random jumps
    assert same["expected_by_popularity"] == pytest.approx(0.25, abs=0.02)
    # sessions have ≥ 3 steps by construction: nobody leaves after steps 1 or 2
    assert dyn["leave_hazard_by_step"]["1"]["rate"] == 0.0
    assert dyn["leave_hazard_by_step"]["4"]["rate"] == pytest.approx(0.3, abs=0.05)  # geometric(0.3)
    stored = json.loads((toy_sim / "fidelity.json").read_text())["dynamics"]
    assert stored["same_category_next"]["n"] == same["n"]


@pytest.mark.slow
def test_refit_on_unchanged_inputs_is_reused(toy_sim: Path) -> None:
    from shopsim.envs.fitting.fit import SimulatorConfig, fit_simulator

    data, enc = toy_sim.parent / "data", toy_sim.parent / "enc"
    _, rep = fit_simulator(data, enc, toy_sim, SimulatorConfig(), progress=False, reuse=True)
    assert rep.get("reused") is True
    _, other = fit_simulator(
        data, enc, None, SimulatorConfig(hidden=8, baselines=False), progress=False, reuse=True
    )
    assert "reused" not in other  # a different configuration is fitted, not reused
