"""Does RL beat the myopic ranker, and when? Two studies on a fitted simulator.

* :func:`budget_curve` — PPO and SlateQ evaluated at growing training budgets against
  ``click_model_greedy`` (paired differences, 95% intervals, same test sessions and seeds).
* :func:`whatif_sweep` — the same comparison in worlds with the labelled what-if dynamics of
  :class:`~shopsim.envs.engine.ShopperConfig` (``fatigue``, ``exposure_intent``) at growing
  strengths: where does RL start to pay? Those dynamics are assumptions, not measurements
  (the REES46 logs contradict fatigue); the sweep says what *would* change if they held.

Each writes a JSON file, a Markdown table and a plot into its output folder
(``shopsim study budget|whatif``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from shopsim.agents.baselines.slates import ClickModelGreedy, NonMyopicRule, RandomSlate
from shopsim.envs.model.simulator import Simulator
from shopsim.evaluation.in_simulator import EpisodeResults, evaluate_policy_in_sim, paired_difference
from shopsim.experiments.agents_run import AgentsConfig, eval_config, train_dqn, train_ppo


class _EvalAt(BaseCallback):
    """Evaluates the model being trained when the step count first reaches each budget."""

    def __init__(self, budgets: list[int], evaluate: Any) -> None:
        super().__init__()
        self.budgets = sorted(budgets)
        self.evaluate = evaluate
        self.results: dict[int, EpisodeResults] = {}

    def _on_step(self) -> bool:
        while self.budgets and self.num_timesteps >= self.budgets[0]:
            self.results[self.budgets.pop(0)] = self.evaluate(self.model)
        return True


def _row(res: EpisodeResults, greedy: EpisodeResults, rand: EpisodeResults, seed: int) -> dict[str, Any]:
    s = res.summary(seed=seed)
    return {
        "return_mean": s["return_mean"],
        "return_ci95": s["return_ci95"],
        "minus_click_model_greedy": paired_difference(res, greedy, seed=seed),
        "minus_random": paired_difference(res, rand, seed=seed),
    }


def _references(sim: Simulator, cfg: AgentsConfig) -> dict[str, EpisodeResults]:
    shop = eval_config(cfg)
    pols: dict[str, Any] = {
        "click_model_greedy": ClickModelGreedy(cfg.slate_size),
        "random": RandomSlate(cfg.slate_size, seed=cfg.seed),
        "non_myopic_rule": NonMyopicRule(cfg.slate_size, penalty=5.0),
    }
    return {
        n: evaluate_policy_in_sim(sim, p, episodes=cfg.episodes, config=shop, seed=cfg.seed + 1)
        for n, p in pols.items()
    }


def budget_curve(
    sim_dir: Path,
    out: Path,
    cfg: AgentsConfig,
    *,
    ppo_budgets: tuple[int, ...] = (15_000, 30_000, 60_000, 120_000, 240_000),
    dqn_budgets: tuple[int, ...] = (15_000, 30_000, 60_000, 120_000),
) -> dict[str, Any]:
    """PPO and SlateQ vs the greedy ranker at each training budget; writes ``budget.json``."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator.load(sim_dir)
    shop = eval_config(cfg)
    refs = _references(sim, cfg)

    def evaluate(model: Any) -> EpisodeResults:
        return evaluate_policy_in_sim(sim, model, episodes=cfg.episodes, config=shop, seed=cfg.seed + 1)

    curves: dict[str, dict[str, Any]] = {}
    for name, budgets, trainer in (("ppo", ppo_budgets, train_ppo), ("dqn", dqn_budgets, train_dqn)):
        if not budgets:
            continue
        cb = _EvalAt(list(budgets), evaluate)
        steps = {"ppo": "ppo_steps", "dqn": "dqn_steps"}[name]
        _, secs = trainer(sim, replace(cfg, **{steps: max(budgets)}), out, callback=cb)
        g, rnd = refs["click_model_greedy"], refs["random"]
        curves[name] = {str(b): _row(r, g, rnd, cfg.seed) for b, r in cb.results.items()}
        curves[name]["train_seconds"] = round(secs, 1)
    report = {
        "config": cfg.__dict__,
        "references": {
            n: _row(r, refs["click_model_greedy"], refs["random"], cfg.seed) for n, r in refs.items()
        },
        "curves": curves,
    }
    (out / "budget.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "budget.md").write_text(_budget_md(report) + "\n")
    _plot_budget(report, out / "budget.png")
    return report


def whatif_sweep(
    sim_dir: Path,
    out: Path,
    cfg: AgentsConfig,
    *,
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0),
    dynamics: tuple[str, ...] = ("fatigue", "exposure_intent"),
) -> dict[str, Any]:
    """RL vs greedy in each what-if world (plus the measured world, strength 0); ``whatif.json``."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator.load(sim_dir)
    worlds = [("measured", 0.0)] + [(d, s) for d in dynamics for s in strengths]
    rows = []
    for dyn, strength in worlds:
        wcfg = replace(cfg)
        if dyn != "measured":
            setattr(wcfg, dyn, strength)
        refs = _references(sim, wcfg)
        shop = eval_config(wcfg)
        entry: dict[str, Any] = {"dynamics": dyn, "strength": strength, "policies": {}}
        for n, r in refs.items():
            entry["policies"][n] = _row(r, refs["click_model_greedy"], refs["random"], cfg.seed)
        wdir = out / f"{dyn}_{strength:g}"
        for name, trainer in (("ppo", train_ppo), ("dqn", train_dqn)):
            if (name == "ppo" and not cfg.ppo_steps) or (name == "dqn" and not cfg.dqn_steps):
                continue
            model, _ = trainer(sim, wcfg, wdir)
            res = evaluate_policy_in_sim(sim, model, episodes=cfg.episodes, config=shop, seed=cfg.seed + 1)
            entry["policies"][name] = _row(res, refs["click_model_greedy"], refs["random"], cfg.seed)
        rows.append(entry)
        report = {"config": cfg.__dict__, "worlds": rows}
        (out / "whatif.json").write_text(json.dumps(report, indent=2) + "\n")  # partial results survive
    (out / "whatif.md").write_text(_whatif_md(report) + "\n")
    _plot_whatif(report, out / "whatif.png")
    return report


def _ci(d: dict[str, Any]) -> str:
    return f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def _budget_md(report: dict[str, Any]) -> str:
    ref = report["references"]
    lines = [
        f"Return of the click-model greedy ranker: {ref['click_model_greedy']['return_mean']:.3f}; "
        f"random: {ref['random']['return_mean']:.3f}; non-myopic rule: "
        f"{ref['non_myopic_rule']['return_mean']:.3f} "
        f"(Δ vs greedy {_ci(ref['non_myopic_rule']['minus_click_model_greedy'])}). "
        f"{report['config']['episodes']:,} test sessions, paired.",
        "",
        "| agent | env steps | return [95% CI] | Δ vs greedy [95% CI] | Δ vs random |",
        "|---|---|---|---|---|",
    ]
    for name, curve in report["curves"].items():
        for b, r in curve.items():
            if b == "train_seconds":
                continue
            lines.append(
                f"| {name} | {int(b):,} "
                f"| {r['return_mean']:.3f} [{r['return_ci95'][0]:.3f}, {r['return_ci95'][1]:.3f}] "
                f"| {_ci(r['minus_click_model_greedy'])} | {_ci(r['minus_random'])} |"
            )
    return "\n".join(lines)


def _whatif_md(report: dict[str, Any]) -> str:
    lines = [
        "What-if worlds (ASSUMED dynamics, not measured from the logs). Δ = paired difference to "
        "the click-model greedy ranker of the same world (which knows the what-if click terms: it "
        "is that world's myopic optimum).",
        "",
        "| world | strength | greedy return | Δ ppo | Δ dqn | Δ non-myopic rule |",
        "|---|---|---|---|---|---|",
    ]
    for w in report["worlds"]:
        p = w["policies"]

        def cell(n: str, p: dict[str, Any] = p) -> str:
            return _ci(p[n]["minus_click_model_greedy"]) if n in p else "—"

        lines.append(
            f"| {w['dynamics']} | {w['strength']:g} | {p['click_model_greedy']['return_mean']:.3f} "
            f"| {cell('ppo')} | {cell('dqn')} | {cell('non_myopic_rule')} |"
        )
    return "\n".join(lines)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_budget(report: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, curve in report["curves"].items():
        pts = sorted((int(b), r) for b, r in curve.items() if b != "train_seconds")
        x = np.array([b for b, _ in pts])
        d = np.array([r["minus_click_model_greedy"]["diff"] for _, r in pts])
        lo = np.array([r["minus_click_model_greedy"]["ci95"][0] for _, r in pts])
        hi = np.array([r["minus_click_model_greedy"]["ci95"][1] for _, r in pts])
        ax.errorbar(x, d, yerr=[d - lo, hi - d], marker="o", capsize=3, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training env steps")
    ax.set_ylabel("Δ return vs click_model_greedy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_whatif(report: dict[str, Any], path: Path) -> None:
    plt = _plt()
    dyns = sorted({w["dynamics"] for w in report["worlds"]} - {"measured"})
    fig, axes = plt.subplots(1, max(len(dyns), 1), figsize=(5 * max(len(dyns), 1), 3.6), squeeze=False)
    base = next((w for w in report["worlds"] if w["dynamics"] == "measured"), None)
    for ax, dyn in zip(axes[0], dyns, strict=False):
        ws = ([base] if base else []) + [w for w in report["worlds"] if w["dynamics"] == dyn]
        for name in ("ppo", "dqn", "non_myopic_rule"):
            pts = [
                (w["strength"], w["policies"][name]["minus_click_model_greedy"])
                for w in ws
                if name in w["policies"]
            ]
            if not pts:
                continue
            x = np.array([s for s, _ in pts])
            d = np.array([p["diff"] for _, p in pts])
            lo = np.array([p["ci95"][0] for _, p in pts])
            hi = np.array([p["ci95"][1] for _, p in pts])
            ax.errorbar(x, d, yerr=[d - lo, hi - d], marker="o", capsize=3, label=name)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(f"{dyn} strength (assumed)")
        ax.set_ylabel("Δ return vs greedy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
