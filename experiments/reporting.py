"""Tables and plots of an experiment's results (results.md, plots/returns.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def results_markdown(report: dict[str, Any]) -> str:
    """The results table people read (results.md), best policy first, with paired differences."""
    cfg = report["config"]
    lines = [
        f"Policies on {cfg['evaluation']['episodes']:,} test sessions of the simulator (same sessions and "
        f"seeds for all; slate {cfg['shop']['slate_size']} of {cfg['shop']['n_candidates']} candidates; "
        f"reward = {report.get('reward', 'clicks')}). "
        "Δ columns are paired differences with 95% bootstrap intervals.",
        "",
        "| policy | kind | return [95% CI] | Δ vs click_model_greedy | Δ vs random | CTR | purchase rate "
        "| offline R@10 | offline NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(report["policies"].items(), key=lambda kv: -kv[1]["sim"]["return_mean"])
    for name, e in order:
        s = e["sim"]
        g, r = s.get("minus_click_model_greedy"), s.get("minus_random")
        off = e.get("offline", {})
        lines.append(
            f"| {name} | {e['kind']} "
            f"| {s['return_mean']:.3f} [{s['return_ci95'][0]:.3f}, {s['return_ci95'][1]:.3f}] "
            f"| {_diff(g)} | {_diff(r)} "
            f"| {s['ctr']:.4f} | {s['purchase_rate']:.4f} "
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
    return "\n".join(lines)


def _diff(d: dict[str, Any] | None) -> str:
    return "—" if d is None else f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def plot_returns(report: dict[str, Any], path: Path) -> None:
    """Bar chart of every policy's session return with its 95% interval (plots/returns.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
