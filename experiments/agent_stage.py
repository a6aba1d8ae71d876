"""The agents stage of ``shopsim run``: train the RL agents and evaluate every policy.

:func:`train_policies` trains PPO and SlateQ on the training shop and returns them beside the
built baselines; :func:`evaluate_policies` plays every policy on the same test sessions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from shopsim.agents.registry import PolicyContext, build_policies
from shopsim.agents.training import train_agent, training_env
from shopsim.envs.model.simulator import Simulator
from shopsim.evaluation.in_simulator import EpisodeResults, evaluate_policy_in_sim
from shopsim.experiments.config import RunConfig


def train_policies(
    cfg: RunConfig, sim: Simulator, ctx: PolicyContext, names: list[str], out: Path
) -> tuple[dict[str, Any], dict[str, float]]:
    """Every selected policy, ready to play: the baselines built, PPO and SlateQ trained on the
    train split (saved under ``out/models``). Returns (policies by name, seconds by step)."""
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    policies: dict[str, Any] = build_policies(names, ctx)
    timing["build_policies"] = time.perf_counter() - t0
    reward = cfg.reward_fn()
    a = cfg.agents
    for name, steps in (("ppo", a.ppo.steps), ("dqn", a.dqn.steps)):
        if name in names and steps:
            env = training_env(sim, cfg.shop_for("train"), a.n_envs, cfg.seed, reward)
            policies[name], timing[f"train_{name}"] = train_agent(name, env, a.ppo, a.dqn, out, seed=cfg.seed)
    return policies, timing


def evaluate_policies(
    cfg: RunConfig,
    sim: Simulator,
    policies: dict[str, Any],
    *,
    split: str = "test",
    episodes: int | None = None,
) -> dict[str, EpisodeResults]:
    """Every policy on the same sessions of ``split`` and engine seed (plus PPO's sampled slates)."""
    shop, ev, reward = cfg.shop_for(split), cfg.evaluation, cfg.reward_fn()
    n = ev.episodes if episodes is None else episodes
    results: dict[str, EpisodeResults] = {}
    for name, pol in tqdm(policies.items(), desc=f"evaluating policies ({split})", unit="policy"):
        results[name] = evaluate_policy_in_sim(
            sim, pol, episodes=n, config=shop, reward=reward, seed=cfg.seed + 1
        )
    if "ppo" in policies and split == "test":
        results["ppo_sampled"] = evaluate_policy_in_sim(
            sim,
            policies["ppo"],
            episodes=n,
            config=shop,
            reward=reward,
            seed=cfg.seed + 1,
            deterministic=False,
        )
    return results
