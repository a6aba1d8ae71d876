"""``shopsim bench --json``: the report's keys and shape on tiny settings (never its speed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CliRunner = Callable[..., tuple[int, str, str]]


def _bench(cli: CliRunner, *args: str | Path) -> dict[str, Any]:
    code, out, err = cli("bench", "--json", *args)
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def _check_common(report: dict[str, Any], groups: list[str]) -> None:
    assert report["schema"] == "shopsim-bench/1"
    assert report["groups_run"] == groups
    assert set(report["groups"]) == set(groups)
    machine = report["machine"]
    for key in ("cores", "python", "numpy", "torch", "gymnasium", "load_average_start", "load_average_end"):
        assert key in machine
    assert machine["cores"] >= 1
    assert "git_commit" in report
    assert isinstance(report["git_dirty"], list)
    for name in groups:
        group = report["groups"][name]
        assert group["peak_rss_mb"] > 0
        assert group["wall_s"] > 0
        assert group["rows"], name
        for row in group["rows"]:
            assert set(row) >= {"key", "figure", "value", "unit", "reference", "reference_value", "ratio"}
            if row.get("skipped"):
                continue
            assert row["value"] > 0, row
            if row["reference_value"] is not None:
                assert row["reference_value"] > 0, row
                assert row["ratio"] > 0, row


def test_bench_prepare_json(cli: CliRunner) -> None:
    report = _bench(cli, "--only", "prepare")
    _check_common(report, ["prepare"])
    (row,) = report["groups"]["prepare"]["rows"]
    assert row["key"] == "prepare.sample"
    assert row["rows"] > 10_000
    assert row["unit"] == "rows/s"
    assert report["headline"]["prepare_vs_read_csv"] == row["ratio"]


def test_bench_env_json_on_a_tiny_setting(cli: CliRunner, toy_sim: Path) -> None:
    report = _bench(
        cli, "--only", "env", "--simulator", toy_sim, "--seconds", "0.05", "--candidates", "10,12",
        "--batch-sizes", "4",
    )  # fmt: skip
    _check_common(report, ["env"])
    env = report["groups"]["env"]
    modes = env["observation_modes"]
    assert "vectors" in modes
    # every mode × N × (single + each B) is one row
    assert len(env["rows"]) == len(modes) * 2 * 2
    assert {(r["mode"], r["n_candidates"], r["batch"]) for r in env["rows"]} == {
        (m, n, b) for m in modes for n in (10, 12) for b in (1, 4)
    }
    head = report["headline"]
    assert head["env_observation_mode"] == ("indices" if "indices" in modes else "vectors")
    ref = env["reference"]
    if ref["available"]:  # the optional extra shopsim[bench] (SARDINE) is installed
        assert ref["env"] == "sardine/SlateTopK-Bored-v0"
        assert ref["items"] == 1000
        assert ref["slate_size"] == 10
        assert ref["steps_per_s"] > 0
        assert len(ref["runs"]) == 3 * (len(env["rows"]) + 1)  # 3 runs before and after every figure
        for row in env["rows"]:
            assert ref["steps_per_s_min"] <= row["reference_value"] <= ref["steps_per_s_max"]
        assert head["env_single_vs_sardine_n12"] > 0
        assert head["env_vec1024_vs_sardine_n12"] is None  # no B = 1,024 in this run
    else:
        assert head["env_single_vs_sardine_n12"] is None
        assert "shopsim[bench]" in ref["reason"]


def test_bench_table_output(cli: CliRunner) -> None:
    code, out, _ = cli("bench", "--only", "prepare")
    assert code == 0
    assert "[prepare]" in out
    assert "pandas.read_csv" in out
    assert "headline:" in out


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--only", "nope"], "pick from env,train,encoder,encode,prepare"),
        (["--candidates", "0"], "--candidates"),
        (["--batch-sizes", "a,b"], "--batch-sizes"),
        (["--seconds", "0"], "--seconds"),
    ],
)
def test_bench_bad_flags_are_one_line(cli: CliRunner, args: list[str], phrase: str) -> None:
    code, _, err = cli("bench", *args)
    assert code == 2
    assert phrase in err
    assert len(err.strip().splitlines()) <= 2


@pytest.mark.slow
def test_bench_train_and_encoder_json(cli: CliRunner, toy_sim: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    report = _bench(
        cli, "--only", "train,encoder", "--simulator", toy_sim, "--seconds", "0.05",
        "--train-steps", "64", "--encoder-items", "32", "--out", out,
    )  # fmt: skip
    _check_common(report, ["train", "encoder"])
    assert json.loads(out.read_text())["groups_run"] == ["train", "encoder"]
    train = {r["key"]: r for r in report["groups"]["train"]["rows"]}
    assert set(train) == {"train.ppo", "train.dqn"}
    for row in train.values():
        assert row["steps"] >= 64
        assert row["learner_share"] == pytest.approx(1 - row["ratio"], abs=1e-3)
    assert report["groups"]["encoder"]["settings"]["items"] == 32
    assert report["headline"]["encoder_embed_vs_raw_transformers"] > 0


def test_committed_before_report_is_a_full_run() -> None:
    from shopsim.experiments.bench import GROUPS

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench" / "before.json"
    report = json.loads(path.read_text())
    _check_common(report, list(GROUPS))
    assert report["git_commit"]
    head = report["headline"]
    for key in ("env_single_vs_sardine_n1000", "env_vec1024_vs_sardine_n1000", "ppo_train_vs_env"):
        assert head[key] > 0, key
    assert report["groups"]["env"]["reference"]["available"]
