"""One evaluation path for every slate policy in the simulator, with paired comparisons.

Every policy plays the **same** logged sessions (episode indices drawn once from ``seed``)
with the same engine seed, so per-episode returns can be compared pairwise: differences
between two policies get a 95% bootstrap interval over episodes, which is far tighter than
comparing two separate intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shopsim.agents.policy import SlatePolicy, bind_engine
from shopsim.envs.engine import SessionStarts, ShopperBatch, ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import RewardFn, make_reward
from shopsim.stats import bootstrap_mean_ci, bootstrap_ratio_ci, paired_difference_ci

StepObserver = Callable[[int, ShopperBatch, dict[str, np.ndarray], np.ndarray, np.ndarray], None]
"""``observer(batch_start, engine, observation, slates, alive)`` before each step's response:
row r of the batch is evaluation episode ``batch_start + r``; ``slates`` (B, k) are candidate
positions; ``alive`` (B,) marks the rows still in their session."""


@dataclass
class EpisodeResults:
    """Per-episode outcomes of one policy (arrays aligned with the episode list)."""

    returns: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray
    steps: np.ndarray
    shown: np.ndarray
    first: np.ndarray
    """Reward of the first page (its context does not depend on the policy: OPE's bandit estimand)."""

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
        """The ``sim`` block of results.json."""
        lo, hi = bootstrap_mean_ci(self.returns, n_boot=n_boot, seed=seed)
        _, ctr_lo, ctr_hi = bootstrap_ratio_ci(self.clicks, self.shown, n_boot=n_boot, seed=seed)
        bought = (self.purchases > 0).astype(np.float64)
        return {
            "return_mean": float(self.returns.mean()),
            "return_ci95": [lo, hi],
            "ctr": float(self.clicks.sum() / max(self.shown.sum(), 1)),
            "ctr_ci95": [ctr_lo, ctr_hi],
            "purchase_rate": float(np.mean(self.purchases > 0)),
            "purchase_rate_ci95": list(bootstrap_mean_ci(bought, n_boot=n_boot, seed=seed)),
            "revenue_per_session": float(self.revenue.mean()),
            "revenue_ci95": list(bootstrap_mean_ci(self.revenue, n_boot=n_boot, seed=seed)),
            "episodes": len(self.returns),
        }


def paired_difference(
    a: EpisodeResults, b: EpisodeResults, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Mean of a − b over the same episodes with its 95% paired bootstrap interval over episodes
    (:func:`shopsim.stats.paired_difference_ci`)."""
    diff, lo, hi = paired_difference_ci(a.returns, b.returns, n_boot=n_boot, seed=seed)
    return {"diff": diff, "ci95": [lo, hi], "episodes": len(a.returns)}


def evaluated_episodes(sim: Simulator, split: str, episodes: int, seed: int) -> np.ndarray:
    """(episodes,) the logged sessions of ``split`` (indices into ``sim.episodes[split]``) that
    an evaluation of ``episodes`` episodes with engine seed ``seed`` plays, in order (drawn with
    replacement)."""
    return np.random.default_rng(seed).integers(0, len(sim.episodes[split]), episodes)


def evaluate_policy_in_sim(
    sim: Simulator,
    policy: SlatePolicy,
    *,
    episodes: int = 1000,
    config: ShopperConfig | None = None,
    reward: RewardFn | dict[str, float] | None = None,
    seed: int = 0,
    batch: int = 500,
    deterministic: bool = True,
    starts: SessionStarts | None = None,
    observer: StepObserver | None = None,
) -> EpisodeResults:
    """Play ``episodes`` logged sessions (chosen by ``seed``) with ``policy``; B at a time.

    :param starts: the episode starts of this simulator and ``config``
        (:class:`~shopsim.envs.engine.SessionStarts`) to share between calls — evaluating
        several policies on the same sessions computes them once; the results are the same.
    :param observer: called on every step of every batch with what was shown and what
        happened (:data:`StepObserver`); it must not change its arguments. ``shopsim explain``
        reads the evaluated slates through it, so they are the evaluation's own.
    """
    cfg = config or ShopperConfig(split="test")
    reward_fn = make_reward(reward)
    pick = evaluated_episodes(sim, cfg.split, episodes, seed)
    out = {
        k: np.zeros(episodes)
        for k in ("returns", "clicks", "purchases", "revenue", "steps", "shown", "first")
    }
    for start in range(0, episodes, batch):
        idx = pick[start : start + batch]
        b = len(idx)
        core = ShopperBatch(sim, b, cfg, starts=starts)
        starts = core.starts
        bind_engine(policy, core)
        rng = np.random.default_rng([seed, start])
        core.reset_rows(np.arange(b), rng, idx)
        alive = np.ones(b, bool)
        acc = {k: np.zeros(b) for k in out}
        while alive.any():
            obs = core.observe()
            slate, _ = policy.predict(obs, deterministic=deterministic)
            before = alive.copy()
            if observer is not None:
                observer(start, core, obs, np.asarray(slate).reshape(b, -1), before)
            ev, left, trunc = core.step_slate(np.asarray(slate).reshape(b, -1), rng)
            r = np.asarray(reward_fn(ev), dtype=float)
            acc["returns"] += r * alive
            if not acc["steps"].any():
                acc["first"] += r
            acc["clicks"] += ev.clicked.sum(1) * alive
            acc["purchases"] += ev.purchased.sum(1) * alive
            acc["revenue"] += (ev.purchased * ev.price).sum(1) * alive
            acc["steps"] += alive
            acc["shown"] += ev.shown.sum(1) * alive
            alive &= ~(left | trunc)
        for k in out:
            out[k][start : start + b] = acc[k]
    return EpisodeResults(**out)
