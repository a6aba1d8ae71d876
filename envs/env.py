"""``ShopperEnv``: one simulated shopper as a Gymnasium environment (``shopsim/Shopper-v0``).

>>> import gymnasium as gym, shopsim.envs                         # doctest: +SKIP
>>> env = gym.make("shopsim/Shopper-v0", simulator="runs/sim")     # doctest: +SKIP

Observation (``Dict``, observation contract version :data:`OBSERVATION_VERSION`):

* ``user`` — Box(d): the shopper's state vector (state encoder over the history);
* ``cand`` — Box(N, d): candidate item vectors (zeros where masked); only in the default
  ``observation="vectors"`` mode;
* ``cand_item`` — Box(N) int64 in 0..I: the candidates' item codes, I (one past the last code)
  where masked, so that ``item_vectors[cand_item]`` (the env's read-only (I + 1, d) table, last
  row zeros) equals ``cand`` exactly;
* ``cand_feat`` — Box(N, f): candidate features (:data:`~shopsim.envs.model.features.CAND_FEATURES`),
  each column within its finite bounds (:data:`~shopsim.envs.model.features.CAND_BOUNDS`);
* ``cand_mask`` — MultiBinary(N): 1 where the candidate is valid (always ≥ k valid).

``observation="indices"`` leaves ``cand`` out: a policy that holds the item table gathers the
vectors itself (shopsim's PPO and SlateQ policies do, and train in this mode), so a step does not
copy N × d floats and a replay buffer stores N integers per observation instead of N × d floats.
Both modes run the same simulator: for the same seed and actions they give the same rewards
and the same observations (``cand`` aside). Version history: 1 = user, cand, cand_feat,
cand_mask; 2 = adds ``cand_item`` and the ``indices`` mode.

Action: ``MultiDiscrete([N] * k)``, candidate indices by slot (slot 1 first). Any action of
the space is accepted; a slot repeating an earlier slot's item, or pointing at a masked
candidate, is shown empty (:meth:`~shopsim.envs.engine.ShopperBatch.slate_items`). An index
outside 0..N-1 is not in the space: a :class:`~shopsim.errors.ShopsimError`, never clamped.

Settings: a :class:`~shopsim.envs.engine.ShopperConfig`, and/or its fields as keywords
(``ShopperEnv(sim, slate_size=5)`` = ``ShopperEnv(sim, ShopperConfig(slate_size=5))``; keywords
override the config's fields).

``terminated`` — the shopper left (leave model). ``truncated`` — ``max_steps`` reached.
``info["events"]`` lists the step's shown items, positions, clicks, purchases, prices and
categories; rewards are computed from them by the reward function (:mod:`shopsim.envs.rewards`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.model.features import CAND_BOUNDS, CAND_FEATURES
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import RewardFn, make_reward
from shopsim.errors import ShopsimError

OBSERVATION_VERSION = 2
"""Version of the observation contract (see the module docstring for the history)."""
OBSERVATION_MODES = ("vectors", "indices")
"""``vectors`` (default): candidate vectors in the observation; ``indices``: item codes only."""
MAX_INDEXED_ITEMS = 2**24
"""Largest catalog the ``indices`` mode supports: SB3's buffers store observations as float32,
which holds every integer up to 2^24 exactly."""


def check_observation_mode(mode: str, n_items: int) -> str:
    """``mode`` if it is one of :data:`OBSERVATION_MODES` and fits the catalog.

    :raises ShopsimError: another name, or ``indices`` on a catalog of more than
        :data:`MAX_INDEXED_ITEMS` items.
    """
    if mode not in OBSERVATION_MODES:
        raise ShopsimError(f"observation={mode!r}: unknown mode; use one of {', '.join(OBSERVATION_MODES)}")
    if mode == "indices" and n_items >= MAX_INDEXED_ITEMS:
        raise ShopsimError(
            f"observation='indices': the catalog has {n_items:,} items, more than float32 "
            f"observation buffers hold exactly ({MAX_INDEXED_ITEMS:,}); use observation='vectors'"
        )
    return mode


def observation_space(dim: int, n: int, n_items: int, mode: str = "vectors") -> spaces.Dict:
    """The observation space shared by :class:`ShopperEnv` and the vector env (``n_items``:
    the catalog size I, the masked candidates' code)."""
    low, high = (np.array([CAND_BOUNDS[f][j] for f in CAND_FEATURES], np.float32) for j in (0, 1))
    parts: dict[str, spaces.Space[Any]] = {"user": spaces.Box(-1.01, 1.01, shape=(dim,), dtype=np.float32)}
    if mode == "vectors":
        parts["cand"] = spaces.Box(-1.01, 1.01, shape=(n, dim), dtype=np.float32)
    parts["cand_item"] = spaces.Box(0, n_items, shape=(n,), dtype=np.int64)
    parts["cand_feat"] = spaces.Box(np.tile(low, (n, 1)), np.tile(high, (n, 1)), dtype=np.float32)
    parts["cand_mask"] = spaces.MultiBinary(n)
    return spaces.Dict(parts)


def item_table(sim: Simulator) -> np.ndarray:
    """The read-only (I + 1, d) float32 item-vector table of the ``cand_item`` codes (last row
    zeros: masked candidates)."""
    table = sim.catalog.vectors0.view()
    table.flags.writeable = False
    return table


def load_simulator(simulator: Simulator | str | Path) -> Simulator:
    """``simulator`` itself, or the simulator folder it names loaded."""
    return simulator if isinstance(simulator, Simulator) else Simulator.load(simulator)


def shop_config(config: ShopperConfig | None, overrides: dict[str, Any]) -> ShopperConfig:
    """The settings of an env: ``config`` (default ``ShopperConfig()``) with the keyword
    ``overrides`` replaced — the one path both :class:`ShopperEnv` and the vector env take."""
    return (config or ShopperConfig()).with_overrides(**overrides)


def action_space(config: ShopperConfig) -> spaces.MultiDiscrete:
    """``MultiDiscrete([N] * k)``: a candidate index per slot."""
    return spaces.MultiDiscrete([config.n_candidates] * config.slate_size)


class ShopperEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A shopper from a real logged session responding to recommendation slates.

    :param simulator: a fitted simulator folder (``shopsim simulator fit``) or a loaded
        :class:`~shopsim.envs.model.simulator.Simulator`.
    :param config: the shop's settings (default ``ShopperConfig()``: k = 10, N = 100,
        ``max_steps`` 20, train split, what-if dynamics off).
    :param reward: a reward callable or a dict of
        :class:`~shopsim.envs.rewards.WeightedReward` weights (default: clicks).
    :param observation: ``vectors`` (default) or ``indices`` (no ``cand``; see the module
        docstring).
    :param overrides: fields of :class:`~shopsim.envs.engine.ShopperConfig` replacing the
        config's (``slate_size``, ``n_candidates``, ``max_steps``, ``split``,
        ``candidate_mix``, ``fatigue``, ``exposure_intent``, ...); an unknown name is a
        :class:`~shopsim.errors.ShopsimError`.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 (gymnasium declares it an instance attribute)

    def __init__(
        self,
        simulator: Simulator | str | Path,
        config: ShopperConfig | None = None,
        *,
        reward: RewardFn | dict[str, float] | None = None,
        render_mode: str | None = None,
        observation: str = "vectors",
        **overrides: Any,
    ) -> None:
        self.sim = load_simulator(simulator)
        self.config = shop_config(config, overrides)
        self.observation = check_observation_mode(observation, self.sim.catalog.n_items)
        self.core = ShopperBatch(self.sim, 1, self.config)
        self.reward_fn = make_reward(reward)
        cat = self.sim.catalog
        self.observation_space = observation_space(  # type: ignore[assignment]
            cat.dim, self.config.n_candidates, cat.n_items, self.observation
        )
        self.item_vectors = item_table(self.sim)
        """The read-only table of the ``cand_item`` codes: ``item_vectors[cand_item]`` = ``cand``."""
        self.action_space = action_space(self.config)
        self.render_mode = render_mode
        self._last_events: dict[str, Any] | None = None

    def _obs(self) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.core.observe(mode=self.observation).items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new shopper. ``options={"episode": i}`` picks logged session ``i`` of the split."""
        super().reset(seed=seed)
        episode = None if not options or "episode" not in options else np.array([int(options["episode"])])
        self.core.reset_rows(np.array([0]), self.np_random, episode)
        self._last_events = None
        ep = int(self.core.episode_index[0])
        return self._obs(), {"session_id": str(self.core.episodes.session_ids[ep]), "episode": ep}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        events, left, truncated = self.core.step_slate(np.asarray(action).reshape(1, -1), self.np_random)
        reward = float(self.reward_fn(events)[0])
        self.core.stats[0, 3] += reward
        info: dict[str, Any] = {"events": events.row(0), "slot_clicks": events.clicked[0].astype(np.int8)}
        self._last_events = info["events"]
        if left[0] or truncated[0]:
            info["shopper"] = self.core.episode_summary(0)
        return self._obs(), reward, bool(left[0]), bool(truncated[0]), info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last_events is None:
            return "new shopper"
        e = self._last_events
        ids = self.sim.catalog.item_ids
        parts = [
            f"{p}:{ids[i]}{'*' if c else ''}{'$' if u else ''}"
            for p, i, c, u in zip(e["positions"], e["items"], e["clicked"], e["purchased"], strict=True)
        ]
        return f"step {e['step']}: " + " ".join(parts) + (" | left" if e["left"] else "")
