"""Logs from the simulator with decision-time propensities (the ground-truth side of OPE).

:func:`log_in_simulator` plays logged sessions of a split with a stochastic behaviour policy
(:class:`~shopsim.agents.logging_policies.StochasticSlate` or
:class:`~shopsim.agents.logging_policies.MixtureSlate`) and records, for every page:
the session, the step, the page reward, the per-slot clicks and rewards, and the behaviour's
joint / prefix / marginal propensities of the slate it showed — plus, for each named target
policy, the target's propensities of that same slate (what every slate estimator needs) and,
with ``features=True``, the candidate features of the shown slate and of each target's own slate
(what a reward model for DM/DR needs). Rows are refilled with new sessions as shoppers leave,
so a step budget costs about that many simulator steps. The true value of a target is a
Monte-Carlo on-policy rollout on *other* seeds (:func:`on_policy_value`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shopsim.agents.policy import bind_engine
from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import RewardFn, WeightedReward, make_reward
from shopsim.errors import ShopsimError
from shopsim.evaluation.in_simulator import EpisodeResults, evaluate_policy_in_sim


def _take(cand_feat: np.ndarray, slate: np.ndarray) -> np.ndarray:
    return np.take_along_axis(cand_feat, slate[:, :, None], axis=1).astype(np.float32)


class _PageColumns:
    """The log's per-page columns, appended one batch of pages at a time (keys in first-add order)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {}

    def add(self, key: str, value: np.ndarray) -> None:
        self.cols.setdefault(key, []).append(np.asarray(value))

    def features(
        self, obs: dict[str, np.ndarray], slate: np.ndarray, targets: dict[str, Any], live: np.ndarray
    ) -> None:
        """Candidate features of the shown slate and of each target's own slate (for DM/DR)."""
        self.add("feat", _take(obs["cand_feat"], slate)[live])
        for n, t in targets.items():
            self.add(f"{n}_feat", _take(obs["cand_feat"], np.asarray(t.model_slate(obs)))[live])

    def pages(
        self,
        rows: np.ndarray,
        session: np.ndarray,
        step: np.ndarray,
        r: np.ndarray,
        ev: Any,
        slot_reward: np.ndarray | None,
        props: dict[str, np.ndarray],
        target_props: dict[str, dict[str, np.ndarray]],
    ) -> None:
        """One step's pages of the live ``rows``: outcomes and behaviour/target propensities."""
        self.add("session", session)
        self.add("step", step)
        self.add("reward", r[rows])
        self.add("slot_clicks", ev.clicked[rows].astype(float))
        self.add("items", ev.items[rows].astype(np.int64))
        if slot_reward is not None:
            self.add("slot_reward", slot_reward[rows])
        for key in ("joint", "prefix", "marginal"):
            self.add(f"pscore_{key}", props[key][rows])
            for n, tp in target_props.items():
                self.add(f"{n}_{key}", tp[key][rows])

    def arrays(self) -> dict[str, Any]:
        """The columns concatenated and sorted by (session, step), so each session is contiguous
        (pages were logged in step order)."""
        out = {k: np.concatenate(v) for k, v in self.cols.items()}
        order = np.lexsort((out["step"], out["session"]))
        return {k: v[order] for k, v in out.items()}


def log_in_simulator(
    sim: Simulator,
    behaviour: Any,
    targets: dict[str, Any],
    *,
    config: ShopperConfig,
    episodes: int | None = None,
    steps: int | None = None,
    reward: RewardFn | dict[str, float] | None = None,
    seed: int = 0,
    batch: int = 256,
    features: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Per-page arrays (see the module docstring); ``targets`` get ``<name>_joint`` etc.

    Logging starts new sessions (drawn uniformly from ``config.split`` with ``seed``) until
    ``episodes`` sessions were started or ``steps`` pages logged, then finishes the open ones.
    """
    if episodes is None and steps is None:
        raise ShopsimError("log_in_simulator: give episodes= or steps=")
    reward_fn = make_reward(reward)
    slot_fn = reward_fn.slot_rewards if isinstance(reward_fn, WeightedReward) else None
    n_ep = len(sim.episodes[config.split])
    rng = np.random.default_rng(seed)
    b = batch if episodes is None else min(batch, episodes)
    core = ShopperBatch(sim, b, config)
    for pol in (behaviour, *targets.values()):
        bind_engine(pol, core)
    session = np.full(b, -1)
    started = logged = 0
    log = _PageColumns()

    def start(free: np.ndarray) -> None:
        nonlocal started
        if (episodes is not None and started >= episodes) or (steps is not None and logged >= steps):
            return
        n = len(free) if episodes is None else min(len(free), episodes - started)
        rows = free[:n]
        core.reset_rows(rows, rng, rng.integers(0, n_ep, n))
        if hasattr(behaviour, "reset_rows"):
            behaviour.reset_rows(rows)  # e.g. a session-assigned A/B/n behaviour draws the arm
        session[rows] = started + np.arange(n)
        started += n

    start(np.arange(b))
    bar = tqdm(
        total=steps or episodes, desc="logging", unit="page" if steps else "session", disable=not progress
    )
    while (session >= 0).any():
        obs = core.observe()
        slate, _ = behaviour.predict(obs)
        slate = np.asarray(slate, dtype=np.int64).reshape(b, -1)
        props = behaviour.last
        target_props = {n: t.propensities(obs, slate) for n, t in targets.items()}
        if features:
            log.features(obs, slate, targets, session >= 0)
        ev, left, trunc = core.step_slate(slate, rng)
        r = np.asarray(reward_fn(ev), dtype=float)
        rows = np.flatnonzero(session >= 0)
        slot_reward = None if slot_fn is None else slot_fn(ev)
        log.pages(rows, session[rows], core.step_count[rows] - 1, r, ev, slot_reward, props, target_props)
        logged += len(rows)
        bar.update(len(rows) if steps else int((left | trunc)[rows].sum()))
        session[rows[(left | trunc)[rows]]] = -1
        start(np.flatnonzero(session < 0))
    bar.close()
    out = log.arrays()
    out["meta"] = {
        "sessions": started,
        "pages": logged,
        "slot_additive": bool(slot_fn is not None and reward_fn.slot_additive),  # type: ignore[attr-defined]
    }
    return out


def on_policy_value(
    sim: Simulator,
    policy: Any,
    *,
    episodes: int,
    config: ShopperConfig,
    seed: int,
    reward: RewardFn | dict[str, float] | None = None,
) -> EpisodeResults:
    """Monte-Carlo truth: ``policy`` played on-policy on ``episodes`` sessions of the split.

    ``returns.mean()`` is the session value, ``first.mean()`` the first-page value and
    ``returns.sum() / steps.sum()`` the reward per page.
    """
    record = getattr(policy, "record", None)
    if record is not None:
        policy.record = False  # no propensities needed on-policy
    try:
        return evaluate_policy_in_sim(sim, policy, episodes=episodes, config=config, reward=reward, seed=seed)
    finally:
        if record is not None:
            policy.record = record
