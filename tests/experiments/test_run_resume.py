"""A ``shopsim run`` SIGKILLed during training and then during evaluation, restarted with the
same command each time, finishes with the uninterrupted run's results.json (byte for byte, up
to the run folder's own path), reusing what was finished and resuming training mid-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopsim.tests.helpers import tiny_toy_config

RUN: dict[str, Any] = tiny_toy_config(
    agents={
        "policies": ["random", "popularity", "ppo", "dqn"],
        "n_envs": 4,
        # PPO without checkpoints, so the one checkpoint boundary hit is SlateQ's (PPO is then
        # finished and must be reused, SlateQ resumed)
        "ppo": {"steps": 512, "n_steps": 32, "batch_size": 64, "n_epochs": 2, "checkpoint_every": 0},
        "dqn": {
            "steps": 768,
            "buffer_size": 400,
            "learning_starts": 128,
            "batch_size": 32,
            "checkpoint_every": 256,
        },
    },
    evaluation={"episodes": 60, "n_boot": 50, "offline": False},
)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for hook in ("SHOPSIM_KILL_AT", "SHOPSIM_PAUSE_AT"):
        env.pop(hook, None)
    return env | extra


def _cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "shopsim.experiments.cli", "run", str(config), "--out", str(out)]


def run(config: Path, out: Path) -> str:
    res = subprocess.run(
        _cmd(config, out), env=_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def kill_at(config: Path, out: Path, at: str, tmp: Path) -> str:
    """Start the run, wait until it is paused at boundary ``at``, SIGKILL it there; returns
    what it printed until then."""
    release = tmp / f"release-{at.replace(':', '-')}"
    log = tmp / f"log-{at.replace(':', '-')}.txt"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            _cmd(config, out),
            env=_env(SHOPSIM_PAUSE_AT=f"{at}:{release}", PYTHONUNBUFFERED="1"),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 900
            while not Path(f"{release}.reached").exists():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return log.read_text()


def results_bytes(out: Path) -> bytes:
    """results.json with the run folder's own path replaced (it names its files)."""
    return (out / "results.json").read_bytes().replace(str(out).encode(), b"RUN")


@pytest.mark.slow
def test_run_killed_in_training_and_in_evaluation_resumes(tmp_path: Path) -> None:
    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(RUN))
    t0 = time.monotonic()
    run(config, tmp_path / "ref")
    t_ref = time.monotonic() - t0
    out = tmp_path / "out"

    kill_at(config, out, "train:checkpoint-written", tmp_path)  # SlateQ's first checkpoint
    assert (out / "models" / "ppo.zip").is_file()
    assert not (out / "models" / "dqn.zip").exists()
    ckpt = out / "checkpoints" / "dqn"
    assert (ckpt / "manifest.json").is_file()

    text = kill_at(config, out, "evaluate:policy-done", tmp_path)  # after the first policy's results
    assert "ppo: reused" in text  # finished before the first kill: not trained again
    assert "dqn: resuming training from the checkpoint at step 256 of 768" in text
    log = (out / "models" / "dqn.train.json").read_text()
    assert '"resumed_from": 256' in log  # training continued from the checkpoint, not from zero
    assert not ckpt.exists()
    cached = sorted(p.name for p in (out / "evaluation" / "test").iterdir() if p.suffix == ".npz")
    assert len(cached) == 1

    t0 = time.monotonic()
    text = run(config, out)
    t_last = time.monotonic() - t0
    assert "prepare: reused" in text
    assert "ppo: reused" in text
    assert "dqn: reused" in text
    assert f"reused the results of {cached[0].removesuffix('.npz')}" in text
    assert "resuming training" not in text  # the finished trainings are not touched again
    assert results_bytes(out) == results_bytes(tmp_path / "ref")
    print(f"reference run {t_ref:.0f} s, last restart {t_last:.0f} s")
