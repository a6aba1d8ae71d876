"""``ShopperVecEnv``: B shoppers stepped together with numpy, as a Stable-Baselines3 ``VecEnv``.

It runs the same engine as :class:`~shopsim.envs.env.ShopperEnv`
(:class:`~shopsim.envs.engine.ShopperBatch`), over B rows instead of one, so it is the same
simulator. SB3 semantics: ``reset()`` returns observations only, ``step`` returns
``(obs, rewards, dones, infos)``, finished shoppers are replaced at once and their last
observation is in ``infos[i]["terminal_observation"]`` (with ``TimeLimit.truncated``).
One numpy Generator drives all B shoppers: ``seed(s)`` then ``reset()`` repeats exactly.

:meth:`ShopperVecEnv.get_state` / :meth:`~ShopperVecEnv.set_state` capture and restore
everything the next step depends on (the Generator's state and every per-shopper array of the
engine), as plain JSON plus numpy arrays, so a training checkpoint can resume the env exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.env import (
    action_space,
    check_observation_mode,
    item_table,
    load_simulator,
    observation_space,
    shop_config,
)
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import RewardFn, make_reward

ROW_STATE = (
    "hist",
    "hist_ev",
    "intent",
    "intent_ev",
    "bought",
    "touched_cats",
    "state",
    "time",
    "price_mean",
    "price_known",
    "step_count",
    "episode_index",
    "cand",
    "cand_src",
    "cand_feat",
    "cand_phi",
    "stats",
    "cat_seen",
    "shown_log",
)
"""The per-shopper arrays of :class:`ShopperBatch` that change while shoppers shop (the rest is
fixed by the simulator and the config, or a cache that depends on the logged session only)."""


class ShopperVecEnv(VecEnv):
    """``n_envs`` shoppers; ``config``, ``reward`` and the keyword overrides are those of
    :class:`ShopperEnv` (the same settings path, :func:`~shopsim.envs.env.shop_config`).

    :param seed: seeds the one Generator of all shoppers (also :meth:`seed`).
    :param observation: ``vectors`` (default) or ``indices`` (no ``cand``: the policy gathers
        ``item_vectors[cand_item]`` itself; see :mod:`shopsim.envs.env`).
    """

    def __init__(
        self,
        simulator: Simulator | str | Path,
        n_envs: int = 64,
        config: ShopperConfig | None = None,
        *,
        reward: RewardFn | dict[str, float] | None = None,
        seed: int | None = None,
        observation: str = "vectors",
        **overrides: Any,
    ) -> None:
        self.sim = load_simulator(simulator)
        self.config = shop_config(config, overrides)
        self.observation = check_observation_mode(observation, self.sim.catalog.n_items)
        self.core = ShopperBatch(self.sim, n_envs, self.config)
        self.reward_fn = make_reward(reward)
        self.render_mode = None
        cat = self.sim.catalog
        super().__init__(
            n_envs,
            observation_space(cat.dim, self.config.n_candidates, cat.n_items, self.observation),
            action_space(self.config),
        )
        self.item_vectors = item_table(self.sim)
        """The read-only table of the ``cand_item`` codes: ``item_vectors[cand_item]`` = ``cand``."""
        self.rng = np.random.default_rng(seed)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        if self._seeds[0] is not None:
            self.rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        self.core.reset_rows(np.arange(self.num_envs), self.rng)
        self.reset_infos = [
            {"session_id": str(self.core.episodes.session_ids[e])} for e in self.core.episode_index
        ]
        return self.core.observe(mode=self.observation)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "call step_async first"
        events, left, truncated = self.core.step_slate(self._actions, self.rng)
        rewards = np.asarray(self.reward_fn(events), dtype=np.float32)
        self.core.stats[:, 3] += rewards
        dones = left | truncated
        # per-slot clicks for every shopper: off-policy slate learners (SlateQ) need the choice
        infos: list[dict[str, Any]] = [{"slot_clicks": c} for c in events.clicked.astype(np.int8)]
        done_rows = np.flatnonzero(dones)
        if len(done_rows):
            terminal = self.core.observe(done_rows, mode=self.observation)
            for j, i in enumerate(done_rows.tolist()):
                infos[i] |= {
                    "terminal_observation": {k: v[j] for k, v in terminal.items()},
                    "TimeLimit.truncated": bool(truncated[i]),
                    "shopper": self.core.episode_summary(i),
                }
            self.core.reset_rows(done_rows, self.rng)
        return self.core.observe(mode=self.observation), rewards, dones, infos

    def close(self) -> None:
        return None

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self.rng = np.random.default_rng(seed)
        return super().seed(seed)

    # --- exact save / restore ----------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything the next :meth:`step_wait` depends on: ``{"rng": JSON-ready state of the
        Generator, "arrays": {name: copy of each per-shopper array of the engine}}`` (names in
        :data:`ROW_STATE`). Restoring it with :meth:`set_state` on an env built with the same
        simulator, ``n_envs`` and config gives the same subsequent steps."""
        return {
            "rng": _json_ready(self.rng.bit_generator.state),
            "arrays": {name: np.array(getattr(self.core, name), copy=True) for name in ROW_STATE},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` result (pending seeds of :meth:`seed` are dropped: the
        restored Generator replaces them).

        :raises ValueError: the state does not fit this env (another ``n_envs``, config or
            simulator: an array's shape or dtype differs, or the Generator is not PCG64).
        """
        rng_state = state["rng"]
        if not isinstance(rng_state, dict) or rng_state.get("bit_generator") != "PCG64":
            raise ValueError("ShopperVecEnv.set_state: the generator state is not a PCG64 state")
        arrays = state["arrays"]
        missing = sorted(set(ROW_STATE) - set(arrays))
        if missing:
            raise ValueError(f"ShopperVecEnv.set_state: no array {missing[0]!r}")
        for name in ROW_STATE:
            cur, new = getattr(self.core, name), np.asarray(arrays[name])
            if cur.shape != new.shape or cur.dtype != new.dtype:
                raise ValueError(
                    f"ShopperVecEnv.set_state: {name} is {new.dtype}{list(new.shape)}, this env holds "
                    f"{cur.dtype}{list(cur.shape)} (another n_envs, shop config or simulator)"
                )
        for name in ROW_STATE:
            getattr(self.core, name)[...] = arrays[name]
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = rng_state
        self.rng = rng
        self._reset_seeds()
        self._actions = None

    # --- attribute plumbing SB3 expects (all shoppers share one simulator) ---------------
    def _targets(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kw: Any
    ) -> list[Any]:
        fn = getattr(self, method_name)
        return [fn(*method_args, **kw) for _ in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._targets(indices)]


def _json_ready(x: Any) -> Any:
    """numpy scalars inside a bit-generator state as plain Python numbers."""
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, np.integer):
        return int(x)
    return x
