"""Sweeps: a grid of config overrides × seeds, each point one ``shopsim run``, and one table.

This module is the part of ``shopsim sweep`` that needs no execution engine: it turns
``--grid KEY=V1,V2 …`` and ``--seeds 0,1,2`` into the list of trials (:func:`plan_sweep`),
validating **every** trial's config before any trial starts, so an unknown key, an empty value
list or a value of the wrong type is one error line naming the grid point; and it aggregates
finished trials' ``results.json`` into one table (:func:`aggregate`, :func:`sweep_markdown`):
per grid point and policy, the mean session return over seeds with its Student-t 95% interval
over the seed means (:func:`shopsim.stats.t_mean_ci`, n shown), and the mean paired Δ against the
run's deployable reference (the best supervised/CF ranker chosen on valid sessions) with the
t interval over the seed-level Δs — with one seed, that run's own paired session bootstrap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopsim.errors import ShopsimError
from shopsim.experiments.config import load_named_config
from shopsim.stats import t_mean_ci

SCHEMA = "shopsim.sweep/1"
"""Version of sweep.json's layout."""


@dataclass(frozen=True)
class Trial:
    """One grid point × seed: the overrides of one ``shopsim run``."""

    name: str
    """Folder name of the trial's run (filesystem-safe, unique within the sweep)."""
    point: tuple[tuple[str, str], ...]
    """The grid point: (key, value as written) per swept key, in the order of ``--grid``."""
    seed: int
    overrides: tuple[str, ...]
    """Every ``--set`` of the trial: the sweep's own, then the point's, then ``seed=``."""

    @property
    def point_label(self) -> str:
        """The grid point as ``key=value, …`` (how tables name it)."""
        return ", ".join(f"{k}={v}" for k, v in self.point) or "(no grid)"


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["agents.ppo.steps=2000,4000", …]`` → ``{"agents.ppo.steps": ["2000", "4000"], …}``.

    Values stay text: each trial's config is validated by :func:`plan_sweep`, which parses them
    as ``--set`` does (YAML syntax)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ShopsimError(
                f"--grid {item!r}: expected KEY=V1,V2,…, e.g. --grid agents.ppo.steps=2000,4000"
            )
        if key == "seed":
            raise ShopsimError(f"--grid {item!r}: seeds are swept with --seeds 0,1,2, not --grid")
        if key in grid:
            raise ShopsimError(f"--grid {key}: given twice; list all its values in one --grid {key}=V1,V2")
        values = [v.strip() for v in text.split(",")]
        if not text.strip() or any(not v for v in values):
            raise ShopsimError(
                f"--grid {key}: empty value in {text!r}; give a comma-separated list such as {key}=1,2"
            )
        if len(set(values)) != len(values):
            raise ShopsimError(f"--grid {key}: a value is repeated in {text!r}")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]`` (distinct non-negative integers)."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ShopsimError(f"--seeds {text!r}: expected comma-separated integers such as 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ShopsimError(f"--seeds {text!r}: seeds must be distinct non-negative integers")
    return seeds


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def trial_name(point: Sequence[tuple[str, str]], seed: int) -> str:
    """Folder name of a trial: the point's ``key-value`` parts (last key part only) and the seed."""
    parts = [f"{k.rsplit('.', 1)[-1]}-{_UNSAFE.sub('_', v)}" for k, v in point]
    return "__".join([*parts, f"seed-{seed}"])


def plan_sweep(
    config: str | Path,
    grid: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
) -> list[Trial]:
    """Every grid point × seed as a :class:`Trial`, each one's config loaded and validated now.

    :raises ShopsimError: one line naming the grid point when a trial's config is invalid."""
    if not seeds:
        raise ShopsimError("--seeds: give at least one seed, e.g. --seeds 0")
    points: list[list[tuple[str, str]]] = [[]]
    for key, values in grid.items():
        points = [[*p, (key, v)] for p in points for v in values]
    trials: list[Trial] = []
    names: set[str] = set()
    for point in points:
        for seed in seeds:
            sets = (*overrides, *(f"{k}={v}" for k, v in point), f"seed={seed}")
            try:
                load_named_config(config, list(sets))
            except ShopsimError as exc:
                at = ", ".join(f"{k}={v}" for k, v in point) or "the base config"
                raise ShopsimError(f"sweep grid point {at}: {exc}") from None
            name = trial_name(point, seed)
            if name in names:  # two values that sanitise alike ("a b" and "a_b")
                name = f"{name}__{len(trials)}"
            names.add(name)
            trials.append(Trial(name, tuple(point), seed, sets))
    return trials


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _interval(values: Sequence[float], single_ci: Sequence[float] | None = None) -> dict[str, Any]:
    m, lo, hi = t_mean_ci(list(values))
    if len(values) == 1 and single_ci is not None:
        lo, hi = float(single_ci[0]), float(single_ci[1])
    return {"mean": m, "ci95": [_finite(lo), _finite(hi)], "n": len(values)}


def aggregate(
    trials: Sequence[Trial], results: Mapping[str, Mapping[str, Any]], errors: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One row per grid point: each policy's seed-mean return and paired Δ vs the deployable
    reference, from the finished trials' results.json (``results[trial.name]``); trials in
    ``errors`` (name → one line) or without results are listed, not averaged."""
    errors = dict(errors or {})
    rows: list[dict[str, Any]] = []
    by_point: dict[tuple[tuple[str, str], ...], list[Trial]] = {}
    for t in trials:
        by_point.setdefault(t.point, []).append(t)
    for point, ts in by_point.items():
        done = [t for t in ts if t.name in results]
        per_policy: dict[str, dict[str, list[Any]]] = {}
        deployable: set[str] = set()
        for t in done:
            res = results[t.name]
            deployable.add(str(res.get("references", {}).get("deployable")))
            for policy, entry in res.get("policies", {}).items():
                sim = entry.get("sim") or {}
                if "return_mean" not in sim:
                    continue
                slot = per_policy.setdefault(policy, {"ret": [], "ret_ci": [], "d": [], "d_ci": []})
                slot["ret"].append(float(sim["return_mean"]))
                slot["ret_ci"].append(sim.get("return_ci95"))
                delta = sim.get("minus_deployable")
                if delta is not None:
                    slot["d"].append(float(delta["diff"]))
                    slot["d_ci"].append(delta.get("ci95"))
        policies = {
            p: {
                "return": _interval(s["ret"], s["ret_ci"][0] if len(s["ret"]) == 1 else None),
                "minus_deployable": (
                    _interval(s["d"], s["d_ci"][0] if len(s["d"]) == 1 else None) if s["d"] else None
                ),
            }
            for p, s in per_policy.items()
        }
        rows.append(
            {
                "point": dict(point),
                "label": ts[0].point_label,
                "seeds": [t.seed for t in done],
                "deployable": sorted(deployable),
                "policies": policies,
                "missing": [
                    {"trial": t.name, "error": errors.get(t.name, "not finished")}
                    for t in ts
                    if t.name not in results
                ],
            }
        )
    return {"schema": SCHEMA, "grid_keys": sorted({k for t in trials for k, _ in t.point}), "rows": rows}


def _fmt(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "—"
    lo, hi = d["ci95"]
    ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else ""
    return f"{d['mean']:+.3f}{ci} (n={d['n']})"


def sweep_markdown(report: Mapping[str, Any]) -> str:
    """The sweep table: per grid point, a line per policy with return and Δ vs deployable."""
    lines = [
        "| grid point | policy | return (95% t-interval over seeds) | Δ vs deployable reference |",
        "|---|---|---|---|",
    ]
    failed: list[str] = []
    for row in report["rows"]:
        ref = "/".join(row["deployable"]) or "—"
        for policy, p in sorted(row["policies"].items(), key=lambda kv: -kv[1]["return"]["mean"]):
            lines.append(
                f"| {row['label']} | {policy} | {_fmt(p['return'])} | {_fmt(p['minus_deployable'])} |"
            )
        for m in row["missing"]:
            failed.append(f"- {row['label']}, trial `{m['trial']}`: {m['error']}")
        lines.append(f"| {row['label']} | *deployable reference* | {ref} | |")
    caption = (
        "Mean session return per grid point over its seeds, with the Student-t 95% interval over "
        "the seed means (n seeds); Δ is the paired difference against each run's deployable "
        "reference (its best supervised/CF ranker on valid sessions), averaged over seeds; with "
        "one seed the interval is that run's paired session bootstrap."
    )
    out = "\n".join([caption, "", *lines])
    if failed:
        out += "\n\nTrials not in the table:\n" + "\n".join(failed)
    return out + "\n"


__all__ = [
    "SCHEMA",
    "Trial",
    "aggregate",
    "parse_grid",
    "parse_seeds",
    "plan_sweep",
    "sweep_markdown",
    "trial_name",
]
