"""The replayed episode shows the slates the evaluation showed for the same session and seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopsim.agents.registry import PolicyContext, build_policies
from shopsim.envs.engine import ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.errors import ShopsimError
from shopsim.evaluation.explain.replay import replay_episode
from shopsim.evaluation.in_simulator import evaluate_policy_in_sim


def test_replayed_slates_are_the_evaluated_ones(toy_sim: Path) -> None:
    sim = Simulator.load(toy_sim)
    cfg = ShopperConfig(slate_size=3, n_candidates=10, split="test")
    for name, policy in build_policies(["popularity", "random"], PolicyContext(3, seed=2)).items():
        seen: dict[int, list[np.ndarray]] = {}

        def record(start, core, obs, slates, alive, seen=seen):  # type: ignore[no-untyped-def]
            for r in np.flatnonzero(alive):
                seen.setdefault(start + int(r), []).append(core.cand[r, slates[r]].copy())

        evaluate_policy_in_sim(sim, policy, episodes=60, config=cfg, seed=5, batch=25, observer=record)
        for episode in (3, 37, 59):  # a fresh policy per replay: a random policy's RNG starts over
            again = build_policies([name], PolicyContext(3, seed=2))[name]
            steps = replay_episode(sim, again, episode, episodes=60, config=cfg, seed=5, batch=25)
            assert [s.items.tolist() for s in steps] == [x.tolist() for x in seen[episode]], (name, episode)
            assert all(s.click_features.shape == (3, 17) for s in steps)


def test_an_episode_outside_the_evaluation_is_one_line(toy_sim: Path) -> None:
    sim = Simulator.load(toy_sim)
    cfg = ShopperConfig(slate_size=3, n_candidates=10, split="test")
    pol = build_policies(["popularity"], PolicyContext(3))["popularity"]
    with pytest.raises(ShopsimError, match=r"explain: episode 60 is not one of the 60 evaluated \(0..59\)"):
        replay_episode(sim, pol, 60, episodes=60, config=cfg, seed=5)
