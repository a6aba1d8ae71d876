"""The sweep's plan (every trial validated up front, bad grids as one exact line) and its table."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopsim.errors import ShopsimError
from shopsim.experiments.sweep import (
    aggregate,
    parse_grid,
    parse_seeds,
    plan_sweep,
    plot_sweep,
    sweep_markdown,
)
from shopsim.stats import t_mean_ci
from shopsim.tests.helpers import Forker


def test_plan_is_every_point_times_every_seed_with_the_points_overrides() -> None:
    grid = parse_grid(["agents.ppo.steps=200,400", "reward.purchase=1,5"])
    trials = plan_sweep("quickstart", grid, [0, 1], ["agents.dqn.steps=100"])
    assert len(trials) == 8
    assert len({t.name for t in trials}) == 8
    first = trials[0]
    assert first.overrides == ("agents.dqn.steps=100", "agents.ppo.steps=200", "reward.purchase=1", "seed=0")
    assert first.point_label == "agents.ppo.steps=200, reward.purchase=1"
    assert {(t.point, t.seed) for t in trials} == {
        ((("agents.ppo.steps", a), ("reward.purchase", b)), s)
        for a in ("200", "400")
        for b in ("1", "5")
        for s in (0, 1)
    }


BAD_GRIDS = [
    (
        ["agents.ppo.steps"],
        "--grid 'agents.ppo.steps': expected KEY=V1,V2,…, e.g. --grid agents.ppo.steps=2000,4000",
    ),
    (
        ["agents.ppo.steps="],
        "--grid agents.ppo.steps: empty value in ''; "
        "give a comma-separated list such as agents.ppo.steps=1,2",
    ),
    (
        ["agents.ppo.steps=1,,2"],
        "--grid agents.ppo.steps: empty value in '1,,2'; "
        "give a comma-separated list such as agents.ppo.steps=1,2",
    ),
    (["agents.ppo.steps=1,1"], "--grid agents.ppo.steps: a value is repeated in '1,1'"),
    (["seed=1,2"], "--grid 'seed=1,2': seeds are swept with --seeds 0,1,2, not --grid"),
    (["a.b=1", "a.b=2"], "--grid a.b: given twice; list all its values in one --grid a.b=V1,V2"),
]


@pytest.mark.parametrize(("items", "message"), BAD_GRIDS)
def test_bad_grids_are_one_exact_line(items: list[str], message: str) -> None:
    with pytest.raises(ShopsimError) as exc:
        parse_grid(items)
    assert str(exc.value) == message


BAD_POINTS = [
    (
        "agents.ppo.stepz=1,2",
        "sweep grid point agents.ppo.stepz=1: --set agents.ppo.stepz: "
        "no such key 'stepz' in agents.ppo; known: ",
    ),
    (
        "agents.ppo.steps=100,lots",
        "sweep grid point agents.ppo.steps=lots: quickstart.yaml: agents.ppo.steps: "
        "Input should be a valid integer",
    ),
]


@pytest.mark.parametrize(("item", "start"), BAD_POINTS)
def test_an_invalid_grid_point_is_reported_before_any_trial(item: str, start: str) -> None:
    with pytest.raises(ShopsimError) as exc:
        plan_sweep("quickstart", parse_grid([item]), [0])
    assert str(exc.value).startswith(start)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,x", "--seeds '0,x': expected comma-separated integers such as 0,1,2"),
        ("0,0", "--seeds '0,0': seeds must be distinct non-negative integers"),
        ("-1", "--seeds '-1': seeds must be distinct non-negative integers"),
    ],
)
def test_bad_seeds(text: str, message: str) -> None:
    with pytest.raises(ShopsimError) as exc:
        parse_seeds(text)
    assert str(exc.value) == message


def _result(ret: float, delta: float) -> dict:
    return {
        "references": {"deployable": "itemknn"},
        "policies": {
            "ppo": {
                "sim": {
                    "return_mean": ret,
                    "return_ci95": [ret - 0.1, ret + 0.1],
                    "minus_deployable": {"diff": delta, "ci95": [delta - 0.2, delta + 0.2]},
                    "revenue_per_session": 10 * ret,
                    "revenue_ci95": [10 * ret - 1, 10 * ret + 1],
                }
            },
            "itemknn": {
                "sim": {"return_mean": ret - delta, "minus_deployable": {"diff": 0.0, "ci95": [0.0, 0.0]}}
            },
        },
    }


def test_aggregate_is_the_t_interval_over_seed_means_and_lists_failures() -> None:
    trials = plan_sweep("quickstart", parse_grid(["agents.ppo.steps=200,400"]), [0, 1, 2])
    rets = {0: 1.0, 1: 1.5, 2: 2.5}
    results = {t.name: _result(rets[t.seed], rets[t.seed] - 1.0) for t in trials if t.point[0][1] == "200"}
    one = next(t for t in trials if t.point[0][1] == "400" and t.seed == 0)
    results[one.name] = _result(3.0, 0.5)
    failed = next(t for t in trials if t.point[0][1] == "400" and t.seed == 1)
    report = aggregate(trials, results, {failed.name: "RuntimeError: out of memory"})
    row200, row400 = report["rows"]
    m, lo, hi = t_mean_ci([1.0, 1.5, 2.5])
    assert row200["policies"]["ppo"]["return"] == {"mean": m, "ci95": [lo, hi], "n": 3}
    d = row200["policies"]["ppo"]["minus_deployable"]
    assert d["n"] == 3
    assert math.isclose(d["mean"], m - 1.0)
    # one finished seed: that run's own paired session interval
    assert row400["policies"]["ppo"]["minus_deployable"] == {"mean": 0.5, "ci95": [0.3, 0.7], "n": 1}
    assert [x["error"] for x in row400["missing"]] == ["RuntimeError: out of memory", "not finished"]
    table = sweep_markdown(report)
    for text in ("RuntimeError: out of memory", "(n=3)", "itemknn"):
        assert text in table


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    """The sweep's argv run by ``main`` in processes forked from one interpreter (as the CLI
    bad-input table does: a fresh interpreter per case costs ~5 s)."""
    f = Forker(tmp_path_factory.mktemp("sweep_forks"))
    yield f
    f.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--grid", "agents.ppo.steps=100,lots"],
            "shopsim: error: sweep grid point agents.ppo.steps=lots: quickstart.yaml: agents.ppo.steps: "
            "Input should be a valid integer",
        ),
        (["--grid", "agents.ppo.steps="], "shopsim: error: --grid agents.ppo.steps: empty value in ''"),
        (
            ["--address", "127.0.0.1:1"],
            "shopsim: error: --address 127.0.0.1:1: cannot reach a Ray head node there",
        ),
        (
            ["--address", "nowhere"],
            "shopsim: error: --address 'nowhere': expected HOST:PORT of a Ray head node",
        ),
        (["--threads", "0"], "shopsim: error: --threads 0: give at least 1 torch thread per trial"),
    ],
)
def test_sweep_bad_input_is_one_line_exit_2_before_any_trial(
    forker: Forker, args: list[str], message: str, tmp_path: Path
) -> None:
    code, _, err = forker.run(["sweep", "quickstart", *args, "--out", str(tmp_path / "s")], tmp_path)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(message)
    assert not (tmp_path / "s").exists()


def test_revenue_is_aggregated_and_every_swept_key_gets_a_plot(tmp_path: Path) -> None:
    grid = parse_grid(["reward.purchase=1,5", "agents.ppo.steps=200,400"])
    trials = plan_sweep("quickstart", grid, [0, 1])
    results = {t.name: _result(1.0 + t.seed + int(t.point[0][1]), 0.1) for t in trials}
    report = aggregate(trials, results)
    row = report["rows"][0]  # reward.purchase=1, agents.ppo.steps=200: returns 2.0 and 3.0
    m, lo, hi = t_mean_ci([20.0, 30.0])
    assert row["policies"]["ppo"]["revenue_per_session"] == {"mean": m, "ci95": [lo, hi], "n": 2}
    assert "revenue_per_session" not in row["policies"]["itemknn"]  # not in its results: not invented
    assert f"| {m:+.3f} [{lo:+.3f}, {hi:+.3f}] (n=2) |" in sweep_markdown(report)
    paths = plot_sweep(report, tmp_path / "plots")
    assert [p.name for p in paths] == ["sweep_reward.purchase.png", "sweep_agents.ppo.steps.png"]
    from PIL import Image

    for p in paths:  # a row per value of the other key, a panel per metric
        assert Image.open(p).size == (int(3.6 * 4 * 110), int(2.9 * 2 * 110))
