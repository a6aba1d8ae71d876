"""``shopsim explain`` on a finished tiny run: every registered policy of the run is explained,
the replayed episodes have the length the run's own evaluation recorded, every attribution adds
up, and bad input is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from shopsim.tests.helpers import tiny_agents, tiny_toy_config

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/explain.schema.json").read_text())
RUN = tiny_toy_config(
    agents=tiny_agents(["random", "popularity", "cooccurrence", "click_model_greedy", "ppo", "dqn"]),
    evaluation={"episodes": 40, "n_boot": 20, "offline": False},
)


def _shopsim(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    (root / "tiny.yaml").write_text(yaml.safe_dump(RUN))
    proc = _shopsim("run", "tiny.yaml", "--out", "run", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "run"


@pytest.mark.slow
def test_explain_every_policy_of_the_run(run: Path, tmp_path: Path) -> None:
    results = json.loads((run / "results.json").read_text())
    for episode in (0, 17, 39):
        proc = _shopsim("explain", run, "--episode", episode, "--json", tmp_path / "x.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        doc = json.loads((tmp_path / "x.json").read_text())
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        assert set(doc["policies"]) == {p for p in results["policies"] if p != "ppo_sampled"}
        for name, entry in doc["policies"].items():
            assert len(entry["steps"]) == entry["evaluated"]["steps"], (name, episode)
            for step in entry["steps"]:
                for item in step["slate"]:
                    assert item["shopper"]["completeness_gap"] < 1e-9
                    for head in item.get("policy", {}).values():
                        assert head["completeness_gap"] < 1e-9
        assert f"test episode {episode} of 40" in proc.stdout
        assert "shopper model: P(click)" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "bpr"], "--policy bpr: not a policy of this run; use one of random, popularity"),
        (["--episode", "40"], "explain: episode 40 is not one of the 40 evaluated (0..39)"),
    ],
)
def test_explain_bad_input_is_one_line(run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = _shopsim("explain", run, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"shopsim: error: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_explain_a_folder_without_results_is_one_line(tmp_path: Path) -> None:
    proc = _shopsim("explain", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"shopsim: error: {tmp_path}: no results.json; "
        f"finish the run first (shopsim run CONFIG --out {tmp_path})"
    )
