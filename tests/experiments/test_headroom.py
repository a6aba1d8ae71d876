"""The RL-headroom table (shopsim.experiments.headroom): aggregation over seeds, the plateau
rule, the verdict rule, and the report written from run folders.

The default tests build small run folders by hand (results.json, config.yaml, curves,
fidelity.json); the slow test runs the real pipeline twice on the bundled sample."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from shopsim.errors import ShopsimError
from shopsim.experiments import headroom as hr
from shopsim.experiments.cli import main

CONFIG = {
    "seed": 0,
    "data": {"source": "sample:rees46"},
    "encoder": {"seed": 0, "dim": 64},
    "shop": {"slate_size": 10},
    "reward": {"click": 1.0},
    "agents": {"ppo": {"steps": 1000}, "dqn": {"steps": 1000}, "n_envs": 4},
    "evaluation": {"episodes": 50, "n_boot": 200},
}

FIDELITY = {
    "replay": {"steps": {"real_mean": 1.6, "sim_mean": 1.7}},
    "dynamics": {
        "leave_hazard_by_step": {"1": {"rate": 0.6, "n": 100}, "2": {"rate": 0.5, "n": 40}},
        "continuation": {"after_purchase": {"rate": 0.1, "n": 20}, "after_other": {"rate": 0.4, "n": 200}},
        "same_category_next": {"rate": 0.5, "n": 90, "expected_by_popularity": 0.1, "stickiness": 5.0},
    },
}


def flat_curve(level: float, n: int = 20, noise: float = 0.05, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    steps = np.linspace(50, 1000, n)
    return {"steps": steps.tolist(), "return_mean": (level + noise * rng.standard_normal(n)).tolist()}


def rising_curve(n: int = 20) -> dict[str, Any]:
    steps = np.linspace(50, 1000, n)
    return {"steps": steps.tolist(), "return_mean": (steps / 100).tolist()}


def make_run(
    root: Path,
    name: str,
    *,
    seed: int,
    ppo: float,
    dqn: float,
    dataset: str = "rees46",
    reward: str = "clicks",
    config: dict[str, Any] | None = None,
    fidelity: dict[str, Any] | None = None,
    curves: dict[str, dict[str, Any]] | None = None,
    myopic_in_results: bool = True,
) -> Path:
    """A run folder as `shopsim run` leaves it, with Δs vs the deployable reference of
    ``ppo`` / ``dqn`` (and −0.5 vs the myopic one) and an interval of ±0.1."""
    d = root / name
    (d / "models").mkdir(parents=True)
    (d / "simulator").mkdir()
    cfg = json.loads(json.dumps(config or CONFIG))
    cfg["seed"] = seed
    cfg["encoder"]["seed"] = seed
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    policies: dict[str, Any] = {}
    for m, v in (("ppo", ppo), ("dqn", dqn)):
        sim: dict[str, Any] = {
            "return_mean": 1.0 + v,
            "minus_deployable": {"diff": v, "ci95": [v - 0.1, v + 0.1]},
        }
        if myopic_in_results:
            sim["minus_click_model_greedy"] = {"diff": v - 0.5, "ci95": [v - 0.6, v - 0.4]}
        policies[m] = {"kind": "rl", "sim": sim}
    policies["itemknn"] = {"kind": "cf", "sim": {"return_mean": 1.0}}
    policies["click_model_greedy"] = {"kind": "heuristic", "sim": {"return_mean": 1.5}}
    results = {
        "schema": "shopsim.results/2",
        "dataset": dataset,
        "seed": seed,
        "reward": reward,
        "config": cfg,
        "references": {"deployable": "itemknn", "myopic": "click_model_greedy"},
        "policies": policies,
    }
    (d / "results.json").write_text(json.dumps(results))
    (d / "simulator" / "fidelity.json").write_text(json.dumps(fidelity or FIDELITY))
    for m, c in (curves if curves is not None else {"ppo": flat_curve(1.0), "dqn": flat_curve(0.8)}).items():
        (d / "models" / f"{m}.curve.json").write_text(json.dumps(c))
    return d


# ---------------------------------------------------------------------- maths
def test_t_interval_matches_scipy() -> None:
    x = [0.31, 0.12, 0.45, 0.2]
    m, lo, hi = hr.t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert m == pytest.approx(np.mean(x))
    assert (lo, hi) == pytest.approx(ref)
    assert all(math.isnan(v) for v in hr.t_interval([0.3])[1:])


def test_combine_seeds_t_over_seeds_or_session_bootstrap_for_one() -> None:
    per = [
        {"diff": 0.2, "ci95": [0.1, 0.3]},
        {"diff": 0.4, "ci95": [0.3, 0.5]},
        {"diff": 0.3, "ci95": [0, 1]},
    ]
    c = hr.combine_seeds(per)
    assert c["method"] == "t"
    assert c["n"] == 3
    assert c["ci95"] == pytest.approx(
        list(stats.t.interval(0.95, 2, loc=0.3, scale=stats.sem([0.2, 0.4, 0.3])))
    )
    one = hr.combine_seeds(per[:1])
    assert one == {"mean": 0.2, "ci95": [0.1, 0.3], "n": 1, "method": "session-bootstrap"}


def test_plateau_rule() -> None:
    assert hr.plateau(flat_curve(2.0))["plateaued"] is True
    rising = hr.plateau(rising_curve())
    assert rising["plateaued"] is False
    assert rising["rise"] > rising["tolerance"]
    falling = rising_curve()
    falling["return_mean"] = falling["return_mean"][::-1]
    assert hr.plateau(falling)["plateaued"] is True  # a fall: more training would not raise it
    few = hr.plateau({"steps": [100, 1000], "return_mean": [1.0, 2.0]})
    assert few["plateaued"] is None
    assert "too few" in few["why"]
    assert hr.plateau(None)["plateaued"] is None
    gaps = flat_curve(2.0)
    gaps["return_mean"][3] = None  # a window with no finished episode
    assert hr.plateau(gaps)["plateaued"] is True
    # a rise inside the curve's own noise is a plateau; the same rise with tiny noise is not
    steps = np.linspace(50, 1000, 20)
    step_up = np.where(steps > 800, 1.05, 1.0)
    noisy = step_up + 0.2 * np.random.default_rng(1).standard_normal(20)
    assert hr.plateau({"steps": steps.tolist(), "return_mean": noisy.tolist()})["plateaued"] is True
    assert (
        hr.plateau({"steps": steps.tolist(), "return_mean": (step_up + 1e-4 * np.arange(20)).tolist()})[
            "plateaued"
        ]
        is False
    )


DYN_SHORT = hr.dynamics_summary(FIDELITY)
DYN_LONG = {
    **DYN_SHORT,
    "session_length": 9.0,
    "leave_hazard": 0.1,
    "continuation_after_purchase": 0.8,
    "basket_lift": 6.0,
    "basket_pairs": 400,
}


def _d(mean: float, lo: float, hi: float) -> dict[str, Any]:
    return {"mean": mean, "ci95": [lo, hi], "n": 3}


def test_verdict_rule_and_reasons() -> None:
    ok = {"seeds": 3, "plateaus": {"ppo": True, "dqn": True}, "budgets": {"ppo": 1000, "dqn": 1000}}
    pays = hr.verdict({"ppo": _d(0.3, 0.1, 0.5), "dqn": _d(-0.2, -0.4, 0.0)}, DYN_LONG, **ok)
    assert pays["word"] == "RL pays"
    assert pays["lead"] == "ppo"
    assert not pays["provisional"]
    assert len(pays["because"]) == 2
    assert "complements" in pays["because"][0]
    loses = hr.verdict({"ppo": _d(-0.3, -0.5, -0.1), "dqn": _d(-0.2, -0.4, -0.01)}, DYN_SHORT, **ok)
    assert loses["word"] == "RL loses"
    assert loses["lead"] == "dqn"
    assert any("short sessions" in b for b in loses["because"])
    assert any("purchase mostly ends" in b for b in loses["because"])
    tie = hr.verdict({"ppo": _d(0.3, -0.1, 0.7), "dqn": _d(-0.2, -0.4, -0.01)}, DYN_LONG, **ok)
    assert tie["word"] == "ties"
    assert tie["text"].startswith("ties (PPO")
    assert "although" in tie["text"]
    # the sign only: an interval touching 0 is a tie, whatever the mean
    assert hr.verdict({"ppo": _d(0.5, 0.0, 1.0)}, DYN_SHORT, **ok)["word"] == "ties"


def test_reasons_on_a_basket_log() -> None:
    ok = {"seeds": 3, "plateaus": {"ppo": True}, "budgets": {"ppo": 1000}}
    dyn = {**DYN_LONG, "continuation_after_purchase": 0.0, "basket_lift": None, "basket_pairs": 3}
    v = hr.verdict({"ppo": _d(-0.3, -0.5, -0.1)}, dyn, **ok)
    assert v["word"] == "RL loses"
    assert v["because"] == [
        "a purchase mostly ends the session (only 0.00 continue)",  # 0 is the strongest reason
        "few complements (3 pairs bought together ≥ 2×, median lift —)",
    ]
    assert hr.verdict({}, dyn, **ok)["word"] == "not compared"


def test_verdict_is_provisional_when_the_comparison_is_not_fair() -> None:
    v = hr.verdict(
        {"ppo": _d(0.3, 0.1, 0.5), "dqn": _d(0.3, 0.1, 0.5)},
        DYN_SHORT,
        seeds=1,
        plateaus={"ppo": False, "dqn": None},
        budgets={"ppo": 2000, "dqn": 1000},
    )
    assert v["word"] == "RL pays"
    assert v["provisional"]
    assert "1 seed < 3" in v["text"]
    assert "not plateaued: PPO" in v["text"]
    assert "plateau not judged: SlateQ" in v["text"]
    assert "unequal budgets: PPO 2,000 vs SlateQ 1,000" in v["text"]


# ---------------------------------------------------------------------- from run folders
def test_report_from_run_folders(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for s, (p, q) in enumerate(((0.3, 0.1), (0.4, -0.1), (0.5, 0.0))):
        make_run(runs, f"clicks_s{s}", seed=s, ppo=p, dqn=q)
    # a second reward on the same shop: its own row; one seed; the myopic Δ only from the npz arrays
    rev = make_run(
        runs,
        "rev_s0",
        seed=0,
        ppo=-0.3,
        dqn=-0.4,
        reward="revenue",
        myopic_in_results=False,
        curves={"ppo": rising_curve()},
    )
    (rev / "evaluation" / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.random(40)
    for name, shift in (("ppo", 0.2), ("dqn", -0.1), ("click_model_greedy", 0.0)):
        np.savez(rev / "evaluation" / "test" / f"{name}.npz", returns=base + shift)
    out = tmp_path / "hr"
    hr.write_headroom([runs], out, plots=False)  # the plots: test_headroom_of_real_runs
    rep = json.loads((out / "headroom.json").read_text())
    assert rep["schema"] == hr.SCHEMA
    g_clicks, g_rev = rep["groups"]  # sorted by (shop, reward)
    assert (g_clicks["reward"], g_rev["reward"]) == ("clicks", "revenue")
    assert g_clicks["seeds"] == [0, 1, 2]
    ppo = g_clicks["methods"]["ppo"]["minus_deployable"]
    assert ppo["mean"] == pytest.approx(0.4)
    assert ppo["method"] == "t"
    assert ppo["ci95"] == pytest.approx(
        list(stats.t.interval(0.95, 2, loc=0.4, scale=stats.sem([0.3, 0.4, 0.5])))
    )
    assert g_clicks["methods"]["ppo"]["minus_myopic"]["mean"] == pytest.approx(-0.1)
    assert g_clicks["verdict"]["word"] == "RL pays"
    assert not g_clicks["verdict"]["provisional"]
    assert g_clicks["dynamics"]["leave_hazard"] == pytest.approx((0.6 * 100 + 0.5 * 40) / 140)
    assert g_clicks["dynamics"]["basket_lift"] is None  # not a basket log
    # one seed: the run's session bootstrap; the myopic Δ recomputed from the per-episode arrays
    r = g_rev["methods"]["ppo"]
    assert r["minus_deployable"] == {**r["minus_deployable"], "n": 1, "method": "session-bootstrap"}
    assert r["minus_myopic"]["mean"] == pytest.approx(0.2)
    assert r["plateau"]["plateaued"] is False
    assert g_rev["methods"]["dqn"]["plateau"]["plateaued"] is None
    assert "not plateaued: PPO" in g_rev["verdict"]["text"]
    assert "1 seed < 3" in g_rev["verdict"]["text"]
    md = (out / "headroom.md").read_text()
    assert md.count("\n| rees46 |") == 2
    assert "(n=1)" in md
    assert "Student-t" in md
    assert "| " + " | ".join(hr.COLUMNS) + " |" in md


def test_wall_times_and_groups_carried_from_an_earlier_table(tmp_path: Path) -> None:
    first = tmp_path / "first"
    for s in range(2):
        make_run(first, f"rev_s{s}", seed=s, ppo=0.2, dqn=0.1, reward="revenue")
    hr.write_headroom([first], tmp_path / "hr1", plots=False)
    # a later table from other runs (one with its wall time, one from before timing.json kept it)
    later = tmp_path / "later"
    for s in range(2):
        d = make_run(later, f"clicks_s{s}", seed=s, ppo=0.3, dqn=0.1)
        if s == 0:
            (d / "timing.json").write_text(json.dumps({"train_ppo": 1.0, "stages": {"total": 600.0}}))
    rep = hr.write_headroom([later], tmp_path / "hr2", plots=False, keep=tmp_path / "hr1" / "headroom.json")
    clicks, rev = rep["groups"]
    assert clicks["wall_s"] == [600.0, None]
    assert "carried_from" not in clicks
    assert rev["reward"] == "revenue"
    assert rev["carried_from"] == str(tmp_path / "hr1" / "headroom.json")
    assert (
        rev["methods"] == json.loads((tmp_path / "hr1" / "headroom.json").read_text())["groups"][0]["methods"]
    )
    md = (tmp_path / "hr2" / "headroom.md").read_text()
    assert "| 10 min (1 of 2 seeds) |" in md
    assert f"(earlier runs, carried over from {tmp_path / 'hr1' / 'headroom.json'})" in md
    # a group measured again replaces the carried one
    again = hr.write_headroom(
        [first, later], tmp_path / "hr3", plots=False, keep=tmp_path / "hr1" / "headroom.json"
    )
    assert not any("carried_from" in g for g in again["groups"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ShopsimError, match=r"bad\.json: not a shopsim\.headroom/1 headroom\.json"):
        hr.write_headroom([later], tmp_path / "hr4", plots=False, keep=tmp_path / "bad.json")


def test_runs_that_are_not_replicates_are_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", seed=0, ppo=0.1, dqn=0.1)
    other = json.loads(json.dumps(CONFIG))
    other["agents"]["ppo"]["steps"] = 5000
    b = make_run(tmp_path, "b", seed=1, ppo=0.1, dqn=0.1, config=other)
    with pytest.raises(ShopsimError, match=r"differ in config key 'agents\.ppo\.steps' \(1000 vs 5000\)"):
        hr.headroom_report([a, b])
    c = make_run(tmp_path, "c", seed=0, ppo=0.1, dqn=0.1)
    with pytest.raises(ShopsimError, match="seed 0 appears twice"):
        hr.headroom_report([a, c])
    with pytest.raises(ShopsimError, match="not a run folder"):
        hr.headroom_report([tmp_path / "a" / "models"])


# ---------------------------------------------------------------------- a real run
@pytest.mark.slow
def test_headroom_of_real_runs(tmp_path: Path) -> None:
    """Two seeds of a tiny real quickstart run (prepare → encode → fit → PPO + SlateQ → evaluate)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    small = [
        "--set", "encoder.epochs=1", "--set", "agents.ppo.steps=2048", "--set", "agents.dqn.steps=2048",
        "--set", "agents.n_envs=8", "--set", "evaluation.episodes=200", "--set", "evaluation.n_boot=100",
        "--set", "evaluation.offline=false", "--set", "evaluation.reference_episodes=200",
        "--set", "encoder.n_boot=50",
    ]  # fmt: skip
    for s in (0, 1):
        subprocess.run(
            [sys.executable, "-m", "shopsim.experiments.cli", "run", "quickstart", "--out",
             str(tmp_path / f"s{s}"), "--set", f"seed={s}", *small],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
    assert main(["headroom", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "hr")]) == 0
    rep = json.loads((tmp_path / "hr" / "headroom.json").read_text())
    for png in ("curves.png", "headroom.png"):
        assert (tmp_path / "hr" / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    (g,) = rep["groups"]
    assert g["seeds"] == [0, 1]
    assert g["shop"] == "rees46"
    assert g["reward"] == "clicks"
    for m in ("ppo", "dqn"):
        d = g["methods"][m]["minus_deployable"]
        per = [p["diff"] for p in d["per_seed"]]
        assert d["method"] == "t"
        assert d["mean"] == pytest.approx(np.mean(per))
    assert g["dynamics"]["session_length"] > 1
    assert 0 < g["dynamics"]["leave_hazard"] < 1
    assert g["verdict"]["provisional"]
    assert "2 seeds < 3" in g["verdict"]["text"]


def test_cli_refuses_a_folder_that_holds_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["headroom", str(tmp_path / "empty"), "--out", str(tmp_path / "hr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "not a run folder" in err
    assert not (tmp_path / "hr").exists()
