"""The one in-simulator evaluator: shared episode starts change nothing."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from shopsim.agents.baselines.slates import RandomSlate
from shopsim.envs.engine import SessionStarts, ShopperBatch, ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.evaluation.in_simulator import evaluate_policy_in_sim


def test_shared_starts_give_the_same_results(toy_sim: Path) -> None:
    sim = Simulator.load(toy_sim)
    cfg = ShopperConfig(slate_size=3, n_candidates=20, split="test")
    starts = SessionStarts(sim, cfg)
    alone = asdict(evaluate_policy_in_sim(sim, RandomSlate(3, seed=4), episodes=300, config=cfg, batch=120))
    for _ in range(2):  # first with empty pages (drawn and stored), then from the stored pages
        shared = evaluate_policy_in_sim(
            sim, RandomSlate(3, seed=4), episodes=300, config=cfg, batch=120, starts=starts
        )
        for key, value in alone.items():
            np.testing.assert_array_equal(value, asdict(shared)[key], err_msg=key)
        assert starts.pages.have.any()


def test_starts_of_other_settings_are_refused(toy_sim: Path) -> None:
    sim = Simulator.load(toy_sim)
    starts = SessionStarts(sim, ShopperConfig(slate_size=3, n_candidates=20, split="test"))
    with pytest.raises(ValueError, match="the shared starts belong to another simulator or shop settings"):
        ShopperBatch(sim, 4, ShopperConfig(slate_size=3, n_candidates=10, split="test"), starts=starts)
