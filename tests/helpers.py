"""Helpers shared by the tests: paths to the fixtures and to the real data sets."""

from __future__ import annotations

import hashlib
import json
import os
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
