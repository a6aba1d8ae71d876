"""``shopsim ope validate --ray`` runs the on-policy truths and the logging repeats as Ray tasks
and writes the same report as the serial command for the same seeds (only ``timing_s`` and
``execution`` say how it ran)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from shopsim.experiments.ope_validate import engines_markdown, report_differences

pytest.importorskip("ray", reason="the ray extra is installed by scripts/bootstrap.sh")

SMALL = ["--slate-size", "3", "--n-candidates", "20", "--n-logged", "3000", "--repeats", "3"]
SMALL += ["--truth-episodes", "800", "--n-boot", "60", "--seed", "4"]


def _validate(sim: Path, out: Path, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", "ope", "validate", "--sim", str(sim)]
    proc = subprocess.run(
        [*cmd, "--out", str(out), *SMALL, *extra], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "ope_validation.json").read_text())


@pytest.mark.slow
def test_ray_validation_equals_the_serial_one(toy_sim: Path, tmp_path: Path) -> None:
    serial = _validate(toy_sim, tmp_path / "serial")
    on_ray = _validate(toy_sim, tmp_path / "ray", "--ray", "--threads", "1")
    assert serial["execution"] == {"engine": "serial", "address": None, "threads_per_task": None}
    assert on_ray["execution"] == {"engine": "ray", "address": "local", "threads_per_task": 1}
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "ope_validation.schema.json").read_text()
    )
    for doc in (serial, on_ray):
        jsonschema.Draft202012Validator(schema).validate(doc)
    assert len(on_ray["repeats"]) == 3
    assert len(on_ray["truth"]) == 6
    assert report_differences(serial, on_ray) == {}
    assert "Findings identical to serial: **yes**, bit for bit" in engines_markdown(serial, on_ray)
    changed = {**on_ray, "truth": {**on_ray["truth"], "random": {}}}
    assert report_differences(serial, changed) == {"truth": math.inf}
    nudged = json.loads(json.dumps(on_ray))
    nudged["checks"]["session/dr"]["rel_error_mean"] *= 1 + 1e-14
    assert list(report_differences(serial, nudged)) == ["checks"]
    assert report_differences(serial, nudged, rtol=1e-12) == {}
    assert "**equal to a relative 1e-14** (checks: floating-point" in engines_markdown(serial, nudged)
    for doc in (serial, on_ray):
        del doc["timing_s"], doc["execution"]
    assert on_ray == serial  # every truth, estimate, interval, check and diagnostic
    md = lambda d: (tmp_path / d / "ope_validation.md").read_text()  # noqa: E731
    assert md("ray") == md("serial")
