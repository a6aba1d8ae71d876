"""``shopsim explain RUN``: why each item is in the slates of one evaluated session of a run.

Loads the run's resolved config, simulator, prepared log and trained agents, rebuilds every
policy as the run built it, replays one test episode through the run's own evaluation call
(:func:`~shopsim.experiments.agent_stage.evaluate_one`, so the explained slates are the
evaluated ones) and explains every shown item (:func:`shopsim.evaluation.explain.session.explain_episode`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.agents.registry import REGISTRY, PolicyContext, build_policies
from shopsim.agents.saving import load_agent
from shopsim.data import SessionLog
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import WeightedReward
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError
from shopsim.evaluation.explain import session as explain_session
from shopsim.evaluation.explain.policy_view import input_baseline
from shopsim.evaluation.explain.replay import replay
from shopsim.experiments.agent_stage import evaluate_one
from shopsim.experiments.config import load_config

BASELINE_STARTS = 256
"""Train-split session starts whose candidates average into a learned policy's baseline input."""


def load_run_policies(run: Path, names: list[str] | None = None) -> tuple[Any, Simulator, dict[str, Any]]:
    """The run's config, simulator and its evaluated policies (``names``: a subset)."""
    results_path = run / "results.json"
    if not results_path.is_file():
        raise ShopsimError(f"{run}: no results.json; finish the run first (shopsim run CONFIG --out {run})")
    results = json.loads(results_path.read_text())
    cfg = load_config(run / "config.yaml")
    sim = Simulator.load(run / "simulator")
    in_run = [n for n in results.get("policies", {}) if n in REGISTRY]
    unknown = [n for n in names or [] if n not in in_run]
    if unknown:
        raise ShopsimError(f"--policy {unknown[0]}: not a policy of this run; use one of {', '.join(in_run)}")
    chosen = names or in_run
    log = SessionLog.load(run / "data") if (run / "data").is_dir() else None
    ctx = PolicyContext(cfg.shop.slate_size, seed=cfg.seed, log=log)
    pols: dict[str, Any] = dict(build_policies([n for n in chosen if REGISTRY[n].kind != "rl"], ctx))
    for n in chosen:
        if REGISTRY[n].kind == "rl":
            pols[n] = load_agent(run / "models" / f"{n}.zip")
    return cfg, sim, {n: pols[n] for n in chosen if n in pols}


def explain_run(
    run: Path, *, policies: list[str] | None = None, episode: int | None = None, seed: int = 0, top: int = 5
) -> dict[str, Any]:
    """The explanation of one test episode of ``run`` (``episode``, or one drawn with ``seed``)."""
    cfg, sim, pols = load_run_policies(run, policies)
    n = cfg.evaluation.episodes
    if episode is None:
        episode = int(np.random.default_rng(seed).integers(n))
    shop = cfg.shop_for("test")
    base_env = ShopperVecEnv(sim, BASELINE_STARTS, cfg.shop_for("train"), seed=cfg.seed)
    base_env.reset()
    starts_obs = [{k: v[i] for k, v in base_env.core.observe().items()} for i in range(BASELINE_STARTS)]
    baselines = {name: input_baseline(p, starts_obs) for name, p in pols.items() if hasattr(p, "policy")}
    fn = cfg.reward_fn()
    # SlateQ's immediate value is priced with the run's weights; a custom reward callable: clicks
    reward = fn if isinstance(fn, WeightedReward) else WeightedReward()

    def play(pol: Any) -> Any:  # the run's own evaluation call, with the replay's observer
        return lambda k, obs: evaluate_one(cfg, sim, pol, "test", k, True, observer=obs)

    doc = explain_session.explain_episode(
        sim,
        pols,
        episode,
        episodes=n,
        config=shop,
        seed=cfg.seed + 1,
        reward=reward,
        baselines=baselines,
        top=top,
        replay_fn=lambda _name, pol: replay(play(pol), episode, episodes=n),
    )
    doc["run"] = str(run)
    for name, entry in doc["policies"].items():  # what the run's own evaluation recorded for it
        npz = run / "evaluation" / "test" / f"{name}.npz"
        if npz.is_file():
            with np.load(npz) as z:
                entry["evaluated"] = {
                    "return": float(z["returns"][episode]),
                    "steps": int(z["steps"][episode]),
                    "clicks": float(z["clicks"][episode]),
                }
    return doc


def _fmt_item(item: dict[str, Any]) -> list[str]:
    r = item["reasons"]
    why = []
    if r["nearest_history"]:
        n = r["nearest_history"][0]
        why.append(f"similar to history item {n['item']} (cosine {n['similarity']:.2f})")
    if r["same_category"]:
        why.append(f"same category as {r['same_category']} history item(s)")
    if r["price_band"] is not None and r["same_price_band"]:
        why.append(f"price band {r['price_band'] + 1}/5 like {r['same_price_band']} history item(s)")
    for t in r["together"][:2]:
        why.append(f"{t['table']} with history item {t['item']}: {t['count']}× (lift {t['lift']:.1f})")
    sh = item["shopper"]
    top = ", ".join(
        f"{c['feature']}{' [simulator-only]' if c['simulator_only'] else ''} {c['contribution']:+.2f}"
        for c in sh["contributions"][:3]
    )
    lines = [
        f"  {item['slot'] + 1}. item {item['item']} (category {item['category']}) — "
        + ("; ".join(why) or "no shop evidence beyond the model"),
        f"     shopper model: P(click) {sh['p_click']:.3f}; logit {sh['logit']:+.2f} vs mean "
        f"{sh['baseline_logit']:+.2f}: {top}",
    ]
    for head, v in item.get("policy", {}).items():
        parts = ", ".join(f"{c['input']} {c['contribution']:+.2f}" for c in v["contributions"][:3])
        lines.append(f"     policy {head}: {v['value']:+.2f} vs mean {v['baseline']:+.2f}: {parts}")
    if "value_split" in item:
        vs = item["value_split"]
        lines.append(
            f"     SlateQ value {vs['item_value']:+.2f} = immediate {vs['immediate']:+.2f} "
            f"+ long-term {vs['long_term']:+.2f}"
        )
    return lines


def explain_text(doc: dict[str, Any]) -> str:
    """The terminal form of an explanation."""
    out = [f"test episode {doc['episode']} of {doc['episodes']} ({doc['run']})"]
    for name, entry in doc["policies"].items():
        ev = entry.get("evaluated")
        tail = f" — the run's evaluation: return {ev['return']:g} in {ev['steps']} page(s)" if ev else ""
        out.append(f"\n{name}{tail}")
        for st in entry["steps"]:
            hist = ", ".join(st["history"][:5]) or "none"
            out.append(f" page {st['step'] + 1} (history, most recent first: {hist})")
            for item in st["slate"]:
                out.extend(_fmt_item(item))
    return "\n".join(out)
