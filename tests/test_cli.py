"""The ``shopsim`` command line: help everywhere, summaries, inspect writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from shopsim.envs.data import sample_path

CliRunner = Callable[..., tuple[int, str, str]]

COMMANDS = [[], ["data"], ["data", "prepare"], ["data", "inspect"], ["quickstart"], ["bench"], ["encode"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "shopsim")
def test_every_command_has_help(cli: CliRunner, command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert out.startswith("usage: shopsim")


def test_prepare_prints_summary(tmp_path: Path, cli: CliRunner) -> None:
    code, out, err = cli("data", "prepare", sample_path("rees46"), "--format", "rees46", "--out", tmp_path)
    assert code == 0, err
    assert "rows in 17,434 → events out 17,429; dropped duplicate_row 5" in out
    assert "sessions 5,066 · users 4,504 · items 6,493" in out
    assert "items with text: 87.1%" in out


def test_inspect_writes_nothing(tmp_path: Path, cli: CliRunner) -> None:
    code, out, _ = cli("data", "inspect", sample_path("uci"), "--format", "uci", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["rows_in"] == 40_000
    assert report["outputs"] == {}


def test_quickstart_prepares_the_bundled_samples(tmp_path: Path, cli: CliRunner) -> None:
    code, out, err = cli("quickstart", "--out", tmp_path, "--ppo-steps", "2048", "--episodes", "200")
    assert code == 0, err
    for name in ("rees46", "uci"):
        assert (tmp_path / name / "events.parquet").exists()
    assert "uci ←" in out
    assert "two_tower_frozen" in out
    assert (tmp_path / "rees46-encoder" / "eval.json").exists()
    assert (tmp_path / "rees46-sim" / "fidelity.json").exists()
    # results.json follows DESIGN.md's schema
    import json

    res = json.loads((tmp_path / "results.json").read_text())
    assert {"dataset", "seed", "config", "policies", "fidelity", "timing_s"} <= set(res)
    names = {
        "random",
        "popularity",
        "cooccurrence",
        "itemknn",
        "als",
        "bpr",
        "bert_two_tower",
        "click_model_greedy",
        "ppo",
    }
    assert names <= set(res["policies"])
    for entry in res["policies"].values():
        sim = entry["sim"]
        assert {
            "return_mean",
            "return_ci95",
            "ctr",
            "purchase_rate",
            "revenue_per_session",
            "episodes",
        } <= set(sim)
        assert sim["episodes"] == 200
        assert sim["return_ci95"][0] <= sim["return_mean"] <= sim["return_ci95"][1]
    assert {"recall@10", "ndcg@10"} <= set(res["policies"]["als"]["offline"])
    assert (tmp_path / "results.md").read_text().startswith("Policies on 200 test sessions")
    assert (tmp_path / "plots" / "returns.png").exists()
    assert (tmp_path / "models" / "ppo.zip").exists()


def test_encode_bad_inputs_are_one_line(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("encode", tmp_path / "nope", "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == (
        f"shopsim: error: {tmp_path / 'nope'}: no events.parquet; create the folder with "
        f"`shopsim data prepare SRC --format … --out {tmp_path / 'nope'}`"
    )
    cli("data", "prepare", sample_path("rees46"), "--format", "rees46", "--out", tmp_path / "d")
    code, _, err = cli("encode", tmp_path / "d", "--out", tmp_path / "o", "--backbone", "bert-base-uncased")
    assert code == 2
    assert err.startswith("shopsim: error: backbone 'bert-base-uncased': no local copy")
    assert len(err.strip().splitlines()) == 1
