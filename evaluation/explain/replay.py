"""Replay one evaluation episode and keep what each step showed, exactly as evaluation did.

:func:`~shopsim.evaluation.in_simulator.evaluate_policy_in_sim` plays episodes in batches that
share one random generator per batch, so a session replayed on its own would see other random
draws. :func:`replay_episode` therefore runs the evaluation itself — same sessions, seed and
batch — through to the batch that holds the episode, and records that row through the
evaluation's observer hook: the explained slates are the evaluated ones by construction (and a
test checks it against a full evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.errors import ShopsimError
from shopsim.evaluation.in_simulator import StepObserver, evaluate_policy_in_sim


@dataclass
class ReplayedStep:
    """What one step of the episode showed, and the shopper's context when it was shown."""

    step: int
    history: np.ndarray
    """Item codes the shopper had interacted with, most recent first (-1 padded)."""
    items: np.ndarray
    """(k,) the slate's item codes, in slot order."""
    positions: np.ndarray
    """(k,) the slate as positions among the candidates."""
    click_features: np.ndarray
    """(k, F) the shown items' click features (:data:`~shopsim.envs.model.features.CLICK_FEATURES`)."""
    observation: dict[str, np.ndarray]
    """The agent's observation of this shopper at this step (unbatched)."""


Play = Callable[[int, StepObserver], Any]
"""``play(episodes, observer)``: the evaluation of one policy on the first ``episodes`` of its
episode list, calling ``observer`` on every step (e.g. a run's own evaluation call)."""


def replay(play: Play, episode: int, *, episodes: int, batch: int = 500) -> list[ReplayedStep]:
    """The steps of evaluation episode ``episode`` (0-based, of ``episodes``) as ``play`` —
    an evaluation in batches of ``batch`` — played it."""
    if not 0 <= episode < episodes:
        raise ShopsimError(
            f"explain: episode {episode} is not one of the {episodes} evaluated (0..{episodes - 1})"
        )
    first = episode // batch * batch
    # the episode list of `n` episodes starts with the one of fewer: play only up to this batch
    upto = min(episodes, first + batch)
    row = episode - first
    steps: list[ReplayedStep] = []

    def observe(
        start: int, core: ShopperBatch, obs: dict[str, np.ndarray], slates: np.ndarray, alive: np.ndarray
    ) -> None:
        if start != first or not alive[row]:
            return
        pos = slates[row].astype(np.int64)
        steps.append(
            ReplayedStep(
                step=len(steps),
                history=core.hist[row].copy(),
                items=core.cand[row, pos].copy(),
                positions=pos.copy(),
                click_features=core.cand_phi[row, pos].astype(np.float64),
                observation={k: np.array(v[row]) for k, v in obs.items()},
            )
        )

    play(upto, observe)
    return steps


def replay_episode(
    sim: Simulator,
    policy: Any,
    episode: int,
    *,
    episodes: int,
    config: ShopperConfig,
    seed: int,
    batch: int = 500,
) -> list[ReplayedStep]:
    """:func:`replay` of :func:`evaluate_policy_in_sim` with these arguments."""

    def play(n: int, observer: StepObserver) -> Any:
        return evaluate_policy_in_sim(
            sim, policy, episodes=n, config=config, seed=seed, batch=batch, observer=observer
        )

    return replay(play, episode, episodes=episodes, batch=batch)


__all__ = ["Play", "ReplayedStep", "replay", "replay_episode"]
