"""``shopsim sweep`` on a local Ray: 2 agents × 2 reward settings × 3 seeds with tiny budgets,
SIGKILLed after its first finished trial and restarted with the same command, ends with one
table; the shared stages are built once per seed, finished trials are not rerun, and a trial's
results.json equals that of ``shopsim run`` with the same overrides."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from shopsim.experiments.runner import finished
from shopsim.tests.helpers import tiny_agents, tiny_toy_config

pytest.importorskip("ray", reason="the ray extra is installed by scripts/bootstrap.sh")

TINY = tiny_toy_config(
    agents=tiny_agents(["random", "ppo"]),
    evaluation={"episodes": 30, "n_boot": 20, "offline": False},
)
GRID = ["--grid", "agents.policies=[random,ppo],[random,dqn]", "--grid", "reward.purchase=1,5"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def _cmd(config: Path, out: Path) -> list[str]:
    sweep = ["sweep", str(config), *GRID, "--seeds", "0,1,2", "--threads", "1", "--out", str(out)]
    return [sys.executable, "-m", "shopsim.experiments.cli", *sweep]


@pytest.mark.slow
def test_a_killed_sweep_restarted_finishes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "sweep"
    first = subprocess.Popen(
        _cmd(config, out),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900
    done: list[Path] = []
    while not done and time.monotonic() < deadline and first.poll() is None:
        time.sleep(2)
        done = [p for p in (out / "trials").glob("*") if finished(p)]
    assert done, "no trial finished before the kill"
    os.killpg(first.pid, signal.SIGKILL)
    log1 = first.communicate()[0]
    assert log1.count("sweep: building shared stages") == 3  # one per seed, before any trial
    stamps = {p.name: (p / "results.json").stat().st_mtime_ns for p in done}

    second = subprocess.run(
        _cmd(config, out), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=1800
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "sweep: building shared stages" not in second.stdout
    report = json.loads((out / "sweep.json").read_text())
    assert len(report["shared_stages"]) == 3
    assert report["shared_stages_built"] == []
    assert [t["status"] for t in report["trials"]] == ["done"] * 12
    for name, stamp in stamps.items():  # finished trials were not rerun
        assert (out / "trials" / name / "results.json").stat().st_mtime_ns == stamp
        assert next(t for t in report["trials"] if t["name"] == name)["reused"]
    assert len(report["rows"]) == 4
    assert all(p["return"]["n"] == 3 for row in report["rows"] for p in row["policies"].values())
    assert "(n=3)" in (out / "sweep.md").read_text()
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/sweep.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(report)
    for key in ("agents.policies", "reward.purchase"):  # one plot per swept key
        assert (out / "plots" / f"sweep_{key}.png").stat().st_size > 10_000

    # a trial equals `shopsim run` of the same overrides (same thread count)
    trial = next(
        t
        for t in report["trials"]
        if t["seed"] == 1 and t["point"]["reward.purchase"] == "5" and "dqn" in t["point"]["agents.policies"]
    )
    alone = tmp_path / "alone"
    sets = [
        f"--set=agents.policies={trial['point']['agents.policies']}",
        "--set=reward.purchase=5",
        "--set=seed=1",
    ]
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", "run", str(config), *sets, "--out", str(alone)]
    subprocess.run(cmd, cwd=tmp_path, env=_env(), check=True, capture_output=True, timeout=900)
    got = json.loads((out / "trials" / trial["name"] / "results.json").read_text())
    assert got == json.loads((alone / "results.json").read_text())
