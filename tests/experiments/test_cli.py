"""The ``shopsim`` command line: help everywhere, summaries, inspect writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from shopsim.data import sample_path

CliRunner = Callable[..., tuple[int, str, str]]

COMMANDS = [
    [],
    ["data"],
    ["data", "prepare"],
    ["data", "inspect"],
    ["quickstart"],
    ["run"],
    ["headroom"],
    ["configs"],
    ["config"],
    ["policies"],
    ["bench"],
    ["encode"],
    ["study"],
    ["simulator", "fit"],
    ["ope", "validate"],
]


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


@pytest.mark.slow
def test_quickstart_runs_every_stage(tmp_path: Path, cli: CliRunner) -> None:
    steps = ["agents.ppo.steps=2048", "agents.dqn.steps=2048", "evaluation.episodes=200"]
    code, out, err = cli("quickstart", "--out", tmp_path, *(a for s in steps for a in ("--set", s)))
    assert code == 0, err
    assert (tmp_path / "data" / "events.parquet").exists()
    assert "two_tower_frozen" in out
    assert (tmp_path / "encoder" / "eval.json").exists()
    assert (tmp_path / "simulator" / "fidelity.json").exists()
    resolved = (tmp_path / "config.yaml").read_text()
    assert "steps: 2048" in resolved
    # results.json: see docs/schemas/results.schema.json
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"schema", "dataset", "seed", "reward", "config", "references", "policies", "fidelity"} <= set(res)
    assert "timing_s" not in res  # wall times live in timing.json: results.json is reproducible
    assert {"evaluate", "train_ppo", "train_dqn"} <= set(json.loads((tmp_path / "timing.json").read_text()))
    dep = res["references"]["deployable"]
    assert res["policies"][dep]["kind"] in ("supervised", "cf")
    assert res["references"]["deployable_choice"]["chosen_on"] == "valid"
    assert "minus_deployable" in res["policies"]["ppo"]["sim"]
    assert f"Δ vs {dep} (deployable)" in (tmp_path / "results.md").read_text()
    assert {"returns.png", "policies.png"} <= {p.name for p in (tmp_path / "plots").iterdir()}
    assert res["reward"] == "clicks"
    assert res["config"]["agents"]["ppo"]["steps"] == 2048
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
        "dqn",
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
    assert (tmp_path / "models" / "dqn.zip").exists()


def test_encode_bad_inputs_are_one_line(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("encode", tmp_path / "nope", "--out", tmp_path / "o")
    assert code == 2
    assert err.startswith(f"shopsim: error: {tmp_path / 'nope'}: ")  # the loader's wording
    assert f"`shopsim data prepare SRC --format … --out {tmp_path / 'nope'}`" in err
    assert len(err.strip().splitlines()) == 1
    cli("data", "prepare", sample_path("rees46"), "--format", "rees46", "--out", tmp_path / "d")
    code, _, err = cli("encode", tmp_path / "d", "--out", tmp_path / "o", "--backbone", "bert-base-uncased")
    assert code == 2
    assert err.startswith("shopsim: error: backbone 'bert-base-uncased': no local copy")
    assert len(err.strip().splitlines()) == 1


def test_study_budget_on_the_toy_shop(toy_sim: Path, tmp_path: Path, cli: CliRunner) -> None:
    shop = ["--set", "shop.slate_size=3", "--set", "shop.n_candidates=20", "--set", "evaluation.episodes=100"]
    args = ["--simulator", toy_sim, "--out", tmp_path, *shop]
    code, out, err = cli("study", "budget", *args, "--ppo-budgets", "4096", "--dqn-budgets", "1000,2000")
    assert code == 0, err
    rep = json.loads((tmp_path / "budget.json").read_text())
    assert set(rep["curves"]["dqn"]) == {"1000", "2000", "train_seconds"}
    assert set(rep["curves"]["ppo"]) == {"4096", "train_seconds"}
    row = rep["curves"]["dqn"]["2000"]
    assert row["minus_click_model_greedy"]["ci95"][0] <= row["minus_click_model_greedy"]["diff"]
    assert "| dqn | 2,000 |" in out
    assert (tmp_path / "budget.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ppo-budgets", "10k"], "--ppo-budgets '10k': expected comma-separated numbers"),
        (["--dqn-budgets", "0"], "--dqn-budgets '0': expected positive numbers"),
        (["--strengths", "a,b"], "--strengths 'a,b': expected positive numbers"),
        (["--strengths", "1,-2"], "--strengths '1,-2': expected positive numbers"),
    ],
)
def test_study_bad_inputs_are_one_line(
    toy_sim: Path, tmp_path: Path, cli: CliRunner, args: list[str], message: str
) -> None:
    study = "whatif" if "--strengths" in args else "budget"
    code, _, err = cli("study", study, "--simulator", toy_sim, "--out", tmp_path, *args)
    assert code == 2
    assert err.startswith(f"shopsim: error: {message}")
    assert len(err.strip().splitlines()) == 1


def test_study_needs_a_simulator_folder(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("study", "budget", "--simulator", tmp_path, "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == (
        f"shopsim: error: {tmp_path}: not a simulator folder (run `shopsim simulator fit` first)"
    )


def test_ope_obd_bad_inputs_are_one_line(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("ope", "obd", tmp_path / "nope", "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == (
        f"shopsim: error: {tmp_path / 'nope'}: no such folder; point at an Open Bandit Dataset folder "
        "with random/ and bts/"
    )
    (tmp_path / "obd" / "random").mkdir(parents=True)
    (tmp_path / "obd" / "random" / "all.csv").write_text("item_id,position,click\n1,1,0\n")
    code, _, err = cli("ope", "obd", tmp_path / "obd", "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == (
        f"shopsim: error: {tmp_path / 'obd' / 'random' / 'all.csv'}: missing column(s) propensity_score; "
        "is this an Open Bandit Dataset log?"
    )
    (tmp_path / "obd" / "random" / "all.csv").write_text(
        "item_id,position,click,propensity_score\n1,1,0,0.5\n"
    )
    code, _, err = cli("ope", "obd", tmp_path / "obd", "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == (
        f"shopsim: error: {tmp_path / 'obd' / 'bts'}: no such folder; expected random/ and bts/ sub-folders"
    )


@pytest.mark.slow
def test_ope_validate_on_the_toy_shop(toy_sim: Path, tmp_path: Path, cli: CliRunner) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"policies": {"bert_two_tower": {"kind": "supervised"}, "other": {}}}))
    args = ["--sim", toy_sim, "--out", tmp_path / "v", "--slate-size", "3", "--n-candidates", "20"]
    small = ["--n-logged", "6000", "--repeats", "2", "--truth-episodes", "1500", "--n-boot", "100"]
    code, out, err = cli("ope", "validate", *args, *small, "--results", results)
    assert code == 0, err
    rep = json.loads((tmp_path / "v" / "ope_validation.json").read_text())
    names = {
        "random",
        "popularity",
        "cooccurrence",
        "bert_two_tower",
        "click_model_greedy",
        "non_myopic_rule",
    }
    assert set(rep["truth"]) == names
    assert set(rep["estimators"]["session"]) == {"pdis", "wpdis", "dr", "wdr"}
    assert set(rep["estimators"]["first_page"]) == {
        "ips", "snips", "dm", "dr", "sndr", "switch_dr", "dros", "iips", "rips", "cascade_dr"
    }  # fmt: skip
    assert set(rep["checks"]) == {"session/wpdis", "session/dr", "first_page/snips", "first_page/dr"}
    assert len(rep["repeats"]) == 2
    assert all(m["pages"] >= 6000 for m in rep["logs"])
    for n in names:  # the session-assigned A/B/n logger keeps every policy's weights near 1 on average
        assert 0.7 < rep["repeats"][0][n]["session"]["diagnostics"]["mean_weight"] < 1.3
    # a loose statistical check at this small size: DR and WPDIS are within 15% of the truth
    assert rep["estimators"]["session"]["dr"]["rel_error_mean"] < 0.15
    assert rep["estimators"]["session"]["wpdis"]["rel_error_mean"] < 0.15
    assert rep["estimators"]["session"]["dr"]["spearman"] > 0.8
    assert "| click_model_greedy | session |" in out
    assert (tmp_path / "v" / "plots" / "ope_validation.png").exists()
    annotated = json.loads(results.read_text())["policies"]
    assert set(annotated["bert_two_tower"]["ope"]) == {"pdis", "wpdis", "dr", "wdr"}
    assert "ope" not in annotated["other"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--behaviour", "foo"], "behaviour 'foo': unknown; use mixture or one of bert_two_tower, "),
        (["--epsilon", "0"], "epsilon=0.0: must be in (0, 1] so every slate can be logged"),
        (
            ["--repeats", "0"],
            "n_logged ≥ 100, repeats ≥ 1, truth_episodes ≥ 100 and n_boot ≥ 50 are required",
        ),
        (["--models", "{tmp}"], "{tmp}: no ppo.zip or dqn.zip; pass the models/ folder a quickstart wrote"),
        (["--results", "{tmp}/r.json", "--n-logged", "100"], "{tmp}/r.json: no such results.json"),
        (
            ["--address", "127.0.0.1:1"],
            "--address 127.0.0.1:1: only with --ray (the serial validation runs here)",
        ),
        (["--ray", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: cannot reach a Ray head node there"),
        (["--ray", "--threads", "0"], "argument --threads: '0': expected an integer ≥ 1"),
    ],
)
def test_ope_validate_bad_inputs_are_one_line(
    toy_sim: Path, tmp_path: Path, cli: CliRunner, args: list[str], message: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    small = [
        "--truth-episodes",
        "100",
        "--n-boot",
        "50",
        "--repeats",
        "1",
        "--slate-size",
        "3",
        "--n-candidates",
        "20",
    ]
    if "--repeats" in args:
        small = small[:4] + small[6:]
    if "--n-logged" not in args:
        small += ["--n-logged", "100"]
    code, _, err = cli("ope", "validate", "--sim", toy_sim, "--out", tmp_path / "o", *small, *args)
    assert code == 2, err
    assert err.startswith(f"shopsim: error: {message.replace('{tmp}', str(tmp_path))}")
    assert len(err.strip().splitlines()) == 1


def test_ope_validate_needs_a_simulator_folder(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("ope", "validate", "--sim", tmp_path / "nope", "--out", tmp_path / "o")
    assert code == 2
    assert err.strip() == f"shopsim: error: --sim {tmp_path / 'nope'}: no such folder"
