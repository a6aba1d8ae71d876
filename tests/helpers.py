"""Helpers shared by the tests: paths to the fixtures and to the real data sets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# resolve(): the strict editable install links this file from a build folder.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("SHOPSIM_SHARED_DATA", "data-sets-not-configured"))
"""Where the full public data sets live (REES46 head, UCI, H&M, MIND, OBD); only the opt-in
``real_data`` tests read them."""


def tiny_toy_config(**sections: Any) -> dict[str, Any]:
    """A ``shopsim run`` config on the bundled toy shop with the smallest budgets every stage
    still runs with (1 encoder epoch, no simulator baselines or calibration, 3-item slates of
    10 candidates); ``sections`` (e.g. ``agents=…``, ``evaluation=…``) are added or replace
    whole sections."""
    config: dict[str, Any] = {
        "seed": 0,
        "data": {"source": "sample:toy", "format": "events", "split": [0.6, 0.2, 0.2]},
        "encoder": {"epochs": 1, "n_boot": 10, "progress": False},
        "simulator": {
            "baselines": False,
            "calibrate": False,
            "negatives": 2,
            "hidden": 0,
            "replay_slate_size": 3,
        },
        "shop": {"slate_size": 3, "n_candidates": 10},
    }
    return {**config, **sections}


def tiny_agents(policies: list[str]) -> dict[str, Any]:
    """The ``agents`` section of a tiny run: ``policies`` with 256-step PPO and SlateQ budgets
    and no checkpoints (with :func:`tiny_toy_config`, a run of a minute or two)."""
    return {
        "policies": list(policies),
        "n_envs": 4,
        "ppo": {"steps": 256, "n_steps": 32, "batch_size": 64, "n_epochs": 1, "checkpoint_every": 0},
        "dqn": {
            "steps": 256,
            "buffer_size": 400,
            "learning_starts": 64,
            "batch_size": 32,
            "checkpoint_every": 0,
        },
    }


def shared(name: str) -> Path:
    """Path of a full data set under ``$SHOPSIM_SHARED_DATA`` (tests marked ``real_data``, which
    run only on request: ``make test-real-data``); a clear failure when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"{path} not present; set SHOPSIM_SHARED_DATA to the folder holding the full data sets")
    return path


def reseal(folder: Path) -> None:
    """Recompute every hash of ``folder``'s manifest.json from the files now there (what an
    attacker, or a test that edits an artifact on purpose, does)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != "manifest.json":
            files[rel] = {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    manifest["files"] = files
    (folder / "manifest.json").write_text(json.dumps(manifest))


def load_log(d: Path) -> None:
    """Load a prepared log folder (raises ShopsimError if it is refused)."""
    from shopsim.data import SessionLog

    SessionLog.load(d)


def load_encoder(d: Path) -> None:
    """Load an encoder folder (raises ShopsimError if it is refused)."""
    from shopsim.encoders.bundle import EncoderBundle

    EncoderBundle.load(d)


def load_sim(d: Path) -> None:
    """Load a simulator folder (raises ShopsimError if it is refused)."""
    from shopsim.envs.model.simulator import Simulator

    Simulator.load(d)


FORK_ENV = {k: v for k, v in os.environ.items() if k != "SHOPSIM_TRACEBACK"} | {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The environment of the forking interpreter: one thread, no traceback switch."""

_SERVER = r"""
import json, os, sys, traceback
import shopsim.experiments.cli as cli
import shopsim.experiments.config, shopsim.experiments.ope_validate, shopsim.data  # the slow imports, once
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.chdir(req["cwd"])
        sys.argv = ["shopsim", *req["argv"]]
        try:
            code = cli.main()
        except SystemExit as exc:  # argparse's exits
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except BaseException:  # what the console script would show: the traceback, exit 1
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)  # skips the ~2 s teardown of torch & co; the console-script tests cover exit
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Forker:
    """One interpreter with shopsim imported; :meth:`run` forks it to run ``main(argv)`` with its
    own argv, working folder, stdout, stderr and exit code (bad-input tables: a fresh
    interpreter per case costs ~5 s)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=FORK_ENV,
        )

    def run(self, argv: list[str], cwd: Path) -> tuple[int, str, str]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        out, err = self.root / "stdout", self.root / "stderr"
        req = {"argv": argv, "cwd": str(cwd), "out": str(out), "err": str(err)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        code = int(self.proc.stdout.readline())
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
