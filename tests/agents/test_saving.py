"""Agent files: save/load equality, and no code runs from a crafted model zip."""

from __future__ import annotations

import base64
import contextlib
import json
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from shopsim.agents.ppo import SlatePointerPolicy
from shopsim.agents.saving import META_ENTRY, load_agent, save_agent, space_from_json, space_to_json
from shopsim.agents.slateq import SlateQ, SlateQPolicy
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError


class _Payload:
    """Unpickling this creates ``marker``: what an attacker's model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "pwned"))  # type: ignore[return-value]


def _model(name: str, toy_sim: Path) -> tuple[BaseAlgorithm, ShopperVecEnv]:
    env = ShopperVecEnv(toy_sim, 4, slate_size=3, n_candidates=20, seed=0)
    if name == "ppo":
        model: BaseAlgorithm = PPO(SlatePointerPolicy, env, n_steps=32, batch_size=64, seed=0, verbose=0)  # type: ignore[arg-type]
    else:
        model = SlateQ(SlateQPolicy, env, seed=0, learning_starts=10)  # type: ignore[arg-type]
    model.learn(128)
    return model, env


def _rewrite_data(src: Path, dest: Path, edit: dict[str, object]) -> None:
    """Copy the zip ``src`` to ``dest`` with entries of its ``data`` JSON replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.namelist():
            blob = zin.read(item)
            if item == "data":
                data = json.loads(blob)
                data.update(edit)
                blob = json.dumps(data).encode()
            zout.writestr(item, blob)


def _serialized(obj: object) -> dict[str, str]:
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(cloudpickle.dumps(obj)).decode()}


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_save_load_predicts_the_same_and_trains_on(name: str, toy_sim: Path, tmp_path: Path) -> None:
    model, env = _model(name, toy_sim)
    path = save_agent(model, tmp_path / f"{name}.zip")
    loaded = load_agent(path)
    assert type(loaded) is type(model)
    assert type(loaded.policy) is type(model.policy)
    obs = env.reset()
    for _ in range(15):
        a, _ = model.predict(obs, deterministic=True)  # type: ignore[arg-type]
        b, _ = loaded.predict(obs, deterministic=True)  # type: ignore[arg-type]
        np.testing.assert_array_equal(a, b)
        obs, *_ = env.step(a)
    loaded.set_env(env)
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps >= model.num_timesteps + 64
    assert not list(tmp_path.glob(".*.tmp-*")), "the temporary zip of the atomic save is left behind"


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_a_crafted_model_zip_runs_no_code(name: str, toy_sim: Path, tmp_path: Path) -> None:
    model, _ = _model(name, toy_sim)
    good = save_agent(model, tmp_path / "good.zip")
    marker = tmp_path / "marker"
    # 1. the payload in a known serialized entry: shopsim supplies its own object instead
    crafted = tmp_path / "crafted.zip"
    _rewrite_data(good, crafted, {"policy_class": _serialized(_Payload(marker))})
    assert type(load_agent(crafted)) is type(model)
    assert not marker.exists()
    # the test payload is live: SB3's own loader (which unpickles) does run it (and then fails,
    # as the payload's result is no policy class)
    with contextlib.suppress(Exception):
        type(model).load(crafted, device="cpu")
    assert marker.exists()
    marker.unlink()
    # 2. the payload in an entry shopsim does not know: refused before SB3 sees the file
    extra = tmp_path / "extra.zip"
    _rewrite_data(good, extra, {"hook": _serialized(_Payload(marker))})
    with pytest.raises(
        ShopsimError, match=r"extra\.zip: holds pickled entries shopsim does not load \(hook\)"
    ):
        load_agent(extra)
    assert not marker.exists()


def test_bad_model_files_are_one_line_errors(toy_sim: Path, tmp_path: Path) -> None:
    model, _ = _model("ppo", toy_sim)
    plain = tmp_path / "plain.zip"
    model.save(plain)  # SB3's own save: no shopsim.json
    good = save_agent(model, tmp_path / "good.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    flipped = tmp_path / "flipped.zip"
    blob = bytearray(good.read_bytes())
    blob[len(blob) // 3] ^= 0xFF  # one damaged byte inside an entry
    flipped.write_bytes(bytes(blob))
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"\x00garbage" * 100)
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    bad_meta = tmp_path / "bad_meta.zip"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad_meta, "w") as zout:
        for item in zin.namelist():
            zout.writestr(
                item, b'{"format": 1, "algorithm": "ppo"}' if item == META_ENTRY else zin.read(item)
            )
    cases = {
        plain: "not a shopsim model (no shopsim.json",
        truncated: "not a shopsim model (no shopsim.json entry: a truncated file",
        flipped: "is damaged",
        garbage: "not a readable model zip",
        empty: "not a readable model zip",
        bad_meta: "shopsim.json is damaged",
        tmp_path / "missing.zip": "no such model file",
    }
    for path, phrase in cases.items():
        with pytest.raises(ShopsimError) as err:
            load_agent(path)
        msg = str(err.value)
        assert phrase in msg, msg
        assert str(path) in msg
        assert "\n" not in msg


def test_space_json_round_trip(toy_sim: Path) -> None:
    env = ShopperVecEnv(toy_sim, 2, slate_size=3, n_candidates=20, seed=0)
    for space in (env.observation_space, env.action_space):
        back = space_from_json(json.loads(json.dumps(space_to_json(space))))
        assert back == space
