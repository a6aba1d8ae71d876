"""Logs from the simulator with decision-time propensities (the ground-truth side of OPE).

:func:`log_in_simulator` plays logged sessions of a split with a stochastic behaviour policy
(:class:`~shopsim.experiments.ope.logging_policy.StochasticSlate`) and records, for every page:
the session, the step, the page reward, the per-slot clicks, and the behaviour's joint / prefix /
marginal propensities of the slate it showed — plus, for each named target policy, the target's
propensities of that same slate (what every slate estimator needs). The true value of a target
is then a Monte-Carlo on-policy rollout on *other* seeds (:func:`on_policy_value`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shopsim.agents.evaluation import evaluate_policy_in_sim
from shopsim.envs.core import ShopperBatch, ShopperConfig
from shopsim.envs.rewards import RewardFn, make_reward
from shopsim.envs.simulator import Simulator
from shopsim.experiments.ope.logging_policy import StochasticSlate


def log_in_simulator(
    sim: Simulator,
    behaviour: StochasticSlate,
    targets: dict[str, StochasticSlate],
    *,
    episodes: int,
    config: ShopperConfig,
    reward: RewardFn | dict[str, float] | None = None,
    seed: int = 0,
    batch: int = 256,
) -> dict[str, Any]:
    """Per-page arrays (see the module docstring); ``targets`` get ``<name>_joint`` etc."""
    reward_fn = make_reward(reward)
    pick = np.random.default_rng(seed).integers(0, len(sim.episodes[config.split]), episodes)
    cols: dict[str, list[np.ndarray]] = {}

    def add(key: str, value: np.ndarray) -> None:
        cols.setdefault(key, []).append(np.asarray(value))

    for start in range(0, episodes, batch):
        idx = pick[start : start + batch]
        b = len(idx)
        core = ShopperBatch(sim, b, config)
        for pol in (behaviour, *targets.values()):
            pol.bind(core)
        rng = np.random.default_rng([seed, start])
        core.reset_rows(np.arange(b), rng, idx)
        alive = np.ones(b, bool)
        while alive.any():
            obs = core.observe()
            slate, _ = behaviour.predict(obs)
            props = behaviour.last
            target_props = {n: t.propensities(obs, slate) for n, t in targets.items()}
            ev, left, trunc = core.step_slate(slate, rng)
            r = np.asarray(reward_fn(ev), dtype=float)
            rows = np.flatnonzero(alive)
            add("session", start + rows)
            add("step", core.step_count[rows] - 1)
            add("reward", r[rows])
            add("slot_clicks", ev.clicked[rows].astype(float))
            for key in ("joint", "prefix", "marginal"):
                add(f"pscore_{key}", props[key][rows])
                for n, tp in target_props.items():
                    add(f"{n}_{key}", tp[key][rows])
            alive &= ~(left | trunc)
    return {k: np.concatenate(v) for k, v in cols.items()}


def on_policy_value(
    sim: Simulator,
    policy: StochasticSlate,
    *,
    episodes: int,
    config: ShopperConfig,
    seed: int,
    reward: RewardFn | dict[str, float] | None = None,
) -> tuple[float, float]:
    """Monte-Carlo truth: mean reward per page and per session of ``policy`` on-policy."""
    policy.record = False  # no propensities needed on-policy
    try:
        res = evaluate_policy_in_sim(sim, policy, episodes=episodes, config=config, reward=reward, seed=seed)
    finally:
        policy.record = True
    return float(res.returns.sum() / res.steps.sum()), float(res.returns.mean())
