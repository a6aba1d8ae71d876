"""Tables and plots of an experiment's results (results.md, plots/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.artifacts import write_bytes_atomic
from shopsim.plots import pyplot, save_figure

RESULTS_SCHEMA = "shopsim.results/2"
"""Version of results.json's layout (docs/schemas/results.schema.json)."""


def results_markdown(report: dict[str, Any]) -> str:
    """The results table people read (results.md), best policy first, with paired differences
    against the two references, both named in the table."""
    cfg = report["config"]
    refs = report.get("references", {})
    dep, myo = refs.get("deployable"), refs.get("myopic") or "click_model_greedy"
    choice = refs.get("deployable_choice") or {}
    dep_note = (
        f"the deployable reference is **{dep}**, the best supervised/CF ranker on "
        f"{choice.get('episodes', '?'):,} {choice.get('chosen_on', 'valid')} sessions (never chosen on test)"
        if dep
        else "no supervised/CF ranker ran, so there is no deployable reference"
    )
    lines = [
        f"Policies on {cfg['evaluation']['episodes']:,} test sessions of the simulator (same sessions and "
        f"seeds for all; slate {cfg['shop']['slate_size']} of {cfg['shop']['n_candidates']} candidates; "
        f"reward = {report.get('reward', 'clicks')}). Every interval is a 95% bootstrap interval over "
        f"sessions; Δ columns are paired differences of returns. References: {dep_note}; the myopic "
        f"reference is **{myo}** (ranks with the simulator's own click model: "
        "an upper bound for myopic ranking).",
        "",
        f"| policy | kind | return [95% CI] | Δ vs {dep or 'deployable'} (deployable) | Δ vs {myo} (myopic) "
        "| CTR [95% CI] | purchase rate [95% CI] | revenue / session [95% CI] "
        "| offline R@10 | offline NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(report["policies"].items(), key=lambda kv: -kv[1]["sim"]["return_mean"])
    for name, e in order:
        s = e["sim"]
        off = e.get("offline", {})
        lines.append(
            f"| {name} | {e['kind']} | {interval_text(s['return_mean'], s['return_ci95'], 3)} "
            f"| {_diff(s.get('minus_deployable'))} | {_diff(s.get('minus_click_model_greedy'))} "
            f"| {interval_text(s['ctr'], s.get('ctr_ci95'), 4)} "
            f"| {interval_text(s['purchase_rate'], s.get('purchase_rate_ci95'), 4)} "
            f"| {interval_text(s['revenue_per_session'], s.get('revenue_ci95'), 2)} "
            f"| {_fmt(off.get('recall@10'))} | {_fmt(off.get('ndcg@10'))} |"
        )
    lines += [
        "",
        "`click_model_oracle` uses the shopper's hidden intent (the simulator's true myopic optimum): a "
        "reference no deployable policy can reach. `ppo` is the top-k slate of the trained policy, "
        "`ppo_sampled` its stochastic Plackett–Luce slates; `dqn` is SlateQ's best slate under its learned "
        "choice model and item values. Offline metrics: next-item ranking of the "
        "whole catalog on the logged test split (RL agents rank candidates only, so they have none).",
    ]
    if "ope" in report:
        lines += ["", "Off-policy estimates: see the `ope` block of results.json and results.md's OPE table."]
    return "\n".join(lines)


def interval_text(x: float, ci: list[float] | None, digits: int) -> str:
    """``x [lo, hi]`` with ``digits`` decimals (``x`` alone without an interval)."""
    if ci is None:
        return f"{x:.{digits}f}"
    return f"{x:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _diff(d: dict[str, Any] | None) -> str:
    return "—" if d is None else f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


METRICS = (
    ("return_mean", "return_ci95", "session return"),
    ("ctr", "ctr_ci95", "CTR (clicks per shown item)"),
    ("purchase_rate", "purchase_rate_ci95", "sessions with a purchase"),
    ("revenue_per_session", "revenue_ci95", "revenue per session"),
)
"""The per-policy panels of plots/policies.png: value key, interval key, axis label."""


def write_plots(report: dict[str, Any], out: Path, sim_dir: Path | None = None) -> list[Path]:
    """Every plot of a run folder: ``plots/returns.png``, ``plots/policies.png`` (return, CTR,
    purchases, revenue with intervals), ``plots/learning_curves.png`` (from the agents' logged
    rewards, ``models/*.curve.json``) and the simulator's fidelity plots copied to
    ``plots/fidelity/``. Returns the files written."""
    plots = out / "plots"
    written = [plot_returns(report, plots / "returns.png"), plot_policies(report, plots / "policies.png")]
    curves = load_curves(out / "models")
    if curves:
        written.append(plot_learning_curves(curves, plots / "learning_curves.png"))
    if sim_dir is not None and (sim_dir / "plots").is_dir():
        for src in sorted((sim_dir / "plots").glob("*.png")):
            dst = plots / "fidelity" / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(dst, src.read_bytes())
            written.append(dst)
    return written


def load_curves(models: Path) -> dict[str, dict[str, Any]]:
    """The learning curves ``models/<agent>.curve.json`` of a run (agent → curve)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(models.glob("*.curve.json")) if models.is_dir() else []:
        try:
            curve = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a curve that cannot be read is left out of the plot, not fatal
        if isinstance(curve, dict) and curve.get("steps"):
            out[path.name.split(".")[0]] = curve
    return out


def plot_returns(report: dict[str, Any], path: Path) -> Path:
    """Bar chart of every policy's session return with its 95% interval (plots/returns.png)."""
    plt = pyplot(path)
    items = sorted(report["policies"].items(), key=lambda kv: kv[1]["sim"]["return_mean"])
    names = [n for n, _ in items]
    means = np.array([e["sim"]["return_mean"] for _, e in items])
    lo = np.array([e["sim"]["return_ci95"][0] for _, e in items])
    hi = np.array([e["sim"]["return_ci95"][1] for _, e in items])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ax.barh(names, means, xerr=[means - lo, hi - means], color="#4c72b0", capsize=3)
    ax.set_xlabel(f"session return ({report.get('reward', 'clicks')}), 95% CI")
    ax.set_title("Policies in the simulator (same test sessions)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_policies(report: dict[str, Any], path: Path) -> Path:
    """Four panels — return, CTR, purchase rate, revenue per session — each policy with its
    95% interval; the references are marked (plots/policies.png)."""
    plt = pyplot(path)
    items = sorted(report["policies"].items(), key=lambda kv: kv[1]["sim"]["return_mean"])
    names = [n for n, _ in items]
    refs = report.get("references", {})
    marked = {refs.get("deployable"): "#55a868", refs.get("myopic"): "#c44e52"}
    colors = [marked.get(n, "#4c72b0") for n in names]
    fig, axes = plt.subplots(1, 4, figsize=(15, 0.35 * len(names) + 1.6), sharey=True)
    for ax, (key, ci_key, label) in zip(axes, METRICS, strict=True):
        v = np.array([e["sim"][key] for _, e in items])
        ci = np.array([e["sim"].get(ci_key) or [x, x] for (_, e), x in zip(items, v, strict=True)])
        ax.barh(names, v, xerr=[v - ci[:, 0], ci[:, 1] - v], color=colors, capsize=2)
        ax.set_xlabel(label)
    fig.suptitle(
        f"Policies on the same test sessions (95% CI; green: deployable reference {refs.get('deployable')}, "
        f"red: myopic reference {refs.get('myopic')})",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_learning_curves(curves: dict[str, dict[str, Any]], path: Path) -> Path:
    """Mean return of the training episodes against env steps, per agent (plots/learning_curves.png)."""
    plt = pyplot(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, c in curves.items():
        ax.plot(c["steps"], c["return_mean"], label={"dqn": "SlateQ (dqn)", "ppo": "PPO"}.get(name, name))
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean training-episode return")
    ax.set_title("Learning curves (logged rewards of the training episodes)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
