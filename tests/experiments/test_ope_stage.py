"""The OPE stage of ``shopsim run`` (``shopsim.experiments.ope_stage``): estimates near the truth,
the block's schema, ``source: log`` on logged propensities, and the bad-input rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from shopsim.errors import ShopsimError
from shopsim.experiments.ope_stage import OPEStageConfig, check_ope, log_block, ope_markdown, run_ope_stage
from shopsim.tests.helpers import FIXTURES

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "ope_block.schema.json"
K, N = 3, 20


def _validate(block: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(json.dumps(block, allow_nan=False)))


def _toy_run(
    toy_sim: Path,
    names: tuple[str, ...] = ("random", "popularity", "click_model_greedy"),
    episodes: int = 2000,
) -> tuple[Any, dict[str, Any], Any, Any, dict[str, Any]]:
    """The toy shop as a run has it: its simulator, policies, the test shop, the reward (clicks)
    and the run's own evaluation (``episodes`` test sessions on seed + 1, as the runner plays them)."""
    from shopsim.agents.registry import PolicyContext, build_policies
    from shopsim.envs.engine import ShopperConfig
    from shopsim.envs.model.simulator import Simulator
    from shopsim.envs.rewards import WeightedReward
    from shopsim.evaluation.in_simulator import evaluate_policy_in_sim

    sim = Simulator.load(toy_sim)
    shop = ShopperConfig(slate_size=K, n_candidates=N, split="test")
    reward = WeightedReward()
    pols = build_policies(list(names), PolicyContext(K, seed=0))
    truth = {
        n: evaluate_policy_in_sim(sim, p, episodes=episodes, config=shop, reward=reward, seed=1)
        for n, p in pols.items()
    }
    return sim, pols, shop, reward, truth


def test_stage_estimates_fall_near_the_runs_own_truth(toy_sim: Path, tmp_path: Path) -> None:
    sim, pols, shop, reward, truth = _toy_run(toy_sim, ("random", "click_model_greedy"), episodes=1000)
    truth["ppo_sampled"] = truth["random"]  # a result row without a policy object: skipped, with the reason
    cfg = OPEStageConfig(enabled=True, n_logged=2000, n_boot=100)
    block = run_ope_stage(
        cfg, sim, pols, shop=shop, reward=reward, seed=0, truth=truth, log_dir=None, out=tmp_path
    )
    _validate(block)
    assert block["truth_source"] == "run"
    assert list(block["policies"]) == ["random", "click_model_greedy"]
    assert "ppo_sampled" in block["skipped"]["policies"]
    assert block["ranges"] == {"session": [0.0, 60.0], "first_page": [0.0, 3.0]}  # 3 clicks, 20 pages
    for name, p in block["policies"].items():
        assert p["truth"]["source"] == "run"
        # the reused truth is the run's evaluation, exactly
        assert p["truth"]["session"]["value"] == pytest.approx(truth[name].returns.mean(), abs=1e-12)
        assert p["truth"]["first_page"]["value"] == pytest.approx(truth[name].first.mean(), abs=1e-12)
        for estimand, ests in (
            ("session", cfg.session_estimators),
            ("first_page", cfg.first_page_estimators),
        ):
            assert list(p[estimand]) == list(ests)
            t = p["truth"][estimand]
            for e, x in p[estimand].items():
                assert x["ess"] == x["trust"]["ess"]
                assert x["truth"] == t["value"]
                # The log (seed + 20011) and the truth (seed + 1) are independent, so
                # estimate − truth has standard error √(se_est² + se_truth²), each se read off its
                # own bootstrap 95% interval (half-width / 1.96). 3.5 se: a 1-in-2000 miss per
                # comparison for an unbiased estimator; a biased one (e.g. wrong propensities)
                # misses by many se at this sample size.
                se_e = (x["ci95"][1] - x["ci95"][0]) / (2 * 1.96)
                se_t = (t["ci95"][1] - t["ci95"][0]) / (2 * 1.96)
                assert abs(x["value"] - t["value"]) <= 3.5 * np.hypot(se_e, se_t), (name, estimand, e, x, t)
                assert x["rel_error"] == pytest.approx(abs(x["value"] - t["value"]) / t["value"])
    s = block["summary"]["session"]["estimators"]["wdr"]
    assert s["of"] == 2
    assert 0 <= s["coverage"] <= 1
    assert s["rel_error_mean"] == pytest.approx(
        np.mean([p["session"]["wdr"]["rel_error"] for p in block["policies"].values()])
    )
    assert (tmp_path / "plots" / "ope.png").stat().st_size > 1000
    md = ope_markdown(block)
    assert "| policy | truth [95% CI] | pdis | wpdis | dr | wdr |" in md
    assert "| click_model_greedy | " in md
    assert "- ppo_sampled not estimated:" in md


@pytest.mark.slow
def test_stage_computes_truth_repeats_and_skips_item_level_under_a_non_slot_reward(
    toy_sim: Path, tmp_path: Path
) -> None:
    from shopsim.envs.rewards import WeightedReward

    sim, pols, shop, _, _ = _toy_run(toy_sim, episodes=1)
    reward = WeightedReward(click=1.0, leave=-0.5)  # the leave term is per page, not per slot
    cfg = OPEStageConfig(enabled=True, n_logged=400, repeats=2, n_boot=50, truth_episodes=300)
    block = run_ope_stage(
        cfg, sim, pols, shop=shop, reward=reward, seed=3, truth=None, log_dir=None, out=tmp_path
    )
    _validate(block)
    assert block["truth_source"] == "computed"
    assert list(block["skipped"]["estimators"]) == ["cascade_dr"]
    assert list(block["policies"]["popularity"]["first_page"]) == ["ips", "snips", "dr"]
    rep = block["policies"]["popularity"]["session"]["wdr"]["repeats"]
    assert len(rep["values"]) == 2
    assert rep["values"][0] == block["policies"]["popularity"]["session"]["wdr"]["value"]
    assert block["policies"]["random"]["truth"]["episodes"] == 300
    off = run_ope_stage(
        OPEStageConfig(enabled=True, n_logged=400, n_boot=50, truth=False),
        sim, pols, shop=shop, reward=reward, seed=3, truth=None, log_dir=None, out=tmp_path,
    )  # fmt: skip
    _validate(off)
    assert off["truth_source"] == "none"
    assert off["policies"]["random"]["truth"] is None
    assert "rel_error" not in off["policies"]["random"]["session"]["pdis"]
    # same inputs and seed → the same block
    again = run_ope_stage(
        OPEStageConfig(enabled=True, n_logged=400, repeats=2, n_boot=50, truth_episodes=300),
        sim, pols, shop=shop, reward=reward, seed=3, truth=None, log_dir=None, out=tmp_path,
    )  # fmt: skip
    assert json.dumps(again) == json.dumps(block)


def test_log_source_on_obd_matches_shopsim_ope_obd(tmp_path: Path) -> None:
    from shopsim.data import PrepareOptions, prepare
    from shopsim.experiments.ope_obd import run_obd

    prepare(FIXTURES / "obd", PrepareOptions(format="obd", split=(1.0, 0.0, 0.0)), tmp_path / "data")
    cfg = OPEStageConfig(enabled=True, source="log", n_boot=200)
    block = run_ope_stage(
        cfg, None, {}, shop=None, reward=None, seed=0, truth=None, log_dir=tmp_path / "data", out=tmp_path
    )
    _validate(block)
    assert "cannot be evaluated on this log" in block["note"]
    ref = run_obd(FIXTURES / "obd", tmp_path / "obd", n_boot=200)
    assert block["n_actions"] == ref["n_actions"]
    assert block["n_positions"] == ref["n_positions"]
    assert set(block["directions"]) == {"random_from_bts", "bts_from_random"}
    for key, d in block["directions"].items():
        r = ref[key]
        assert d["truth"]["value"] == pytest.approx(r["truth"]["value"], abs=1e-12)
        assert list(d["estimates"]) == ["ips", "snips", "dr"]  # the single-slot ones of the default set
        for e in ("ips", "snips"):  # no reward model: the same numbers whatever the row order
            assert d["estimates"][e]["value"] == pytest.approx(r["estimates"][e]["value"], rel=1e-9)
            assert d["estimates"][e]["trust"]["reasons"] == r["estimates"][e]["trust"]["reasons"]
    assert "**random_from_bts** — on-policy truth" in ope_markdown(block)
    # a log without propensities: one line, the fix
    import pandas as pd

    bare = tmp_path / "bare"
    bare.mkdir()
    ev = pd.read_parquet(tmp_path / "data" / "events.parquet")
    ev.assign(propensity=None).to_parquet(bare / "events.parquet")
    with pytest.raises(ShopsimError) as exc:
        log_block(cfg, bare, seed=0)
    assert str(exc.value) == (
        f"{bare / 'events.parquet'}: ope.source: log needs logged propensities and this log has none; "
        "use ope.source: simulator"
    )


def test_ope_on_a_log_without_propensities_fails_at_config_load(tmp_path: Path) -> None:
    from shopsim.experiments.config import load_config

    def cfg(data: dict[str, Any], **ope: Any) -> Any:
        return load_config({"data": data, "ope": {"enabled": True, **ope}}, where="x.yaml")

    rees = cfg({"source": "sample:rees46", "format": "rees46"}, source="log")
    with pytest.raises(ShopsimError) as exc:
        check_ope(rees, "x.yaml")
    assert str(exc.value) == (
        "x.yaml: ope.source: log needs logged propensities and data.format 'rees46' records none; "
        "use ope.source: simulator"
    )
    toy = cfg({"source": "sample:toy", "format": "events"}, source="log")  # an events CSV without one
    with pytest.raises(
        ShopsimError, match=r"toy_events.csv.gz has no propensity column; use ope.source: simulator"
    ):
        check_ope(toy, "x.yaml")
    check_ope(cfg({"source": "sample:obd", "format": "obd"}, source="log"), "x.yaml")  # obd: propensities
    check_ope(cfg({"source": "sample:rees46", "format": "rees46"}), "x.yaml")  # simulator: always possible
    check_ope(load_config({"data": {"source": "sample:rees46", "format": "rees46"}}), "x.yaml")  # off
    with pytest.raises(ShopsimError, match=r"ope.behaviour: 'popularity' is not among agents.policies"):
        check_ope(
            load_config(
                {
                    "data": {"source": "sample:rees46", "format": "rees46"},
                    "agents": {"policies": ["random", "ppo"]},
                    "ope": {"enabled": True, "behaviour": "popularity"},
                }
            )
        )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"epsilon": 0.0}, "epsilon=0.0: must be in (0, 1] so every slate can be logged"),
        ({"n_logged": 10}, "n_logged=10: must be ≥ 100"),
        (
            {"session_estimators": ("wdr", "magic")},
            "session_estimators: unknown estimator 'magic'; use pdis, wpdis, dr, wdr",
        ),
        ({"behaviour": "random"}, "behaviour='random': use mixture or a deterministic policy of the run"),
        ({"source": "obd"}, "source='obd': use simulator or log"),
    ],
)
def test_bad_ope_settings_give_one_line(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ShopsimError) as exc:
        OPEStageConfig(**kw)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)
