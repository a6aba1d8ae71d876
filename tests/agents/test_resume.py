"""Resumable training: a run stopped at a checkpoint and continued in a fresh model and env
ends with exactly the parameters (and replay buffer, and learning curve) of an uninterrupted
run; the vector env's state round-trips; damaged or foreign checkpoints are never trusted.

Default: PPO's resume, SlateQ's checkpoint round trip, the env round trip; ``slow``: SlateQ's
full resume and the damaged/foreign checkpoint cases."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from shopsim.agents.checkpoints import training_key
from shopsim.agents.slateq import SlateQ
from shopsim.agents.training import PPOConfig, SlateQConfig, train_agent
from shopsim.envs.vec_env import ShopperVecEnv

N_ENVS = 4
PPO_CFG = PPOConfig(steps=384, n_steps=16, batch_size=32, n_epochs=2, checkpoint_every=128)
# a replay buffer smaller than the budget: the restored buffer has wrapped around
DQN_CFG = SlateQConfig(
    steps=480,
    buffer_size=200,
    learning_starts=64,
    batch_size=16,
    checkpoint_every=200,
    exploration_fraction=0.5,
)


class StopAfter(BaseCallback):
    """Ctrl-C (KeyboardInterrupt) at the first rollout boundary at or after ``steps``: runs after
    the checkpoint callback, so the checkpoint of that boundary has been written."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt


def _env(sim: Path) -> ShopperVecEnv:
    return ShopperVecEnv(sim, N_ENVS, slate_size=3, n_candidates=10, seed=0)


def _train(sim: Path, name: str, out: Path, key: str | None, **kw: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    model, _ = train_agent(name, _env(sim), PPO_CFG, DQN_CFG, out, seed=3, key=key, echo=lines.append, **kw)
    return model, lines


def _params(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def _same_params(a: Any, b: Any) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


@pytest.mark.parametrize("name", ["ppo", pytest.param("dqn", marks=pytest.mark.slow)])
def test_resumed_training_equals_uninterrupted(toy_sim: Path, tmp_path: Path, name: str) -> None:
    key = training_key({"test": name})
    straight, _ = _train(toy_sim, name, tmp_path / "straight", None)  # no checkpoints at all
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _train(toy_sim, name, out, key, callback=StopAfter(250))
    ckpt = out / "checkpoints" / name
    state = json.loads((ckpt / "state.json").read_text())
    assert 0 < state["num_timesteps"] < 384  # a checkpoint mid-training survived the Ctrl-C
    resumed, lines = _train(toy_sim, name, out, key)  # new model object, new env
    assert any(
        f"resuming training from the checkpoint at step {state['num_timesteps']}" in ln for ln in lines
    )
    _same_params(straight, resumed)
    total = PPO_CFG.steps if name == "ppo" else DQN_CFG.steps
    assert straight.num_timesteps == resumed.num_timesteps == total
    if isinstance(straight, SlateQ):
        a, b = straight.replay_buffer, resumed.replay_buffer
        assert a is not None
        assert b is not None
        assert a.full
        assert b.full
        assert a.pos == b.pos
        for k in a.observations:
            assert np.array_equal(a.observations[k], b.observations[k])
            assert np.array_equal(a.next_observations[k], b.next_observations[k])
        assert np.array_equal(a.clicks, b.clicks)  # type: ignore[attr-defined]
        assert np.array_equal(a.rewards, b.rewards)
        assert straight.exploration_rate == resumed.exploration_rate
    curve = json.loads((out / "models" / f"{name}.curve.json").read_text())
    assert curve == json.loads((tmp_path / "straight" / "models" / f"{name}.curve.json").read_text())
    assert curve["agent"] == name
    assert curve["steps"][-1] == total
    assert sum(curve["episodes"]) > 0
    assert not ckpt.exists()  # the final model vouches for the training
    # the same training again: the finished model is loaded, not retrained
    again, lines = _train(toy_sim, name, out, key)
    assert any("reused" in ln for ln in lines)
    _same_params(straight, again)


@pytest.mark.slow
def test_damaged_or_foreign_checkpoint_is_not_trusted(toy_sim: Path, tmp_path: Path) -> None:
    key = training_key({"test": "damaged"})
    straight, _ = _train(toy_sim, "ppo", tmp_path / "straight", None)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train(toy_sim, "ppo", out, key, callback=StopAfter(128))
    npz = out / "checkpoints" / "ppo" / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    resumed, lines = _train(toy_sim, "ppo", out, key)
    assert any(ln.startswith("note: checkpoint not used, training from step 0") for ln in lines), lines
    assert not any("resuming" in ln for ln in lines)
    _same_params(straight, resumed)  # trained from zero: the same result
    # a checkpoint of another training is ignored with a note
    out2 = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        _train(toy_sim, "ppo", out2, key, callback=StopAfter(128))
    _, lines = _train(toy_sim, "ppo", out2, training_key({"test": "another"}))
    assert any("is a checkpoint of another training" in ln for ln in lines), lines


def test_vec_env_state_round_trip(toy_sim: Path) -> None:
    rng = np.random.default_rng(1)
    actions = [rng.integers(0, 10, (N_ENVS, 3)) for _ in range(60)]
    env = _env(toy_sim)
    env.reset()
    for a in actions[:20]:
        env.step(a)
    state = env.get_state()
    json.dumps(state["rng"])  # JSON-ready

    def play(e: ShopperVecEnv) -> list[Any]:
        out = []
        for a in actions[20:]:
            obs, r, d, infos = e.step(a)
            out.append((obs, r, d, [i.get("shopper") for i in infos]))
        return out

    first = play(env)
    other = ShopperVecEnv(toy_sim, N_ENVS, slate_size=3, n_candidates=10, seed=99)
    other.reset()
    other.set_state(state)
    second = play(other)
    assert sum(int(d.sum()) for _, _, d, _ in first) > 0  # episodes ended (and restarted) meanwhile
    for (o1, r1, d1, s1), (o2, r2, d2, s2) in zip(first, second, strict=True):
        assert all(np.array_equal(o1[k], o2[k]) for k in o1)
        assert np.array_equal(r1, r2)
        assert np.array_equal(d1, d2)
        assert s1 == s2
    wrong = ShopperVecEnv(toy_sim, N_ENVS + 1, slate_size=3, n_candidates=10, seed=0)
    with pytest.raises(ValueError, match="another n_envs"):
        wrong.set_state(state)


def test_checkpoint_every_is_validated() -> None:
    from shopsim.errors import ShopsimError

    with pytest.raises(ShopsimError, match="checkpoint_every"):
        replace(PPO_CFG, checkpoint_every=-1)


def test_slateq_checkpoint_restores_the_replay_buffer(toy_sim: Path, tmp_path: Path) -> None:
    """Write → read → restore into a fresh model: the wrapped-around replay buffer (with its
    next observations stored as exceptions), the last observation and the env come back exact."""
    from shopsim.agents.checkpoints import Curve, read_checkpoint, restore, write_checkpoint
    from shopsim.agents.training import build_slateq

    env = _env(toy_sim)
    model = build_slateq(env, DQN_CFG, tmp_path, seed=3)
    model.learn(320)  # 80 vector steps into a 50-row ring: full, wrapped
    buf = model.replay_buffer
    assert buf is not None
    assert buf.full
    assert buf.pos > 0
    assert int(buf.dones.sum()) > 0  # episode ends: next obs ≠ the following row's obs there
    write_checkpoint(tmp_path / "ck", model, env, Curve(64), "k")
    ck = read_checkpoint(tmp_path / "ck", "k", print)
    assert ck is not None
    env2 = _env(toy_sim)
    fresh = build_slateq(env2, DQN_CFG, tmp_path, seed=4)
    restore(fresh, env2, ck)
    new = fresh.replay_buffer
    assert new is not None
    assert new.full
    assert new.pos == buf.pos
    for k in buf.observations:
        assert np.array_equal(buf.observations[k], new.observations[k])
        assert np.array_equal(buf.next_observations[k], new.next_observations[k])
    for name in ("actions", "rewards", "dones", "timeouts", "clicks"):
        assert np.array_equal(getattr(buf, name), getattr(new, name)), name
    assert model._last_obs is not None
    assert fresh._last_obs is not None
    assert all(np.array_equal(model._last_obs[k], fresh._last_obs[k]) for k in model._last_obs)  # type: ignore[index]
    s1, s2 = env.get_state(), env2.get_state()
    assert s1["rng"] == s2["rng"]
    assert all(np.array_equal(s1["arrays"][k], s2["arrays"][k]) for k in s1["arrays"])
