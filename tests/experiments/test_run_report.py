"""The run report's parts that need no finished run: which example sessions it explains, the
results rows, and its environment knob (the page itself: test_explain_cli, test_report_browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsim.errors import ShopsimError
from shopsim.experiments.run_report import example_episodes, results_rows, run_report_sessions


def _results(**means: float) -> dict[str, Any]:
    policies = {
        name: {"kind": "rl" if name in ("ppo", "dqn") else "cf", "sim": {"return_mean": m}}
        for name, m in means.items()
    }
    return {"policies": policies, "references": {"deployable": "itemknn", "myopic": None}}


def _returns(run: Path, **per_policy: np.ndarray) -> None:
    (run / "evaluation" / "test").mkdir(parents=True)
    for name, r in per_policy.items():
        np.savez(run / "evaluation" / "test" / f"{name}.npz", returns=r)


def test_examples_are_the_best_agents_largest_gain_largest_loss_and_median(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 5, 800).astype(float)
    ppo = ref + rng.normal(0, 1, 800)
    ppo[700] += 50  # beyond the first 500 episodes: never chosen (replaying it means 2 batches)
    _returns(tmp_path, ppo=ppo, dqn=ref - 1, itemknn=ref)
    ex = example_episodes(tmp_path, _results(ppo=2.0, dqn=1.0, itemknn=1.5))
    diff = (ppo - ref)[:500]
    order = np.argsort(diff, kind="stable")
    assert [e["episode"] for e in ex] == [order[-1], order[0], order[250]]
    assert [e["why"] for e in ex] == [
        "ppo gained most over itemknn",
        "ppo lost most to itemknn",
        "a typical session",
    ]
    assert ex[0]["value"] == pytest.approx(diff.max())


def test_without_an_agent_the_best_policys_extremes_are_shown(tmp_path: Path) -> None:
    r = np.array([3.0, 0.0, 1.0, 5.0, 2.0])
    _returns(tmp_path, itemknn=r)
    ex = example_episodes(tmp_path, _results(itemknn=1.0), k=3)
    assert [e["episode"] for e in ex] == [3, 1, 4]
    assert ex[0]["why"] == "itemknn's best session"


def test_results_rows_mark_paired_differences_whose_interval_excludes_zero() -> None:
    sim = {"return_mean": 1.0, "return_ci95": [0.9, 1.1], "ctr": 0.1, "purchase_rate": 0.0}
    sim |= {"revenue_per_session": 0.0}
    res = {
        "policies": {
            "a": {"kind": "rl", "sim": sim | {"minus_deployable": {"diff": 0.2, "ci95": [0.1, 0.3]}}},
            "b": {
                "kind": "cf",
                "sim": sim | {"return_mean": 0.5, "minus_deployable": {"diff": -0.1, "ci95": [-0.2, 0.1]}},
            },
        },
        "references": {"deployable": "b"},
    }
    rows = results_rows(res)
    assert [r["name"] for r in rows] == ["a", "b"]
    assert [r["diffs"][0]["sign"] for r in rows] == ["pos", ""]
    assert rows[1]["reference"] == "deployable"
    assert rows[0]["diffs"][1]["text"] == "—"


@pytest.mark.parametrize(("raw", "expected"), [(None, 3), ("", 3), ("0", 0), ("5", 5)])
def test_the_sessions_knob(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: int) -> None:
    if raw is None:
        monkeypatch.delenv("SHOPSIM_REPORT_SESSIONS", raising=False)
    else:
        monkeypatch.setenv("SHOPSIM_REPORT_SESSIONS", raw)
    assert run_report_sessions() == expected


@pytest.mark.parametrize("raw", ["-1", "three", "1.5"])
def test_a_bad_sessions_knob_is_one_line(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SHOPSIM_REPORT_SESSIONS", raw)
    with pytest.raises(ShopsimError) as err:
        run_report_sessions()
    assert (
        str(err.value)
        == f"SHOPSIM_REPORT_SESSIONS={raw!r}: expected a whole number of sessions ≥ 0 (or unset it)"
    )
