"""``shopsim explain RUN``: why each item is in the slates of one evaluated session of a run.

Loads the run's resolved config, simulator, prepared log and trained agents, rebuilds every
policy as the run built it, replays one test episode through the run's own evaluation call
(:func:`~shopsim.experiments.agent_stage.evaluate_one`, so the explained slates are the
evaluated ones) and explains every shown item (:func:`shopsim.evaluation.explain.session.explain_episode`).
"""

from __future__ import annotations

import json
from functools import partial
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
from shopsim.evaluation.explain.replay import Play, ReplayedStep, replay_many
from shopsim.evaluation.in_simulator import evaluated_episodes
from shopsim.experiments.agent_stage import evaluate_one
from shopsim.experiments.config import load_config

BASELINE_STARTS = 256
"""Train-split session starts whose candidates average into a learned policy's baseline input."""


def run_stage_dirs(run: Path) -> dict[str, Path]:
    """Where a finished run's prepared log, encoder and simulator are: its own ``data/``,
    ``encoder/`` and ``simulator/``, or the shared stages a sweep built for it (``shared.json``)."""
    shared = run / SHARED_FILE
    if shared.is_file():
        stored = json.loads(shared.read_text())
        return {k: (run / stored[k]).resolve() for k in ("data", "encoder", "simulator")}
    return {k: run / k for k in ("data", "encoder", "simulator")}


SHARED_FILE = "shared.json"
"""A run folder's record of the shared stages it read (written by a sweep's trials)."""


def load_run_policies(run: Path, names: list[str] | None = None) -> tuple[Any, Simulator, dict[str, Any]]:
    """The run's config, simulator and its evaluated policies (``names``: a subset), each built
    afresh as the run built it (stateful policies such as ``random`` start from their seed)."""
    results_path = run / "results.json"
    if not results_path.is_file():
        raise ShopsimError(f"{run}: no results.json; finish the run first (shopsim run CONFIG --out {run})")
    results = json.loads(results_path.read_text())
    cfg = load_config(run / "config.yaml")
    dirs = run_stage_dirs(run)
    sim = Simulator.load(dirs["simulator"])
    in_run = [n for n in results.get("policies", {}) if n in REGISTRY]
    unknown = [n for n in names or [] if n not in in_run]
    if unknown:
        raise ShopsimError(f"--policy {unknown[0]}: not a policy of this run; use one of {', '.join(in_run)}")
    chosen = names or in_run
    log = SessionLog.load(dirs["data"]) if dirs["data"].is_dir() else None
    ctx = PolicyContext(cfg.shop.slate_size, seed=cfg.seed, log=log)
    pols: dict[str, Any] = dict(build_policies([n for n in chosen if REGISTRY[n].kind != "rl"], ctx))
    for n in chosen:
        if REGISTRY[n].kind == "rl":
            pols[n] = load_agent(run / "models" / f"{n}.zip")
    return cfg, sim, {n: pols[n] for n in chosen if n in pols}


class RunExplainer:
    """Explanations of a finished run's test episodes (:meth:`explain`), the run loaded once.

    :param policies: the policies to explain (default: every registered policy of the run).
    """

    def __init__(self, run: Path, policies: list[str] | None = None) -> None:
        self.run, self.names = run, policies
        self.cfg, self.sim, pols = load_run_policies(run, policies)
        self.policy_names = list(pols)
        self.episodes = self.cfg.evaluation.episodes
        self.seed = self.cfg.seed + 1  # the run's evaluation engine seed (evaluate_one)
        test = self.sim.episodes["test"]
        picks = evaluated_episodes(self.sim, "test", self.episodes, self.seed)
        self.sessions = np.asarray(test.session_ids)[picks]
        """The logged session id of every evaluated test episode."""
        base_env = ShopperVecEnv(self.sim, BASELINE_STARTS, self.cfg.shop_for("train"), seed=self.cfg.seed)
        base_env.reset()
        starts = [{k: v[i] for k, v in base_env.core.observe().items()} for i in range(BASELINE_STARTS)]
        self.baselines = {n: input_baseline(p, starts) for n, p in pols.items() if hasattr(p, "policy")}

    def episode_of(self, session: str) -> int:
        """The first evaluated test episode that replays logged session ``session``."""
        hit = np.flatnonzero(self.sessions == session)
        if len(hit):
            return int(hit[0])
        examples = ", ".join(dict.fromkeys(self.sessions[:3].tolist()))
        for split, eps in self.sim.episodes.items():
            if session in set(np.asarray(eps.session_ids).tolist()):
                if split == "test":
                    raise ShopsimError(
                        f"--session {session}: a test session, but not one of the {self.episodes:,} the "
                        f"run evaluated (drawn with its seed); use an evaluated one (e.g. {examples}) "
                        "or --episode N"
                    )
                raise ShopsimError(
                    f"--session {session}: a {split} session; explain replays the run's evaluated test "
                    f"sessions (e.g. {examples})"
                )
        raise ShopsimError(
            f"--session {session}: no session with this id in the run's log; use a logged test session "
            f"id (e.g. {examples}) or --episode N"
        )

    def explain(self, episodes: list[int], *, top: int = 5, pages: int | None = None) -> list[dict[str, Any]]:
        """The explanation of each of ``episodes`` (one replay per policy serves them all);
        ``pages``: explain only each policy's first pages of each."""
        _, _, pols = load_run_policies(self.run, self.names)  # fresh: a replay consumes their state
        cfg, sim, n = self.cfg, self.sim, self.episodes
        fn = cfg.reward_fn()
        # SlateQ's immediate value is priced with the run's weights; a custom reward callable: clicks
        reward = fn if isinstance(fn, WeightedReward) else WeightedReward()

        def play(pol: Any) -> Play:  # the run's own evaluation call, with the replay's observer
            return lambda k, obs: evaluate_one(cfg, sim, pol, "test", k, True, observer=obs)

        replays = {name: replay_many(play(pol), episodes, episodes=n) for name, pol in pols.items()}
        docs = []
        for ep in episodes:
            doc = explain_session.explain_episode(
                sim,
                pols,
                ep,
                episodes=n,
                config=cfg.shop_for("test"),
                seed=self.seed,
                reward=reward,
                baselines=self.baselines,
                top=top,
                replay_fn=partial(_replayed, replays, ep),
                pages=pages,
            )
            doc["run"] = str(self.run)
            doc["session"] = str(self.sessions[ep])
            for name, entry in doc["policies"].items():  # what the run's own evaluation recorded for it
                npz = self.run / "evaluation" / "test" / f"{name}.npz"
                if npz.is_file():
                    with np.load(npz) as z:
                        entry["evaluated"] = {
                            "return": float(z["returns"][ep]),
                            "steps": int(z["steps"][ep]),
                            "clicks": float(z["clicks"][ep]),
                        }
            docs.append(doc)
        return docs


def _replayed(
    replays: dict[str, dict[int, list[ReplayedStep]]], episode: int, name: str, _policy: Any
) -> list[ReplayedStep]:
    return replays[name][episode]


def explain_run(
    run: Path,
    *,
    policies: list[str] | None = None,
    episode: int | None = None,
    session: str | None = None,
    seed: int = 0,
    top: int = 5,
) -> dict[str, Any]:
    """The explanation of one test episode of ``run``: ``episode``, the first evaluated episode
    of logged session ``session``, or one drawn with ``seed``."""
    ex = RunExplainer(run, policies)
    if session is not None:
        episode = ex.episode_of(session)
    elif episode is None:
        episode = int(np.random.default_rng(seed).integers(ex.episodes))
    return ex.explain([episode], top=top)[0]


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
        f"  {item['slot'] + 1}. item {item['item']} (category {item['category']}; greedy rank "
        f"{item['greedy_rank'] or '—'}) — " + ("; ".join(why) or "no shop evidence beyond the model"),
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
    out = [
        f"test episode {doc['episode']} of {doc['episodes']} (logged session {doc.get('session', '?')}; "
        f"{doc['run']})"
    ]
    for name, entry in doc["policies"].items():
        ev = entry.get("evaluated")
        tail = f" — the run's evaluation: return {ev['return']:g} in {ev['steps']} page(s)" if ev else ""
        out.append(f"\n{name}{tail}")
        for st in entry["steps"]:
            hist = ", ".join(st["history"][:5]) or "none"
            g = st["greedy"]
            out.append(
                f" page {st['step'] + 1} (history, most recent first: {hist}); {g['shared']} of "
                f"{len(st['slate'])} also in click_model_greedy's slate"
            )
            for item in st["slate"]:
                out.extend(_fmt_item(item))
    return "\n".join(out)
