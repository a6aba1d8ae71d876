"""The artifact schemas of docs/schemas/ hold for what the code writes.

Fast: the committed fixtures (tests/fixtures/artifacts: a full REES46 run's report.json,
eval.json, fidelity.json and simulator.json, and a toy run's results.json), the benchmark's
ope_validation.json and the toy simulator of the session fixture. Slow: a results.json and its
config from ``shopsim.experiments.runner.run`` on a tiny toy config.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shopsim.tests.helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schemas"
ARTIFACTS = FIXTURES / "artifacts"
NAMES = (
    "report",
    "eval",
    "fidelity",
    "simulator",
    "results",
    "ope_validation",
    "ope_obd",
    "manifest",
    "headroom",
    "sweep",
    "explain",
)


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of artifact ``name`` (``docs/schemas/NAME.schema.json``)."""
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def check(name: str, document: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` matches schema ``name``."""
    jsonschema.Draft202012Validator(schema(name)).validate(document)


def load(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_schemas_are_valid_and_versioned(name: str) -> None:
    s = schema(name)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$id"] == f"urn:shopsim:schema:{name}:{s['version']}"
    assert isinstance(s["version"], int)
    assert s["description"]
    assert all("description" in v or "$ref" in v for v in s["properties"].values())


@pytest.mark.parametrize("name", ["report", "eval", "fidelity", "simulator", "results"])
def test_committed_artifacts_match_their_schemas(name: str) -> None:
    check(name, load(ARTIFACTS / f"{name}.json"))


def test_committed_headroom_table_matches_its_schema() -> None:
    check("headroom", load(ROOT / "benchmarks" / "readme" / "headroom" / "headroom.json"))


def test_benchmark_ope_validation_matches_its_schema() -> None:
    check("ope_validation", load(ROOT / "benchmarks" / "ope_results" / "ope_validation.json"))


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("report", ["rows_in"]),
        ("eval", ["protocol", "targets"]),
        ("fidelity", ["click", "held_out"]),
        ("simulator", ["shopsim_simulator_version"]),
        ("results", ["reward"]),
    ],
)
def test_schemas_reject_a_missing_required_field(name: str, path: list[str]) -> None:
    doc = copy.deepcopy(load(ARTIFACTS / f"{name}.json"))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(jsonschema.ValidationError):
        check(name, doc)


def test_toy_pipeline_outputs_match_their_schemas(toy_sim: Path) -> None:
    root = toy_sim.parent
    check("report", load(root / "data" / "report.json"))
    check("eval", load(root / "enc" / "eval.json"))
    check("fidelity", load(toy_sim / "fidelity.json"))
    check("simulator", load(toy_sim / "simulator.json"))
    kinds = {"data": "log", "enc": "encoder"}
    for folder in (root / "data", root / "enc", toy_sim):
        manifest = load(folder / "manifest.json")
        check("manifest", manifest)
        assert manifest["kind"] == kinds.get(folder.name, "simulator")


TINY_RUN = {
    "seed": 0,
    "data": {"source": "sample:toy", "format": "events", "split": [0.6, 0.2, 0.2]},
    "encoder": {"epochs": 3, "n_boot": 50, "progress": False},
    "simulator": {"baselines": False},
    "shop": {"slate_size": 3, "n_candidates": 10},
    "agents": {"ppo": {"steps": 1024}, "dqn": {"steps": 1024, "learning_starts": 100}, "n_envs": 8},
    "evaluation": {"episodes": 100, "n_boot": 100},
}


@pytest.mark.slow
def test_run_outputs_match_their_schemas(tmp_path: Path) -> None:
    import yaml

    from shopsim.experiments.config import load_config
    from shopsim.experiments.runner import run

    cfg = load_config(TINY_RUN)
    report = run(cfg, tmp_path, echo=lambda _: None)
    check("results", report)
    check("results", load(tmp_path / "results.json"))
    assert load(tmp_path / "results.json")["config"] == yaml.safe_load((tmp_path / "config.yaml").read_text())
    check("report", load(tmp_path / "data" / "report.json"))
    check("eval", load(tmp_path / "encoder" / "eval.json"))
    check("fidelity", load(tmp_path / "simulator" / "fidelity.json"))
    check("simulator", load(tmp_path / "simulator" / "simulator.json"))
