"""Training checkpoints that resume SB3 training exactly, and the learning curve they carry.

A checkpoint is taken at a **rollout boundary**: the callback's ``on_rollout_start``, which SB3
calls inside ``collect_rollouts`` after the previous iteration's ``train()`` (PPO: also after
``rollout_buffer.reset()``; SlateQ: before the next action is sampled). There every piece of
state the rest of training reads is settled, and SB3 has not yet drawn a random number for the
next rollout. It holds:

* ``torch.pt`` — the policy's ``state_dict`` (SlateQ: with its target network), the optimizer's
  ``state_dict`` and the torch CPU RNG state (read back with ``torch.load(weights_only=True)``:
  tensors and plain containers only, no code);
* ``arrays.npz`` (``allow_pickle=False``) — ``_last_obs``, ``_last_episode_starts``,
  ``_last_original_obs`` (SlateQ), the filled part of SlateQ's replay buffer (its next
  observations as the exceptions to "the following row's observation"), the numpy global
  RNG keys (SB3's minibatch permutations and replay sampling draw from it) and every
  per-shopper array of the :class:`~shopsim.envs.vec_env.ShopperVecEnv`;
* ``state.json`` — the counters (``num_timesteps``, ``_n_updates``, ``_episode_num``,
  ``_current_progress_remaining``; SlateQ: ``_n_calls``, ``exploration_rate``, the replay
  buffer's ``pos``/``full``, its exploration Generator), the episode-info buffers, the rest of
  the numpy and Python ``random`` states, the env's Generator, the learning curve so far and
  the training key.

The folder (``out/checkpoints/NAME``) is written with :func:`shopsim.artifacts.write_artifact`:
a temporary folder, a ``manifest.json`` of sha256 sums written last, an atomic swap — so a kill
(or Ctrl-C) at any point leaves the previous complete checkpoint or the new one, and a damaged
file is caught by :func:`~shopsim.artifacts.verify_artifact` before anything is restored.

Resuming: build the model as for a fresh run, :func:`restore` the checkpoint into it and its
env, then ``learn(total - num_timesteps, reset_num_timesteps=False)``. SB3 then sets
``_total_timesteps = total`` (it adds ``num_timesteps``), keeps ``_last_obs`` (no env reset)
and the info buffers, and the learning-rate, clip-range and ε schedules read
``1 - num_timesteps / total`` as in an uninterrupted run; the TensorBoard logger continues the
latest ``tensorboard/NAME_i`` folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from shopsim import __version__
from shopsim.agents.slateq import SlateQ, SlateReplayBuffer
from shopsim.artifacts import boundary, locked, tidy, verify_artifact, write_artifact
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError

KIND = "checkpoint"
"""Artifact kind of a checkpoint folder."""
FORMAT = 2
"""Version of the checkpoint contents (bumped when they change; part of the key)."""
SLATEQ_CURVE_WINDOW = 2048
"""Environment steps per learning-curve point of SlateQ (PPO: one point per rollout)."""

Echo = Callable[[str], None]


def training_key(parts: dict[str, Any]) -> str:
    """The key a checkpoint or a finished model is valid for: sha256 of ``parts`` (JSON-ready:
    the agent's config, n_envs, seed, shop, reward, simulator inputs) and this shopsim version."""
    blob = json.dumps({"parts": parts, "version": __version__, "format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- learning curve
@dataclass
class Curve:
    """Mean return of the episodes that ended in each window of ``window`` env steps."""

    window: int
    steps: list[int] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)
    return_mean: list[float | None] = field(default_factory=list)
    pending_sum: float = 0.0
    pending_n: int = 0
    next_at: int = 0

    def __post_init__(self) -> None:
        if self.next_at == 0:
            self.next_at = self.window

    def add(self, returns: list[float]) -> None:
        """Episodes that ended in this step (in env order: the sum is deterministic)."""
        for r in returns:
            self.pending_sum += r
            self.pending_n += 1

    def close_window(self, num_timesteps: int) -> None:
        """A point at ``num_timesteps`` for the episodes since the last one."""
        self.steps.append(int(num_timesteps))
        self.episodes.append(self.pending_n)
        self.return_mean.append(self.pending_sum / self.pending_n if self.pending_n else None)
        self.pending_sum, self.pending_n = 0.0, 0

    def to_json(self) -> dict[str, Any]:
        """Everything, for a checkpoint."""
        return {
            "window": self.window,
            "steps": self.steps,
            "episodes": self.episodes,
            "return_mean": self.return_mean,
            "pending_sum": self.pending_sum,
            "pending_n": self.pending_n,
            "next_at": self.next_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Curve:
        """The inverse of :meth:`to_json`."""
        return cls(
            window=int(d["window"]),
            steps=[int(s) for s in d["steps"]],
            episodes=[int(e) for e in d["episodes"]],
            return_mean=[None if r is None else float(r) for r in d["return_mean"]],
            pending_sum=float(d["pending_sum"]),
            pending_n=int(d["pending_n"]),
            next_at=int(d["next_at"]),
        )

    def report(self, agent: str) -> dict[str, Any]:
        """The ``models/NAME.curve.json`` content."""
        return {
            "agent": agent,
            "steps": self.steps,
            "episodes": self.episodes,
            "return_mean": self.return_mean,
        }


def curve_window(model: PPO | SlateQ) -> int:
    """One point per PPO rollout; SlateQ every ~:data:`SLATEQ_CURVE_WINDOW` steps (a multiple of n_envs)."""
    n_envs = model.n_envs
    if isinstance(model, PPO):
        return int(model.n_steps) * n_envs
    return max(n_envs, (SLATEQ_CURVE_WINDOW // n_envs) * n_envs)


# --------------------------------------------------------------------------- capture / restore
def _obs_arrays(prefix: str, obs: Any) -> dict[str, np.ndarray]:
    if obs is None:
        return {}
    if isinstance(obs, dict):
        return {f"{prefix}/{k}": np.asarray(v) for k, v in obs.items()}
    return {prefix: np.asarray(obs)}


def _obs_from(prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    if prefix in arrays:
        return arrays[prefix]
    found = {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(f"{prefix}/")}
    return found or None


def _replay_fields(buf: SlateReplayBuffer) -> dict[str, np.ndarray]:
    """The replay buffer's arrays stored as they are (next observations: see :func:`_next_obs_delta`)."""
    fields: dict[str, np.ndarray] = {}
    for k, v in buf.observations.items():
        fields[f"rb_obs/{k}"] = v
    for name in ("actions", "rewards", "dones", "timeouts", "clicks"):
        fields[f"rb/{name}"] = getattr(buf, name)
    return fields


_CHUNK = 256
"""Replay rows compared at a time when a checkpoint stores the next observations."""


def _rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, n_envs) bytewise equality of two (n, n_envs, ...) arrays (NaN and -0.0 exact)."""
    m, e = a.shape[:2]
    return (a.reshape(m, e, -1).view(np.uint8) == b.reshape(m, e, -1).view(np.uint8)).all(-1)


def _next_obs_delta(buf: SlateReplayBuffer, n: int) -> dict[str, np.ndarray]:
    """The next observations of the first ``n`` rows, stored as the exceptions to "the next
    observation is the following row's observation" (only episode ends and the newest row
    differ): about halves a full buffer's checkpoint, and restores it exactly."""
    out: dict[str, np.ndarray] = {}
    for k, nxt in buf.next_observations.items():
        obs = buf.observations[k]
        same = np.zeros((n, buf.n_envs), bool)
        for a in range(0, n - 1, _CHUNK):  # in chunks: no full-size temporaries
            b = min(a + _CHUNK, n - 1)
            same[a:b] = _rows_equal(nxt[a:b], obs[a + 1 : b + 1])
        if buf.full:  # the newest row's successor is the oldest (else: always an exception)
            same[n - 1] = _rows_equal(nxt[n - 1 : n], obs[0:1])[0]
        idx = np.flatnonzero(~same.reshape(-1))
        out[f"rb_next_idx/{k}"] = idx
        out[f"rb_next_val/{k}"] = nxt[:n].reshape(n * buf.n_envs, *nxt.shape[2:])[idx]
    return out


def _restore_next_obs(buf: SlateReplayBuffer, n: int, a: dict[str, np.ndarray]) -> None:
    for k, nxt in buf.next_observations.items():
        idx, val = a[f"rb_next_idx/{k}"], a[f"rb_next_val/{k}"]
        if val.shape[1:] != nxt.shape[2:] or val.dtype != nxt.dtype or len(idx) != len(val):
            raise ValueError(f"replay buffer next observation {k} differs in shape or dtype")
        obs = buf.observations[k]
        nxt[: n - 1] = obs[1:n]  # the following row's observation, then the exceptions
        nxt[n - 1] = obs[0] if buf.full else obs[n - 1]
        nxt[idx // buf.n_envs, idx % buf.n_envs] = val


def capture(
    model: PPO | SlateQ, env: ShopperVecEnv, curve: Curve, key: str
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """(state.json content, arrays.npz arrays, torch.pt content) of ``model`` and ``env`` now."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))  # noqa: NPY002 - SB3 draws from it
    py_state = random.getstate()
    env_state = env.get_state()
    state: dict[str, Any] = {
        "key": key,
        "format": FORMAT,
        "algorithm": "ppo" if isinstance(model, PPO) else "dqn",
        "num_timesteps": int(model.num_timesteps),
        "_n_updates": int(model._n_updates),
        "_episode_num": int(model._episode_num),
        "_current_progress_remaining": float(model._current_progress_remaining),
        "ep_info_buffer": list(model.ep_info_buffer or []),
        "ep_success_buffer": [bool(x) for x in (model.ep_success_buffer or [])],
        "numpy_random": {
            "name": np_state[0],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python_random": [py_state[0], list(py_state[1]), py_state[2]],
        "env_rng": env_state["rng"],
        "curve": curve.to_json(),
    }
    arrays: dict[str, np.ndarray] = {"numpy_random_keys": np.asarray(np_state[1])}
    arrays |= _obs_arrays("last_obs", model._last_obs)
    if model._last_episode_starts is not None:
        arrays["last_episode_starts"] = np.asarray(model._last_episode_starts)
    arrays |= {f"env/{k}": v for k, v in env_state["arrays"].items()}
    if isinstance(model, SlateQ):
        buf = model.replay_buffer
        assert isinstance(buf, SlateReplayBuffer)
        n = buf.buffer_size if buf.full else buf.pos
        arrays |= {k: np.ascontiguousarray(v[:n]) for k, v in _replay_fields(buf).items()}
        if n:
            arrays |= _next_obs_delta(buf, n)
        arrays |= _obs_arrays("last_original_obs", model._last_original_obs)
        state |= {
            "replay": {"pos": int(buf.pos), "full": bool(buf.full), "buffer_size": int(buf.buffer_size)},
            "_n_calls": int(model._n_calls),
            "exploration_rate": float(model.exploration_rate),
            "explore_rng": _plain(model._explore_rng.bit_generator.state),
        }
    tensors = {
        "policy": model.policy.state_dict(),
        "optimizer": model.policy.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    return state, arrays, tensors


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_checkpoint(folder: Path, model: PPO | SlateQ, env: ShopperVecEnv, curve: Curve, key: str) -> float:
    """Write the checkpoint of ``model`` now to ``folder`` (replacing the previous one
    atomically); returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    state, arrays, tensors = capture(model, env, curve, key)
    inputs = {"key": key, "num_timesteps": state["num_timesteps"], "algorithm": state["algorithm"]}
    with write_artifact(folder, KIND, stage="checkpoint", inputs=inputs) as tmp:
        torch.save(tensors, tmp / "torch.pt")
        with open(tmp / "arrays.npz", "wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
        (tmp / "state.json").write_text(json.dumps(state))
    return time.perf_counter() - t0


@dataclass
class Checkpoint:
    """A verified checkpoint read back (see :func:`read_checkpoint`)."""

    state: dict[str, Any]
    arrays: dict[str, np.ndarray]
    tensors: dict[str, Any]

    @property
    def num_timesteps(self) -> int:
        """Environment steps trained when it was taken."""
        return int(self.state["num_timesteps"])


def read_checkpoint(folder: Path, key: str, echo: Echo) -> Checkpoint | None:
    """The checkpoint in ``folder`` if it is intact and was written by the same training
    (``key``); otherwise None, with a note saying why training starts from zero."""
    if not (folder / "manifest.json").exists() and not folder.exists():
        return None
    try:
        manifest = verify_artifact(folder, KIND, "it is rewritten by the next checkpoint")
    except ShopsimError as exc:
        echo(f"note: checkpoint not used, training from step 0 ({exc})")
        return None
    got = (manifest.get("inputs") or {}).get("key")
    if got != key:
        echo(
            f"note: {folder} is a checkpoint of another training (other config, seed, shop, "
            "reward or simulator); training from step 0"
        )
        return None
    try:
        state = json.loads((folder / "state.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        tensors = torch.load(folder / "torch.pt", weights_only=True, map_location="cpu")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # verified, so a format change
        echo(f"note: checkpoint {folder} cannot be read ({type(exc).__name__}: {exc}); training from step 0")
        return None
    if state.get("key") != key or state.get("format") != FORMAT:
        echo(f"note: {folder} is a checkpoint of another training or format; training from step 0")
        return None
    return Checkpoint(state, arrays, tensors)


def restore(model: PPO | SlateQ, env: ShopperVecEnv, ck: Checkpoint) -> Curve:
    """Put checkpoint ``ck`` into a freshly built ``model`` and its ``env`` (and the global RNGs);
    returns the learning curve so far. Call ``learn(total - ck.num_timesteps,
    reset_num_timesteps=False)`` next."""
    s, a, t = ck.state, ck.arrays, ck.tensors
    want = "ppo" if isinstance(model, PPO) else "dqn"
    if s["algorithm"] != want:
        raise ValueError(f"checkpoint of {s['algorithm']}, not {want}")
    model.policy.load_state_dict(t["policy"])
    model.policy.optimizer.load_state_dict(t["optimizer"])
    model.num_timesteps = int(s["num_timesteps"])
    model._n_updates = int(s["_n_updates"])
    model._episode_num = int(s["_episode_num"])
    model._current_progress_remaining = float(s["_current_progress_remaining"])
    window = model._stats_window_size
    model.ep_info_buffer = deque(s["ep_info_buffer"], maxlen=window)
    model.ep_success_buffer = deque(s["ep_success_buffer"], maxlen=window)
    model._last_obs = _obs_from("last_obs", a)
    model._last_episode_starts = a.get("last_episode_starts")
    env.set_state({"rng": s["env_rng"], "arrays": {k[4:]: v for k, v in a.items() if k.startswith("env/")}})
    if isinstance(model, SlateQ):
        buf = model.replay_buffer
        assert isinstance(buf, SlateReplayBuffer)
        rep = s["replay"]
        if int(rep["buffer_size"]) != buf.buffer_size:
            raise ValueError("replay buffer size differs")
        for name, arr in _replay_fields(buf).items():
            part = a[name]
            if part.shape[1:] != arr.shape[1:] or part.dtype != arr.dtype or len(part) > len(arr):
                raise ValueError(f"replay buffer field {name} differs in shape or dtype")
            arr[: len(part)] = part
        buf.pos, buf.full = int(rep["pos"]), bool(rep["full"])
        n = buf.buffer_size if buf.full else buf.pos
        if n:
            _restore_next_obs(buf, n, a)
        model._last_original_obs = _obs_from("last_original_obs", a)
        model._n_calls = int(s["_n_calls"])
        model.exploration_rate = float(s["exploration_rate"])
        model._explore_rng.bit_generator.state = s["explore_rng"]
    torch.set_rng_state(t["torch_rng"])
    npr = s["numpy_random"]
    np.random.set_state(  # noqa: NPY002 - SB3 draws from the global numpy RNG
        (npr["name"], a["numpy_random_keys"], npr["pos"], npr["has_gauss"], npr["cached_gaussian"])
    )
    py = s["python_random"]
    random.setstate((int(py[0]), tuple(int(x) for x in py[1]), py[2]))
    return Curve.from_json(s["curve"])


# --------------------------------------------------------------------------- the callback
class CheckpointCallback(BaseCallback):
    """Feeds the learning curve every step and writes a checkpoint at the first rollout boundary
    after every ``every`` env steps (0: never); ``key=None`` disables checkpoints."""

    def __init__(
        self, folder: Path, env: ShopperVecEnv, curve: Curve, every: int, key: str | None, *, start: int = 0
    ) -> None:
        super().__init__()
        self.folder, self.env, self.curve, self.every, self.key = folder, env, curve, every, key
        self.last = start
        self.write_seconds: list[float] = []
        self.sizes: list[int] = []

    def _on_step(self) -> bool:
        dones, infos = self.locals["dones"], self.locals["infos"]
        rets = [float(infos[i]["shopper"]["return"]) for i in np.flatnonzero(dones).tolist()]
        self.curve.add(rets)
        while self.num_timesteps >= self.curve.next_at:
            self.curve.close_window(self.num_timesteps)
            self.curve.next_at += self.curve.window
        return True

    def _on_rollout_start(self) -> None:
        n = self.num_timesteps
        if not self.every or self.key is None or n == 0 or n // self.every <= self.last // self.every:
            return
        model = self.model
        assert isinstance(model, PPO | SlateQ)
        secs = write_checkpoint(self.folder, model, self.env, self.curve, self.key)
        self.write_seconds.append(secs)
        self.sizes.append(sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file()))
        self.last = n
        boundary("train:checkpoint-written")

    def _on_training_end(self) -> None:
        last = self.curve.steps[-1] if self.curve.steps else 0
        if self.num_timesteps > last:  # the last, partial window
            self.curve.close_window(self.num_timesteps)


def remove_checkpoint(folder: Path) -> None:
    """Drop a checkpoint once its training's final model is saved (it is no longer needed),
    with what its writes left beside it (a dead writer's temporary folder, the lock file) and
    the ``checkpoints/`` folder itself once nothing else is in it."""
    parent = folder.parent
    if not parent.is_dir():  # nothing was ever checkpointed (and locked() would create it)
        return
    try:
        with locked(folder) as lock_path:
            tidy(folder)  # .NAME.tmp-*/.NAME.old-* of a writer killed mid-checkpoint
            shutil.rmtree(folder, ignore_errors=True)
            # shopsim.artifacts keeps lock files (deleting one can let two later writers lock
            # different inodes). Here the final model is saved, so no writer of this
            # checkpoint should remain (it would be a second training of this NAME into this
            # out, which `shopsim run` excludes with the run folder's lock), and the file is
            # unlinked while held: a writer arriving meanwhile fails at once, not silently.
            lock_path.unlink(missing_ok=True)
    except ShopsimError:  # another process is writing this checkpoint now: it is its to keep
        return
    with contextlib.suppress(OSError):  # only when empty: the other agent's checkpoint may be there
        parent.rmdir()
