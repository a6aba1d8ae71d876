"""``shopsim explain RUN``: why each item is in the slates of one evaluated session of a run.

Loads the run's resolved config, simulator, prepared log and trained agents, rebuilds every
policy as the run built it, replays one test episode through the run's own evaluation call
(:func:`~shopsim.experiments.agent_stage.evaluate_one`, so the explained slates are the
evaluated ones) and explains every shown item (:func:`shopsim.evaluation.explain.session.explain_episode`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.agents.registry import REGISTRY, PolicyContext, build_policies
from shopsim.agents.saving import load_agent
from shopsim.data import SessionLog
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import WeightedReward
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError
from shopsim.evaluation.explain import session as explain_session
from shopsim.evaluation.explain.policy_view import input_baseline
from shopsim.evaluation.explain.replay import replay
from shopsim.experiments.agent_stage import evaluate_one
from shopsim.experiments.config import load_config

BASELINE_STARTS = 256
"""Train-split session starts whose candidates average into a learned policy's baseline input."""


def load_run_policies(run: Path, names: list[str] | None = None) -> tuple[Any, Simulator, dict[str, Any]]:
    """The run's config, simulator and its evaluated policies (``names``: a subset)."""
    results_path = run / "results.json"
    if not results_path.is_file():
        raise ShopsimError(f"{run}: no results.json; finish the run first (shopsim run CONFIG --out {run})")
    results = json.loads(results_path.read_text())
    cfg = load_config(run / "config.yaml")
    sim = Simulator.load(run / "simulator")
    in_run = [n for n in results.get("policies", {}) if n in REGISTRY]
    unknown = [n for n in names or [] if n not in in_run]
    if unknown:
        raise ShopsimError(f"--policy {unknown[0]}: not a policy of this run; use one of {', '.join(in_run)}")
    chosen = names or in_run
    log = SessionLog.load(run / "data") if (run / "data").is_dir() else None
    ctx = PolicyContext(cfg.shop.slate_size, seed=cfg.seed, log=log)
    pols: dict[str, Any] = dict(build_policies([n for n in chosen if REGISTRY[n].kind != "rl"], ctx))
    for n in chosen:
        if REGISTRY[n].kind == "rl":
            pols[n] = load_agent(run / "models" / f"{n}.zip")
    return cfg, sim, {n: pols[n] for n in chosen if n in pols}


def explain_run(
    run: Path, *, policies: list[str] | None = None, episode: int | None = None, seed: int = 0, top: int = 5
) -> dict[str, Any]:
    """The explanation of one test episode of ``run`` (``episode``, or one drawn with ``seed``)."""
    cfg, sim, pols = load_run_policies(run, policies)
    n = cfg.evaluation.episodes
    if episode is None:
        episode = int(np.random.default_rng(seed).integers(n))
    shop = cfg.shop_for("test")
    base_env = ShopperVecEnv(sim, BASELINE_STARTS, cfg.shop_for("train"), seed=cfg.seed)
    base_env.reset()
    starts_obs = [{k: v[i] for k, v in base_env.core.observe().items()} for i in range(BASELINE_STARTS)]
    baselines = {name: input_baseline(p, starts_obs) for name, p in pols.items() if hasattr(p, "policy")}
    fn = cfg.reward_fn()
    # SlateQ's immediate value is priced with the run's weights; a custom reward callable: clicks
    reward = fn if isinstance(fn, WeightedReward) else WeightedReward()

    def replayer(name: str, pol: Any) -> Any:
        return lambda k, obs: evaluate_one(cfg, sim, pol, "test", k, True, observer=obs)

    doc = explain_session.explain_episode(
        sim,
        pols,
        episode,
        episodes=n,
        config=shop,
        seed=cfg.seed + 1,
        reward=reward,
        baselines=baselines,
        top=top,
        replay_fn=lambda name, pol: replay(replayer(name, pol), episode, episodes=n),
    )
    doc["run"] = str(run)
    return doc
