"""Train the RL agents, evaluate every policy on the same logged sessions, write the results.

``results.json`` follows DESIGN.md's schema; ``results.md`` is the table people read; the
plot shows each policy's session return with its 95% interval. Every policy plays the same
test sessions with the same engine seed (:mod:`shopsim.evaluation.in_simulator`), and differences
to the click-model greedy ranker and to random are paired.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from tqdm.auto import tqdm

from shopsim.agents.baselines.next_item import ALS, BPR, CoOccurrence, ItemKNN, Popularity
from shopsim.agents.baselines.slates import (
    ClickModelGreedy,
    CooccurrenceSlate,
    HistoryScorerSlate,
    NonMyopicRule,
    PopularitySlate,
    RandomSlate,
    TwoTowerSlate,
)
from shopsim.agents.ppo import SlatePointerPolicy
from shopsim.agents.slateq import SlateQ, SlateQPolicy
from shopsim.data import SessionLog
from shopsim.data.next_item import NextItemTask, evaluate_scorer
from shopsim.envs.engine import ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError
from shopsim.evaluation.in_simulator import EpisodeResults, evaluate_policy_in_sim, paired_difference
from shopsim.evaluation.next_item import summarize


@dataclass
class AgentsConfig:
    """Budgets and settings of the agents stage.

    :param ppo_steps: PPO environment steps (the quickstart's small budget).
    :param dqn_steps: SlateQ (``dqn``) environment steps.
    :param n_envs: shoppers simulated in parallel during training.
    :param episodes: test sessions every policy plays in the evaluation.
    :param slate_size: k. :param n_candidates: N.
    :param seed: drives training, the evaluation's sessions and the engine.
    :param fatigue, exposure_intent: what-if assumptions of the simulated world (default off;
        see :class:`~shopsim.envs.engine.ShopperConfig`).
    """

    ppo_steps: int = 60_000
    dqn_steps: int = 60_000
    n_envs: int = 32
    episodes: int = 3000
    slate_size: int = 10
    n_candidates: int = 100
    seed: int = 0
    fatigue: float = 0.0
    exposure_intent: float = 0.0

    def __post_init__(self) -> None:
        if self.ppo_steps < 0 or self.dqn_steps < 0 or self.episodes < 1 or self.n_envs < 1:
            raise ShopsimError("ppo_steps ≥ 0, dqn_steps ≥ 0, episodes ≥ 1 and n_envs ≥ 1 are required")


class _Progress(BaseCallback):
    """A tqdm bar over environment steps (SB3's own needs `rich`)."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.bar = tqdm(total=total, desc=desc, unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def _train_env(sim: Simulator, cfg: AgentsConfig) -> ShopperVecEnv:
    return ShopperVecEnv(
        sim,
        cfg.n_envs,
        slate_size=cfg.slate_size,
        n_candidates=cfg.n_candidates,
        seed=cfg.seed,
        fatigue=cfg.fatigue,
        exposure_intent=cfg.exposure_intent,
    )


def eval_config(cfg: AgentsConfig) -> ShopperConfig:
    """The shop every policy is evaluated in: the test split's sessions, same world as training."""
    return ShopperConfig(
        slate_size=cfg.slate_size,
        n_candidates=cfg.n_candidates,
        split="test",
        fatigue=cfg.fatigue,
        exposure_intent=cfg.exposure_intent,
    )


def train_ppo(
    sim: Simulator, cfg: AgentsConfig, out: Path, callback: BaseCallback | None = None
) -> tuple[PPO, float]:
    """PPO with the pointer policy; saves ``out/models/ppo.zip``; returns (model, seconds)."""
    env = _train_env(sim, cfg)
    model = PPO(
        SlatePointerPolicy,  # type: ignore[arg-type]
        env,
        n_steps=128,
        batch_size=512,
        learning_rate=3e-4,
        seed=cfg.seed,
        verbose=0,
        tensorboard_log=str(out / "tensorboard"),
    )
    t0 = time.perf_counter()
    cbs = CallbackList([_Progress(cfg.ppo_steps, "PPO"), *([callback] if callback else [])])
    model.learn(cfg.ppo_steps, callback=cbs, tb_log_name="ppo")
    secs = time.perf_counter() - t0
    (out / "models").mkdir(parents=True, exist_ok=True)
    model.save(out / "models" / "ppo.zip")
    return model, secs


def train_dqn(
    sim: Simulator, cfg: AgentsConfig, out: Path, callback: BaseCallback | None = None
) -> tuple[SlateQ, float]:
    """SlateQ (the ``dqn`` policy) with :class:`~shopsim.agents.slateq.SlateQ`'s defaults;
    saves ``out/models/dqn.zip``; returns (model, seconds)."""
    env = _train_env(sim, cfg)
    model = SlateQ(SlateQPolicy, env, seed=cfg.seed, tensorboard_log=str(out / "tensorboard"))
    t0 = time.perf_counter()
    cbs = CallbackList([_Progress(cfg.dqn_steps, "SlateQ"), *([callback] if callback else [])])
    model.learn(cfg.dqn_steps, callback=cbs, tb_log_name="dqn")
    secs = time.perf_counter() - t0
    (out / "models").mkdir(parents=True, exist_ok=True)
    model.save(out / "models" / "dqn.zip")
    return model, secs


def run_agents(
    data_dir: Path, encoder_dir: Path, sim_dir: Path, out: Path, cfg: AgentsConfig
) -> dict[str, Any]:
    """Train PPO, evaluate every policy, write results.json, results.md and plots/returns.png."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator.load(sim_dir)
    log = SessionLog.load(data_dir)
    timing: dict[str, float] = {}
    k = cfg.slate_size
    scorers: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name, sc in (
        ("popularity", Popularity()),
        ("cooccurrence", CoOccurrence()),
        ("itemknn", ItemKNN()),
        ("als", ALS(seed=cfg.seed)),
        ("bpr", BPR(seed=cfg.seed)),
    ):
        scorers[name] = sc.fit(log)
    timing["fit_baselines"] = time.perf_counter() - t0
    policies: dict[str, Any] = {
        "random": RandomSlate(k, seed=cfg.seed),
        "popularity": PopularitySlate(k),
        "cooccurrence": CooccurrenceSlate(k),
        "itemknn": HistoryScorerSlate(k, scorers["itemknn"], name="itemknn"),
        "als": HistoryScorerSlate(k, scorers["als"], name="als"),
        "bpr": HistoryScorerSlate(k, scorers["bpr"], name="bpr"),
        "bert_two_tower": TwoTowerSlate(k),
        "click_model_greedy": ClickModelGreedy(k),
        "click_model_oracle": ClickModelGreedy(k, use_intent=True),
        "non_myopic_rule": NonMyopicRule(k, penalty=5.0),
    }
    kinds = {
        "random": "heuristic",
        "popularity": "heuristic",
        "cooccurrence": "cf",
        "itemknn": "cf",
        "als": "cf",
        "bpr": "cf",
        "bert_two_tower": "supervised",
        "click_model_greedy": "heuristic",
        "click_model_oracle": "heuristic",
        "non_myopic_rule": "heuristic",
        "ppo": "rl",
        "dqn": "rl",
    }
    if cfg.ppo_steps:
        ppo, secs = train_ppo(sim, cfg, out)
        timing["train_ppo"] = secs
        policies["ppo"] = ppo
    if cfg.dqn_steps:
        dqn, secs = train_dqn(sim, cfg, out)
        timing["train_dqn"] = secs
        policies["dqn"] = dqn
    shop = eval_config(cfg)
    results: dict[str, EpisodeResults] = {}
    t0 = time.perf_counter()
    for name, pol in tqdm(policies.items(), desc="evaluating policies", unit="policy"):
        results[name] = evaluate_policy_in_sim(
            sim, pol, episodes=cfg.episodes, config=shop, seed=cfg.seed + 1
        )
    if "ppo" in policies:
        results["ppo_sampled"] = evaluate_policy_in_sim(
            sim, policies["ppo"], episodes=cfg.episodes, config=shop, seed=cfg.seed + 1, deterministic=False
        )
        kinds["ppo_sampled"] = "rl"
    timing["evaluate"] = time.perf_counter() - t0

    task = NextItemTask.from_log(log, "test")
    offline: dict[str, dict[str, float]] = {}
    n_items = len(log.items)
    # random: a constant score ties every item, and the expected-rank protocol then gives the
    # exact expected metrics of a uniformly random ranking
    offline_scorers = {"random": lambda hist: np.zeros((len(hist), n_items)), **scorers}
    for name, sc in offline_scorers.items():
        s = summarize(task, evaluate_scorer(task, sc), n_boot=200, seed=cfg.seed)["overall"]
        offline[name] = {"recall@10": s["recall@10"]["value"], "ndcg@10": s["ndcg@10"]["value"]}  # type: ignore[index]
    enc_eval = (
        json.loads((encoder_dir / "eval.json").read_text()) if (encoder_dir / "eval.json").exists() else {}
    )
    final = enc_eval.get("final_model", "two_tower_frozen")
    tt = enc_eval.get("models", {}).get(final, {}).get("overall")
    if tt:
        offline["bert_two_tower"] = {"recall@10": tt["recall@10"]["value"], "ndcg@10": tt["ndcg@10"]["value"]}

    base = results["click_model_greedy"]
    report: dict[str, Any] = {
        "dataset": sim.meta.get("format", "?"),
        "seed": cfg.seed,
        "config": asdict(cfg),
        "policies": {},
        "fidelity": json.loads((sim_dir / "fidelity.json").read_text())
        .get("click", {})
        .get("held_out", {})
        .get("auc", {}),
        "timing_s": {k2: round(v, 1) for k2, v in timing.items()},
    }
    for name, res in results.items():
        entry: dict[str, Any] = {"kind": kinds[name], "sim": res.summary(seed=cfg.seed)}
        entry["sim"]["minus_click_model_greedy"] = paired_difference(res, base, seed=cfg.seed)
        entry["sim"]["minus_random"] = paired_difference(res, results["random"], seed=cfg.seed)
        if name in offline:
            entry["offline"] = offline[name]
        report["policies"][name] = entry
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(report) + "\n")
    _plot(report, out / "plots" / "returns.png")
    return report


def results_markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"Policies on {cfg['episodes']:,} test sessions of the simulator (same sessions and seeds for all; "
        f"slate {cfg['slate_size']} of {cfg['n_candidates']} candidates; reward = clicks). "
        "Δ columns are paired differences with 95% bootstrap intervals.",
        "",
        "| policy | kind | return [95% CI] | Δ vs click_model_greedy | Δ vs random | CTR | purchase rate "
        "| offline R@10 | offline NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(report["policies"].items(), key=lambda kv: -kv[1]["sim"]["return_mean"])
    for name, e in order:
        s = e["sim"]
        g, r = s["minus_click_model_greedy"], s["minus_random"]
        off = e.get("offline", {})
        lines.append(
            f"| {name} | {e['kind']} "
            f"| {s['return_mean']:.3f} [{s['return_ci95'][0]:.3f}, {s['return_ci95'][1]:.3f}] "
            f"| {g['diff']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}] "
            f"| {r['diff']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] "
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


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _plot(report: dict[str, Any], path: Path) -> None:
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
    ax.set_xlabel("session return (clicks), 95% CI")
    ax.set_title("Policies in the simulator (same test sessions)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
