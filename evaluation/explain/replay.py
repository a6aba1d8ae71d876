"""Replay one evaluation episode and keep what each step showed, exactly as evaluation did.

:func:`~shopsim.evaluation.in_simulator.evaluate_policy_in_sim` plays episodes in batches that
share one random generator per batch, so a session replayed on its own would see other random
draws. :func:`replay_episode` therefore runs the evaluation itself — same sessions, seed and
batch — through to the batch that holds the episode, and records that row through the
evaluation's observer hook: the explained slates are the evaluated ones by construction (and a
test checks it against a full evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shopsim.agents.baselines.slates import click_model_logits
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
    candidates: np.ndarray
    """(N,) the item codes of this step's candidates (-1: none)."""
    click_features: np.ndarray
    """(k, F) the shown items' click features (:data:`~shopsim.envs.model.features.CLICK_FEATURES`)."""
    observation: dict[str, np.ndarray]
    """The agent's observation of this shopper at this step (unbatched)."""
    greedy_logits: np.ndarray
    """(N,) what ``click_model_greedy`` ranks the candidates by at this step (-inf: not a valid
    candidate), to compare a policy's slate with the greedy ranker's."""


Play = Callable[[int, StepObserver], Any]
"""``play(episodes, observer)``: the evaluation of one policy on the first ``episodes`` of its
episode list, calling ``observer`` on every step (e.g. a run's own evaluation call)."""


def replay(play: Play, episode: int, *, episodes: int, batch: int = 500) -> list[ReplayedStep]:
    """The steps of evaluation episode ``episode`` (0-based, of ``episodes``) as ``play`` —
    an evaluation in batches of ``batch`` — played it."""
    return replay_many(play, [episode], episodes=episodes, batch=batch)[episode]


def replay_many(
    play: Play, wanted: Sequence[int], *, episodes: int, batch: int = 500
) -> dict[int, list[ReplayedStep]]:
    """:func:`replay` of several episodes in one evaluation (played up to the batch of the
    last of them): episode → its steps."""
    for episode in wanted:
        if not 0 <= episode < episodes:
            raise ShopsimError(
                f"explain: episode {episode} is not one of the {episodes} evaluated (0..{episodes - 1})"
            )
    rows: dict[int, list[tuple[int, int]]] = {}  # batch start → (row, episode)
    for episode in sorted(set(wanted)):
        first = episode // batch * batch
        rows.setdefault(first, []).append((episode - first, episode))
    # the episode list of `n` episodes starts with the one of fewer: play only up to the last batch
    upto = min(episodes, max(rows) + batch)
    steps: dict[int, list[ReplayedStep]] = {e: [] for e in set(wanted)}

    def observe(
        start: int, core: ShopperBatch, obs: dict[str, np.ndarray], slates: np.ndarray, alive: np.ndarray
    ) -> None:
        here = [(row, e) for row, e in rows.get(start, ()) if alive[row]]
        if not here:
            return
        greedy = click_model_logits(core)
        for row, episode in here:
            pos = slates[row].astype(np.int64)
            steps[episode].append(
                ReplayedStep(
                    step=len(steps[episode]),
                    history=core.hist[row].copy(),
                    items=core.cand[row, pos].copy(),
                    positions=pos.copy(),
                    candidates=core.cand[row].copy(),
                    click_features=core.cand_phi[row, pos].astype(np.float64),
                    observation={k: np.array(v[row]) for k, v in obs.items()},
                    greedy_logits=np.where(obs["cand_mask"][row].astype(bool), greedy[row], -np.inf),
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


__all__ = ["Play", "ReplayedStep", "replay", "replay_episode", "replay_many"]
