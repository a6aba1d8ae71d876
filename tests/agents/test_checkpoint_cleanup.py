"""A finished training leaves no checkpoint behind: not the folder, not its lock file, not an
empty ``checkpoints/``; what belongs to another agent or a live writer stays."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from shopsim.agents.checkpoints import remove_checkpoint, training_key
from shopsim.agents.training import PPOConfig, SlateQConfig, train_agent
from shopsim.envs.vec_env import ShopperVecEnv


def _fake_checkpoint(ckpts: Path, name: str) -> None:
    (ckpts / name).mkdir(parents=True)
    (ckpts / name / "state.json").write_text("{}")
    (ckpts / f".{name}.lock").write_text("")
    (ckpts / f".{name}.tmp-999999-abcd1234").mkdir()  # a writer killed mid-checkpoint


def test_remove_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    _fake_checkpoint(ckpts, "ppo")
    remove_checkpoint(ckpts / "ppo")
    assert not ckpts.exists()
    remove_checkpoint(ckpts / "ppo")  # nothing there: nothing created
    assert not ckpts.exists()


def test_remove_checkpoint_keeps_the_other_agents(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    _fake_checkpoint(ckpts, "ppo")
    _fake_checkpoint(ckpts, "dqn")
    remove_checkpoint(ckpts / "ppo")
    assert sorted(p.name for p in ckpts.iterdir()) == [".dqn.lock", ".dqn.tmp-999999-abcd1234", "dqn"]


def test_remove_checkpoint_leaves_a_live_writers_checkpoint(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    _fake_checkpoint(ckpts, "ppo")
    fd = os.open(ckpts / ".ppo.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another writer holds the lock
        remove_checkpoint(ckpts / "ppo")
        assert (ckpts / "ppo" / "state.json").is_file()
        assert (ckpts / ".ppo.lock").is_file()
    finally:
        os.close(fd)


def test_finished_training_leaves_no_checkpoint_files(toy_sim: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = ShopperVecEnv(toy_sim, 4, slate_size=3, n_candidates=10, seed=0)
    ppo = PPOConfig(steps=256, n_steps=16, batch_size=32, n_epochs=1, checkpoint_every=64)
    lines: list[str] = []
    train_agent(
        "ppo", env, ppo, SlateQConfig(), out, seed=0, key=training_key({"t": "cleanup"}), echo=lines.append
    )
    assert any("checkpoint(s)" in ln for ln in lines), lines  # checkpoints were written
    assert (out / "models" / "ppo.zip").is_file()
    assert not (out / "checkpoints").exists()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.lock")) == []
