"""Training the RL agents: budgets and hyper-parameters of PPO and SlateQ, in one place.

Both agents train on a :class:`~shopsim.envs.vec_env.ShopperVecEnv` of ``n_envs`` shoppers
in the same simulated shop the evaluation uses (slate size, candidates, what-if dynamics and
reward), and save to ``out/models/{ppo,dqn}.zip`` with TensorBoard logs under
``out/tensorboard``. Settings not named in :class:`PPOConfig` are SB3's PPO defaults;
:class:`SlateQConfig` repeats :class:`~shopsim.agents.slateq.SlateQ`'s constructor defaults
(a test keeps the two equal).

Resumable training (:mod:`shopsim.agents.checkpoints`): given a ``key`` (the hash of everything
the training depends on), :func:`train_agent` writes a checkpoint to ``out/checkpoints/NAME``
every ``checkpoint_every`` env steps (at the next rollout boundary), continues from a matching
one instead of step 0, and when ``out/models/NAME.zip`` exists with a matching
``NAME.train.json`` loads it instead of training. Each agent's learning curve is written to
``out/models/NAME.curve.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from tqdm.auto import tqdm

from shopsim.agents.checkpoints import (
    CheckpointCallback,
    Curve,
    curve_window,
    read_checkpoint,
    remove_checkpoint,
    restore,
)
from shopsim.agents.ppo import SlatePointerPolicy
from shopsim.agents.saving import load_agent, save_agent
from shopsim.agents.slateq import SlateQ, SlateQPolicy
from shopsim.artifacts import boundary, write_json_atomic
from shopsim.envs.engine import ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import RewardFn
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError

AlgorithmT = TypeVar("AlgorithmT", PPO, SlateQ)
Echo = Callable[[str], None]
BUDGET_FIELDS = ("steps", "checkpoint_every")
"""Fields of :class:`TrainingBudget`: shopsim's, not the algorithm's hyper-parameters."""


@dataclass
class TrainingBudget:
    """The budget every RL agent has."""

    steps: int = 60_000
    """Environment steps of training (0: do not train this agent)."""
    checkpoint_every: int = 10_000
    """Environment steps between training checkpoints (taken at the next rollout boundary;
    0: none). A killed run continues from the latest one."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ShopsimError(f"steps={self.steps}: must be ≥ 0 (0 skips training)")
        if self.checkpoint_every < 0:
            raise ShopsimError(f"checkpoint_every={self.checkpoint_every}: must be ≥ 0 (0: no checkpoints)")


@dataclass
class PPOConfig(TrainingBudget):
    """PPO (the ``ppo`` policy): budget and hyper-parameters (SB3 names and meanings)."""

    n_steps: int = 128
    """Steps per environment per rollout (a rollout is ``n_steps × n_envs`` steps)."""
    batch_size: int = 512
    """Minibatch size of each gradient step."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_range: float = 0.2
    """PPO clipping of the probability ratio."""
    ent_coef: float = 0.0
    """Entropy bonus (Plackett–Luce chain-rule estimate)."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_steps < 1 or self.batch_size < 1 or self.n_epochs < 1:
            raise ShopsimError("n_steps, batch_size and n_epochs must be positive integers")
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ShopsimError(
                f"gamma={self.gamma}, gae_lambda={self.gae_lambda}: must lie in (0, 1] / [0, 1]"
            )
        if self.learning_rate <= 0 or self.clip_range <= 0:
            raise ShopsimError("learning_rate and clip_range must be positive")


@dataclass
class SlateQConfig(TrainingBudget):
    """SlateQ (the ``dqn`` policy): budget and hyper-parameters (see :class:`SlateQ`)."""

    learning_rate: float = 3e-4
    """Adam learning rate."""
    buffer_size: int = 20_000
    """Replay buffer transitions."""
    learning_starts: int = 1_000
    """Steps of pure exploration before the first update."""
    batch_size: int = 128
    """Replay minibatch size."""
    tau: float = 0.01
    """Polyak rate of the target network."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 1
    """Update every ``train_freq`` vectorised steps."""
    gradient_steps: int = 1
    """Gradient steps per update."""
    target_update_interval: int = 1
    """Updates between target-network syncs."""
    exploration_fraction: float = 0.3
    """Share of the budget over which ε decays."""
    exploration_initial_eps: float = 1.0
    """ε at the start."""
    exploration_final_eps: float = 0.05
    """ε after the decay."""
    max_grad_norm: float = 10.0
    """Gradient clipping norm."""
    choice_loss_weight: float = 1.0
    """Weight of the click-choice model's loss next to the Q loss."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.buffer_size < 1 or self.batch_size < 1 or self.train_freq < 1 or self.gradient_steps < 1:
            raise ShopsimError("buffer_size, batch_size, train_freq and gradient_steps must be positive")
        if not 0 <= self.exploration_final_eps <= self.exploration_initial_eps <= 1:
            raise ShopsimError("exploration: 0 ≤ exploration_final_eps ≤ exploration_initial_eps ≤ 1")


class ProgressBar(BaseCallback):
    """A tqdm bar over environment steps (SB3's own needs ``rich``)."""

    def __init__(self, total: int, desc: str, initial: int = 0) -> None:
        super().__init__()
        self.bar = tqdm(total=total, desc=desc, unit="step", initial=initial)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


TRAINING_OBSERVATION = "indices"
"""The observation mode the agents train in (:mod:`shopsim.envs.env`): candidate item codes,
the policy gathers their vectors from its copy of the item table — the same numbers as the
``vectors`` mode without copying N × d floats per step into the rollout and replay buffers."""


def training_env(
    sim: Simulator,
    shop: ShopperConfig,
    n_envs: int,
    seed: int,
    reward: RewardFn | None = None,
    observation: str = TRAINING_OBSERVATION,
) -> ShopperVecEnv:
    """The vector env both agents train on: the evaluation's shop (every setting of ``shop``,
    so training and evaluation see the same page), on the train split, in the
    :data:`TRAINING_OBSERVATION` mode."""
    return ShopperVecEnv(
        sim, n_envs, replace(shop, split="train"), reward=reward, seed=seed, observation=observation
    )


def build_ppo(env: ShopperVecEnv, cfg: PPOConfig, out: Path, *, seed: int) -> PPO:
    """PPO with the pointer policy on ``env``, as :func:`train_ppo` trains it."""
    hyper = {k: v for k, v in asdict(cfg).items() if k not in BUDGET_FIELDS}
    model = PPO(
        SlatePointerPolicy,  # type: ignore[arg-type]
        env,
        seed=seed,
        verbose=0,
        tensorboard_log=str(out / "tensorboard"),
        **hyper,
    )
    assert isinstance(model.policy, SlatePointerPolicy)
    model.policy.set_item_table(env.item_vectors)
    return model


def build_slateq(env: ShopperVecEnv, cfg: SlateQConfig, out: Path, *, seed: int) -> SlateQ:
    """SlateQ on ``env``, as :func:`train_slateq` trains it."""
    hyper = {k: v for k, v in asdict(cfg).items() if k not in BUDGET_FIELDS}
    model = SlateQ(SlateQPolicy, env, seed=seed, tensorboard_log=str(out / "tensorboard"), **hyper)
    model.policy.set_item_table(env.item_vectors)
    return model


def train_ppo(
    env: ShopperVecEnv,
    cfg: PPOConfig,
    out: Path,
    *,
    seed: int,
    callback: BaseCallback | None = None,
    key: str | None = None,
    echo: Echo = print,
) -> tuple[PPO, float]:
    """PPO with the pointer policy on ``env``; saves ``out/models/ppo.zip``; returns (model,
    seconds). ``key``: resumable (see the module docstring)."""
    return _learn(lambda: build_ppo(env, cfg, out, seed=seed), env, cfg, "ppo", out, callback, key, echo)


def train_slateq(
    env: ShopperVecEnv,
    cfg: SlateQConfig,
    out: Path,
    *,
    seed: int,
    callback: BaseCallback | None = None,
    key: str | None = None,
    echo: Echo = print,
) -> tuple[SlateQ, float]:
    """SlateQ (the ``dqn`` policy) on ``env``; saves ``out/models/dqn.zip``; returns (model,
    seconds). ``key``: resumable (see the module docstring)."""
    return _learn(lambda: build_slateq(env, cfg, out, seed=seed), env, cfg, "dqn", out, callback, key, echo)


def _learn(
    build: Callable[[], AlgorithmT],
    env: ShopperVecEnv,
    cfg: TrainingBudget,
    name: str,
    out: Path,
    callback: BaseCallback | None,
    key: str | None,
    echo: Echo,
) -> tuple[AlgorithmT, float]:
    t0 = time.perf_counter()
    steps = cfg.steps
    zip_path = out / "models" / f"{name}.zip"
    marker = out / "models" / f"{name}.train.json"
    if key is not None and _marker_matches(marker, key) and zip_path.is_file():
        model = load_agent(zip_path)
        remove_checkpoint(out / "checkpoints" / name)  # left when killed right after the marker
        echo(f"{name}: reused {zip_path} (same training: config, seed, shop, reward and simulator)")
        return model, time.perf_counter() - t0  # type: ignore[return-value]
    model = build()
    folder = out / "checkpoints" / name
    curve, done = Curve(curve_window(model)), 0
    if key is not None and cfg.checkpoint_every:
        ck = read_checkpoint(folder, key, echo)
        if ck is not None and ck.num_timesteps < steps:
            try:
                curve = restore(model, env, ck)
                done = ck.num_timesteps
                echo(
                    f"{name}: resuming training from the checkpoint at step {done:,} of {steps:,} ({folder})"
                )
            except (ValueError, KeyError, RuntimeError) as exc:
                echo(f"note: checkpoint {folder} does not fit this model ({exc}); training from step 0")
                model = build()  # a partial restore is never trusted: a clean model
    ckpt = CheckpointCallback(folder, env, curve, cfg.checkpoint_every, key, start=done)
    cbs = CallbackList(
        [
            ProgressBar(steps, {"ppo": "PPO", "dqn": "SlateQ"}[name], initial=done),
            ckpt,
            *([callback] if callback else []),
        ]
    )
    model.learn(steps - done, callback=cbs, tb_log_name=name, reset_num_timesteps=done == 0)
    secs = time.perf_counter() - t0
    save_agent(model, zip_path)
    boundary("train:model-saved")
    write_json_atomic(out / "models" / f"{name}.curve.json", curve.report(name), indent=2)
    if ckpt.write_seconds:
        echo(
            f"{name}: {len(ckpt.write_seconds)} checkpoint(s), last {ckpt.sizes[-1] / 1e6:.1f} MB, "
            f"{sum(ckpt.write_seconds) / len(ckpt.write_seconds):.2f} s each"
        )
    if key is not None:
        write_json_atomic(marker, {"key": key, "steps": steps, "resumed_from": done}, indent=2)
        remove_checkpoint(folder)  # the final model vouches for this training now
    return model, secs


def _marker_matches(marker: Path, key: str) -> bool:
    try:
        got: Any = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(got, dict) and got.get("key") == key


def train_agent(
    name: str,
    env: ShopperVecEnv,
    ppo: PPOConfig,
    dqn: SlateQConfig,
    out: Path,
    *,
    seed: int,
    steps: int | None = None,
    callback: BaseCallback | None = None,
    key: str | None = None,
    echo: Echo = print,
) -> tuple[PPO | SlateQ, float]:
    """Train the RL policy ``name`` (``ppo`` or ``dqn``) with its config (``steps`` overrides
    the budget); returns (model, seconds). With ``key`` (see :func:`shopsim.agents.checkpoints.training_key`)
    training checkpoints, resumes and reuses a finished model (module docstring)."""
    kw: dict[str, Any] = {"seed": seed, "callback": callback, "key": key, "echo": echo}
    if name == "ppo":
        return train_ppo(env, ppo if steps is None else replace(ppo, steps=steps), out, **kw)
    if name == "dqn":
        return train_slateq(env, dqn if steps is None else replace(dqn, steps=steps), out, **kw)
    raise ShopsimError(f"{name!r} is not an RL policy; the RL policies are ppo and dqn")
