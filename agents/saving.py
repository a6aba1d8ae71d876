"""Saving and loading trained agents without running code from the file.

Stable-Baselines3 stores a model as a zip: the network weights (``*.pth``, which SB3 reads with
``torch.load(weights_only=True)``) and a ``data`` JSON whose non-JSON entries (the policy class,
the spaces, schedules, training buffers) are cloudpickled. Unpickling a model someone sent you
runs whatever code they put there, so shopsim never unpickles: :func:`save_agent` adds a
``shopsim.json`` entry to the zip describing the few non-JSON entries in plain JSON (the spaces,
``clip_range``, ``train_freq``), and :func:`load_agent` hands SB3 a replacement for *every*
serialized entry through ``custom_objects`` (SB3 then skips cloudpickle for it). A zip with a
serialized entry shopsim does not know, or without ``shopsim.json``, is refused.

What a load resets: the training-time state SB3 pickles (last observation, episode-info
buffers) — SB3 recreates it when training continues; predictions are unchanged (tested).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import FloatSchedule

from shopsim.agents.ppo import SlatePointerPolicy
from shopsim.agents.slateq import SlateQ, SlateQPolicy, SlateReplayBuffer
from shopsim.errors import ShopsimError

META_ENTRY = "shopsim.json"
"""The zip entry :func:`save_agent` adds (plain JSON)."""
META_VERSION = 1

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": SlateQ}
"""Agent name (as in the policy registry) → SB3 algorithm class."""

# Serialized entries that are training-time state: recreated by SB3 when training continues.
_RESET_ON_LOAD = (
    "_last_obs",
    "_last_episode_starts",
    "_last_original_obs",
    "ep_info_buffer",
    "ep_success_buffer",
)


def save_agent(model: BaseAlgorithm, path: Path | str) -> Path:
    """Save ``model`` (PPO with the slate pointer policy, or SlateQ) as ``path`` (a ``.zip``).

    The zip is written next to its target and renamed into place, so a killed save leaves
    either the old file or the new one.
    """
    path = Path(path)
    name = next((n for n, cls in ALGORITHMS.items() if type(model) is cls), None)
    if name is None:
        raise TypeError(f"save_agent: {type(model).__name__} is not one of {sorted(ALGORITHMS)}")
    meta: dict[str, Any] = {
        "format": META_VERSION,
        "algorithm": name,
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
    }
    if isinstance(model, PPO):
        # after _setup_model SB3 holds these as schedules; the configured values are constants
        meta["clip_range"] = _constant(model.clip_range)
        if model.clip_range_vf is not None:
            meta["clip_range_vf"] = _constant(model.clip_range_vf)
    if isinstance(model, SlateQ):
        freq = model.train_freq
        if not isinstance(freq, TrainFreq):
            raise TypeError("save_agent: train_freq is not set up (save after constructing the model)")
        meta["train_freq"] = [int(freq.frequency), freq.unit.value]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(META_ENTRY, json.dumps(meta, indent=2))
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_agent(path: Path | str, *, device: str = "cpu") -> BaseAlgorithm:
    """Load a model :func:`save_agent` wrote, without unpickling anything from the file.

    :raises ShopsimError: (one line) if the file is missing, not a zip, truncated, not written by
        :func:`save_agent`, or holds a serialized entry shopsim does not know.
    """
    path = Path(path)
    fix = "re-train it with `shopsim run` (models are written to RUN/models/)"
    if not path.is_file():
        raise ShopsimError(f"{path}: no such model file; {fix}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if META_ENTRY not in names or "data" not in names:
                raise ShopsimError(
                    f"{path}: not a shopsim model (no {META_ENTRY} entry: a truncated file, or saved by SB3 "
                    f"directly or by an older shopsim; shopsim does not unpickle model files); {fix}"
                )
            bad = z.testzip()  # CRC of every entry: a damaged file fails here, not inside torch
            if bad is not None:
                raise ShopsimError(f"{path}: entry {bad!r} is damaged (CRC mismatch); {fix}")
            meta = json.loads(z.read(META_ENTRY))
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise ShopsimError(f"{path}: not a readable model zip ({exc}); {fix}") from None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != META_VERSION
        or meta.get("algorithm") not in ALGORITHMS
    ):
        raise ShopsimError(
            f"{path}: {META_ENTRY} is not shopsim model metadata version {META_VERSION}; {fix}"
        )
    name = str(meta["algorithm"])
    try:
        custom = _replacements(name, meta, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ShopsimError(f"{path}: {META_ENTRY} is damaged ({exc}); {fix}") from None
    unknown = sorted(
        k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v and k not in custom
    )
    if unknown:
        raise ShopsimError(
            f"{path}: holds pickled entries shopsim does not load ({', '.join(unknown)}); "
            f"shopsim never unpickles model files; {fix}"
        )
    try:
        return ALGORITHMS[name].load(path, device=device, custom_objects=custom)
    except (RuntimeError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShopsimError(f"{path}: the model cannot be restored ({first}); {fix}") from None


def _constant(schedule: Any) -> float:
    """The value of a constant SB3 schedule (or a plain number)."""
    return float(schedule(1.0) if callable(schedule) else schedule)


def _replacements(name: str, meta: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A plain replacement for every serialized entry of a shopsim PPO/SlateQ zip."""
    custom: dict[str, Any] = dict.fromkeys(_RESET_ON_LOAD)
    custom["observation_space"] = space_from_json(meta["observation_space"])
    custom["action_space"] = space_from_json(meta["action_space"])
    lr = data.get("learning_rate")
    if not isinstance(lr, int | float):
        raise ValueError("learning_rate is not a number")
    custom["lr_schedule"] = FloatSchedule(float(lr))
    if name == "ppo":
        custom["policy_class"] = SlatePointerPolicy
        custom["rollout_buffer_class"] = None  # SB3 picks the Dict buffer for Dict observations
        custom["clip_range"] = float(meta["clip_range"])  # PPO._setup_model wraps it in a schedule
        if "clip_range_vf" in meta:
            custom["clip_range_vf"] = float(meta["clip_range_vf"])
    else:
        custom["policy_class"] = SlateQPolicy
        custom["replay_buffer_class"] = SlateReplayBuffer
        custom["exploration_schedule"] = None  # rebuilt by SlateQ._setup_model from the plain fields
        freq, unit = meta["train_freq"]
        custom["train_freq"] = TrainFreq(int(freq), TrainFrequencyUnit(unit))
    return custom


def space_to_json(space: spaces.Space[Any]) -> dict[str, Any]:
    """A plain-JSON description of the Gymnasium spaces shopsim's environments use."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": space.n if isinstance(space.n, int) else list(space.n)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise TypeError(f"space_to_json: unsupported space {type(space).__name__}")


def space_from_json(desc: dict[str, Any]) -> spaces.Space[Any]:
    """The inverse of :func:`space_to_json` (raises ValueError/KeyError/TypeError on bad input)."""
    kind = desc["type"]
    if kind == "Dict":
        return spaces.Dict({str(k): space_from_json(v) for k, v in desc["spaces"].items()})
    if kind == "Box":
        dtype = np.dtype(desc["dtype"])
        if dtype.kind not in "fiu":
            raise ValueError(f"Box dtype {dtype} is not numeric")
        shape = tuple(int(s) for s in desc["shape"])
        low = np.asarray(desc["low"], dtype=dtype).reshape(shape)
        high = np.asarray(desc["high"], dtype=dtype).reshape(shape)
        return spaces.Box(low, high, shape=shape, dtype=dtype)
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(desc["nvec"], dtype=np.int64))
    if kind == "MultiBinary":
        return spaces.MultiBinary(desc["n"])
    if kind == "Discrete":
        return spaces.Discrete(int(desc["n"]), start=int(desc.get("start", 0)))
    raise ValueError(f"unknown space type {kind!r}")
