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

import json
import math
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopsim.artifacts import write_text_atomic
from shopsim.errors import ShopsimError
from shopsim.experiments.config import load_config, load_named_config, resolve_config
from shopsim.experiments.distributed import check_address, connect, one_line, require_ray, set_threads
from shopsim.experiments.runner import SharedStages, build_shared, finished, shared_key
from shopsim.experiments.runner import run as run_config
from shopsim.stats import t_mean_ci

SCHEMA = "shopsim.sweep/1"
"""Version of sweep.json's layout (docs/schemas/sweep.schema.json)."""

METRICS = {"revenue_per_session": "revenue_ci95", "purchase_rate": "purchase_rate_ci95", "ctr": "ctr_ci95"}
"""Shop metrics aggregated beside the return (whose weights a grid may change): results.json
key → the key of that run's own interval."""


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
        values = [v.strip() for v in _split_values(text)]
        if not text.strip() or any(not v for v in values):
            raise ShopsimError(
                f"--grid {key}: empty value in {text!r}; give a comma-separated list such as {key}=1,2"
            )
        if len(set(values)) != len(values):
            raise ShopsimError(f"--grid {key}: a value is repeated in {text!r}")
        grid[key] = values
    return grid


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets: ``[random,ppo],[random,dqn]`` is two list values."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


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
            ref = (res.get("references") or {}).get("deployable")
            if ref:
                deployable.add(str(ref))
            for policy, entry in res.get("policies", {}).items():
                sim = entry.get("sim") or {}
                if "return_mean" not in sim:
                    continue
                slot = per_policy.setdefault(
                    policy, {"ret": [], "ret_ci": [], "d": [], "d_ci": [], **{m: [] for m in METRICS}}
                )
                slot["ret"].append(float(sim["return_mean"]))
                slot["ret_ci"].append(sim.get("return_ci95"))
                for metric, ci_key in METRICS.items():
                    if metric in sim:
                        slot[metric].append((float(sim[metric]), sim.get(ci_key)))
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
                **{
                    m: _interval([v for v, _ in s[m]], s[m][0][1] if len(s[m]) == 1 else None)
                    for m in METRICS
                    if s[m]
                },
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
        "| grid point | policy | return (95% t-interval over seeds) | Δ vs deployable reference "
        "| revenue per session |",
        "|---|---|---|---|---|",
    ]
    failed: list[str] = []
    for row in report["rows"]:
        ref = "/".join(row["deployable"]) or "—"
        for policy, p in sorted(row["policies"].items(), key=lambda kv: -kv[1]["return"]["mean"]):
            lines.append(
                f"| {row['label']} | {policy} | {_fmt(p['return'])} | {_fmt(p['minus_deployable'])} "
                f"| {_fmt(p.get('revenue_per_session'))} |"
            )
        for m in row["missing"]:
            failed.append(f"- {row['label']}, trial `{m['trial']}`: {m['error']}")
        lines.append(f"| {row['label']} | *deployable reference* | {ref} | | |")
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


PANELS = {
    "return": "session return (the run's reward)",
    "revenue_per_session": "revenue per session",
    "purchase_rate": "sessions with a purchase",
    "ctr": "click-through rate",
}
"""What each plot of :func:`plot_sweep` shows, one panel per column."""


def plot_sweep(report: Mapping[str, Any], folder: Path) -> list[Path]:
    """One figure per swept key, ``folder/sweep_KEY.png``: each policy's seed mean and 95%
    t-interval against the key's values (in ``--grid`` order), a panel per metric of
    :data:`PANELS` and a row per combination of the other keys' values."""
    from shopsim.plots import pyplot, save_figure

    rows = list(report["rows"])
    keys = list(rows[0]["point"]) if rows else []
    paths: list[Path] = []
    for key in keys:
        values = list(dict.fromkeys(str(r["point"][key]) for r in rows))
        others = [k for k in keys if k != key]
        combos = list(dict.fromkeys(tuple(str(r["point"][k]) for k in others) for r in rows))
        plt = pyplot(folder)
        fig, axes = plt.subplots(
            len(combos), len(PANELS), figsize=(3.6 * len(PANELS), 2.9 * len(combos)), squeeze=False
        )
        policies = sorted({p for r in rows for p in r["policies"]})
        for i, combo in enumerate(combos):
            sub = {
                str(r["point"][key]): r for r in rows if tuple(str(r["point"][k]) for k in others) == combo
            }
            for j, (metric, label) in enumerate(PANELS.items()):
                ax = axes[i][j]
                for n, policy in enumerate(policies):
                    xs: list[float] = []
                    ys: list[float] = []
                    err: list[list[float]] = [[], []]
                    for x, value in enumerate(values):
                        entry = (sub.get(value) or {}).get("policies", {}).get(policy, {}).get(metric)
                        if not entry:
                            continue
                        lo, hi = entry["ci95"]
                        m = entry["mean"]
                        xs.append(x + 0.06 * (n - (len(policies) - 1) / 2))  # dodge overlapping bars
                        ys.append(m)
                        err[0].append(m - lo if lo is not None else 0.0)
                        err[1].append(hi - m if hi is not None else 0.0)
                    if xs:
                        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=policy, color=f"C{n % 10}")
                ax.set_xticks(range(len(values)), values, rotation=15, fontsize=8)
                ax.set_xlabel(key, fontsize=8)
                title = (
                    label
                    if not others
                    else f"{label}\n" + ", ".join(f"{k}={v}" for k, v in zip(others, combo, strict=True))
                )
                ax.set_title(title, fontsize=8)
        legend = {
            label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels(), strict=True)
        }
        handles, labels = list(legend.values()), list(legend)
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
        fig.suptitle(f"Sweep over {key}: seed mean, 95% t-interval over seeds", fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 0.96))
        path = folder / f"sweep_{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.png"
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def _trial_fn(spec: dict[str, Any]) -> dict[str, Any]:
    """Body of one trial (also what runs when a trial runs in this process): one ``shopsim run``."""
    set_threads(int(spec["threads"]))
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "trial.log", "a", encoding="utf-8") as log:
        try:
            # paths are absolute: Tune runs a trial in a folder of its own
            cfg = load_config(
                Path(spec["config"]),
                list(spec["overrides"]),
                where=spec["where"],
                base_dir=Path(spec["base"]),
            )
            shared = SharedStages(*(Path(p) for p in spec["shared"]))
            run_config(cfg, out, echo=lambda line: print(line, file=log, flush=True), shared=shared)
        except Exception as exc:  # the trial's error is one line of the table; the others go on
            traceback.print_exc(file=log)
            error = (
                f"{type(exc).__name__}: {one_line(exc)}" if not isinstance(exc, ShopsimError) else str(exc)
            )
            return {"trial": spec["name"], "error": error, "elapsed_s": round(time.perf_counter() - t0, 1)}
    return {"trial": spec["name"], "error": None, "elapsed_s": round(time.perf_counter() - t0, 1)}


def run_sweep(
    config: str | Path,
    trials: Sequence[Trial],
    out: Path,
    *,
    threads: int = 1,
    address: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the shared stages once per distinct (data, encoder, simulator), run every unfinished
    trial as a Ray Tune trial into ``out/trials/NAME``, and write ``sweep.json`` / ``sweep.md``.

    A restarted sweep skips the trials whose run folder is :func:`finished`; a failed trial's
    error is one line in the table and the other trials finish."""
    require_ray()
    check_address(address)
    out.mkdir(parents=True, exist_ok=True)
    shared: dict[str, SharedStages] = {}
    built: list[str] = []
    trial_shared: dict[str, SharedStages] = {}
    for t in trials:
        cfg = load_named_config(config, list(t.overrides))
        key = shared_key(cfg)[:16]
        if key not in shared:
            again = (out / "shared" / key / "simulator" / "simulator.json").is_file()
            echo(
                f"sweep: {'checking' if again else 'building'} shared stages {key} "
                f"(prepared log, encoder, simulator) for {t.point_label}, seed {t.seed}"
            )
            shared[key] = build_shared(cfg, out / "shared" / key, echo=lambda _line: None)
            if not again:
                built.append(key)
        trial_shared[t.name] = shared[key]
    todo = [t for t in trials if not finished(out / "trials" / t.name)]
    skipped = len(trials) - len(todo)
    echo(
        f"sweep: {len(trials)} trials, {skipped} already finished, {len(todo)} to run "
        f"({threads} thread(s) each)"
    )
    errors: dict[str, str] = {}
    elapsed: dict[str, float] = {}
    if todo:
        from ray import tune

        path, where, base = resolve_config(config)
        specs = {
            t.name: {
                "name": t.name,
                "config": str(path.resolve()),
                "where": where,
                "base": str((base or path.resolve().parent).resolve()),
                "overrides": list(t.overrides),
                "threads": threads,
                "out": str((out / "trials" / t.name).resolve()),
                "shared": [
                    str(p.resolve())
                    for p in (
                        trial_shared[t.name].data,
                        trial_shared[t.name].encoder,
                        trial_shared[t.name].simulator,
                    )
                ],
            }
            for t in todo
        }

        def trainable(param: dict[str, Any]) -> None:
            tune.report(_trial_fn(param["spec"]))

        connect(address)

        class _Progress(tune.Callback):
            """Done / running / failed with elapsed times, one line per trial event."""

            def __init__(self) -> None:
                self.t0 = time.perf_counter()
                self.running: set[str] = set()
                self.done = self.failed = 0

            def _line(self, what: str) -> None:
                echo(
                    f"sweep [{time.perf_counter() - self.t0:6.0f} s] {what} — done {self.done + skipped}, "
                    f"running {len(self.running)}, failed {self.failed} of {len(trials)}"
                )

            def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                self.running.add(trial.config["spec"]["name"])
                self._line(f"started {trial.config['spec']['name']}")

            def on_trial_result(
                self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
            ) -> None:
                name = trial.config["spec"]["name"]
                self.running.discard(name)
                if result.get("error"):
                    self.failed += 1
                    self._line(f"FAILED {name} after {result.get('elapsed_s', 0):.0f} s: {result['error']}")
                else:
                    self.done += 1
                    self._line(f"finished {name} in {result.get('elapsed_s', 0):.0f} s")

            def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                self.running.discard(trial.config["spec"]["name"])
                self.failed += 1
                self._line(f"FAILED {trial.config['spec']['name']}")

        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": threads}),
            param_space={"spec": tune.grid_search(list(specs.values()))},
            run_config=tune.RunConfig(
                name=f"tune-{time.strftime('%Y%m%dT%H%M%S')}",
                storage_path=str((out / "ray").resolve()),
                verbose=0,
                callbacks=[_Progress()],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        grid = tuner.fit()
        for i in range(len(grid)):
            result = grid[i]
            name = result.config["spec"]["name"] if result.config else "?"
            metrics = result.metrics or {}
            if result.error is not None:
                errors[name] = one_line(result.error)
            elif metrics.get("error"):
                errors[name] = str(metrics["error"]).splitlines()[0][:300]
            if "elapsed_s" in metrics:
                elapsed[name] = float(metrics["elapsed_s"])
    results: dict[str, dict[str, Any]] = {}
    for t in trials:
        folder = out / "trials" / t.name
        if finished(folder):
            results[t.name] = json.loads((folder / "results.json").read_text())
        elif t.name not in errors:
            errors[t.name] = "did not finish (see its trial.log)"
    report = aggregate(trials, results, errors)
    report["shared_stages"] = sorted(shared)
    report["shared_stages_built"] = built  # by this invocation (a restarted sweep reuses them)
    report["trials"] = [
        {
            "name": t.name,
            "point": dict(t.point),
            "seed": t.seed,
            "status": "done" if t.name in results else "failed",
            "reused": t.name in results and t not in todo,
            "elapsed_s": elapsed.get(t.name),
            "error": errors.get(t.name),
        }
        for t in trials
    ]
    write_text_atomic(out / "sweep.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "sweep.md", sweep_markdown(report))
    plots = plot_sweep(report, out / "plots")
    echo(
        f"sweep: {len(results)} done, {len(trials) - len(results)} failed; table in {out / 'sweep.md'}, "
        f"plots: {', '.join(p.name for p in plots) or 'none'}"
    )
    return report


__all__ = [
    "SCHEMA",
    "Trial",
    "aggregate",
    "parse_grid",
    "parse_seeds",
    "plan_sweep",
    "plot_sweep",
    "run_sweep",
    "sweep_markdown",
    "trial_name",
]
