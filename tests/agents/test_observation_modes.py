"""The agents in the ``indices`` observation mode: the same training as the ``vectors`` mode,
and a trained policy acts on either mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shopsim.agents.saving import load_agent, save_agent
from shopsim.agents.training import PPOConfig, SlateQConfig, build_ppo, build_slateq, training_env
from shopsim.envs.engine import ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError

SHOP = ShopperConfig(slate_size=3, n_candidates=20)


def _train(name: str, sim: Simulator, observation: str, out: Path) -> object:
    env = training_env(sim, SHOP, 4, 0, observation=observation)
    if name == "ppo":
        model = build_ppo(env, PPOConfig(steps=256, n_steps=32, batch_size=64), out, seed=0)
        model.learn(256)
    else:
        model = build_slateq(env, SlateQConfig(steps=400, learning_starts=100), out, seed=0)  # type: ignore[assignment]
        model.learn(400)
    return model


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_training_in_either_mode_gives_the_same_weights(name: str, toy_sim: Path, tmp_path: Path) -> None:
    sim = Simulator.load(toy_sim)
    a = _train(name, sim, "vectors", tmp_path).policy.state_dict()  # type: ignore[attr-defined]
    b = _train(name, sim, "indices", tmp_path).policy.state_dict()  # type: ignore[attr-defined]
    assert a["item_table"].shape[0] == 0  # the vectors mode keeps no table
    assert b["item_table"].shape == (sim.catalog.n_items + 1, sim.catalog.dim)
    weights = [k for k in a if k != "item_table"]
    assert weights
    assert all(torch.equal(a[k], b[k]) for k in weights)


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_an_indices_mode_agent_saves_loads_and_acts_on_both_modes(
    name: str, toy_sim: Path, tmp_path: Path
) -> None:
    sim = Simulator.load(toy_sim)
    model = _train(name, sim, "indices", tmp_path)
    loaded = load_agent(save_agent(model, tmp_path / f"{name}.zip"))  # type: ignore[arg-type]
    vec = ShopperVecEnv(sim, 4, SHOP, seed=3)
    idx = ShopperVecEnv(sim, 4, SHOP, seed=3, observation="indices")
    ov, oi = vec.reset(), idx.reset()
    assert isinstance(ov, dict)
    assert isinstance(oi, dict)
    for _ in range(12):
        a, _ = model.predict(oi, deterministic=True)  # type: ignore[attr-defined]
        b, _ = loaded.predict(oi, deterministic=True)
        c, _ = loaded.predict(ov, deterministic=True)  # the evaluator's (vectors) observation
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        ov, oi = vec.step(a)[0], idx.step(a)[0]
        assert isinstance(ov, dict)
        assert isinstance(oi, dict)


def test_an_item_table_of_another_catalog_is_refused(toy_sim: Path, tmp_path: Path) -> None:
    model = _train("ppo", Simulator.load(toy_sim), "indices", tmp_path)
    with pytest.raises(ShopsimError, match=r"item table of shape \(5, 4\): this policy was built for \(33, "):
        model.policy.set_item_table(np.zeros((5, 4), np.float32))  # type: ignore[attr-defined]
