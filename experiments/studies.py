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
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from shopsim.agents.registry import PolicyContext, build_policies
from shopsim.agents.training import train_agent, training_env
from shopsim.artifacts import write_text_atomic
from shopsim.envs.model.simulator import Simulator
from shopsim.evaluation.in_simulator import EpisodeResults, evaluate_policy_in_sim, paired_difference
from shopsim.experiments.config import RunConfig

REFERENCES = ["click_model_greedy", "random", "non_myopic_rule"]
"""The registered policies every study compares the RL agents with."""


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


def _evaluate(sim: Simulator, policy: Any, cfg: RunConfig) -> EpisodeResults:
    """One policy on the config's test sessions (the runner's evaluation: same seed, same reward)."""
    return evaluate_policy_in_sim(
        sim,
        policy,
        episodes=cfg.evaluation.episodes,
        config=cfg.shop_for("test"),
        reward=cfg.reward_fn(),
        seed=cfg.seed + 1,
    )


def _references(sim: Simulator, cfg: RunConfig) -> dict[str, EpisodeResults]:
    pols = build_policies(REFERENCES, PolicyContext(cfg.shop.slate_size, seed=cfg.seed))
    return {n: _evaluate(sim, p, cfg) for n, p in pols.items()}


def _train(
    name: str, sim: Simulator, cfg: RunConfig, out: Path, steps: int | None = None, callback: Any = None
) -> Any:
    """Train ``ppo`` or ``dqn`` with the config's hyper-parameters (``steps`` overrides the budget)."""
    env = training_env(sim, cfg.shop_for("train"), cfg.agents.n_envs, cfg.seed, cfg.reward_fn())
    a = cfg.agents
    return train_agent(name, env, a.ppo, a.dqn, out, seed=cfg.seed, steps=steps, callback=callback)


def budget_curve(
    sim_dir: Path,
    out: Path,
    cfg: RunConfig,
    *,
    ppo_budgets: tuple[int, ...] = (15_000, 30_000, 60_000, 120_000, 240_000),
    dqn_budgets: tuple[int, ...] = (15_000, 30_000, 60_000, 120_000),
) -> dict[str, Any]:
    """PPO and SlateQ vs the greedy ranker at each training budget; writes ``budget.json``."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator.load(sim_dir)
    refs = _references(sim, cfg)
    curves: dict[str, dict[str, Any]] = {}
    for name, budgets in (("ppo", ppo_budgets), ("dqn", dqn_budgets)):
        if not budgets:
            continue
        cb = _EvalAt(list(budgets), lambda model: _evaluate(sim, model, cfg))
        _, secs = _train(name, sim, cfg, out, steps=max(budgets), callback=cb)
        g, rnd = refs["click_model_greedy"], refs["random"]
        curves[name] = {str(b): _row(r, g, rnd, cfg.seed) for b, r in cb.results.items()}
        curves[name]["train_seconds"] = round(secs, 1)
    report = {
        "config": cfg.resolved(),
        "references": {
            n: _row(r, refs["click_model_greedy"], refs["random"], cfg.seed) for n, r in refs.items()
        },
        "curves": curves,
    }
    write_text_atomic(out / "budget.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "budget.md", _budget_md(report) + "\n")
    _plot_budget(report, out / "budget.png")
    return report


def whatif_sweep(
    sim_dir: Path,
    out: Path,
    cfg: RunConfig,
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
        world = cfg.shop if dyn == "measured" else cfg.shop.with_overrides(**{dyn: strength})
        wcfg = cfg.model_copy(update={"shop": world})
        refs = _references(sim, wcfg)
        entry: dict[str, Any] = {"dynamics": dyn, "strength": strength, "policies": {}}
        for n, r in refs.items():
            entry["policies"][n] = _row(r, refs["click_model_greedy"], refs["random"], cfg.seed)
        wdir = out / f"{dyn}_{strength:g}"
        for name in ("ppo", "dqn"):
            if not (cfg.agents.ppo if name == "ppo" else cfg.agents.dqn).steps:
                continue
            model, _ = _train(name, sim, wcfg, wdir)
            res = _evaluate(sim, model, wcfg)
            entry["policies"][name] = _row(res, refs["click_model_greedy"], refs["random"], cfg.seed)
        rows.append(entry)
        report = {"config": cfg.resolved(), "worlds": rows}
        write_text_atomic(out / "whatif.json", json.dumps(report, indent=2) + "\n")  # partial results survive
    write_text_atomic(out / "whatif.md", _whatif_md(report) + "\n")
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
        f"{report['config']['evaluation']['episodes']:,} test sessions, paired.",
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
    from shopsim.plots import pyplot

    return pyplot()


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
