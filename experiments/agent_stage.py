"""The agents stage of ``shopsim run``: train the RL agents and evaluate every policy.

:func:`train_policies` trains PPO and SlateQ on the training shop and returns them beside the
built baselines; :func:`evaluate_policies` plays every policy on the same test sessions.

Both resume a killed run: training checkpoints and reuses finished models under a key of
everything it depends on (:func:`agent_key`, see :mod:`shopsim.agents.training`), and each
finished policy's per-episode results are kept in ``out/evaluation/SPLIT/POLICY.npz`` (keyed
likewise, plus the evaluation settings), so a restarted run evaluates only the rest. Each
evaluation seeds torch's and numpy's global generators itself (and restores them after), so a
policy's results do not depend on what ran before it in the process — a reused model, a
cached result and a fresh one agree.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from shopsim import __version__
from shopsim.agents.checkpoints import training_key
from shopsim.agents.registry import PolicyContext, build_policies
from shopsim.agents.training import train_agent, training_env
from shopsim.artifacts import atomic_file, boundary
from shopsim.envs.engine import SessionStarts
from shopsim.envs.model.simulator import Simulator
from shopsim.evaluation.in_simulator import EpisodeResults, StepObserver, evaluate_policy_in_sim
from shopsim.experiments.config import RunConfig

Echo = Callable[[str], None]
RL_AGENTS = ("ppo", "dqn")


def agent_key(cfg: RunConfig, sim: Simulator, name: str) -> str | None:
    """The key of training RL agent ``name`` under ``cfg`` (None when the reward's source
    cannot be read: then nothing is resumed or reused)."""
    reward = cfg.reward_key()
    if reward is None:
        return None
    resolved = cfg.resolved()
    a = cfg.agents
    return training_key(
        {
            "agent": name,
            "config": asdict(a.ppo if name == "ppo" else a.dqn),
            "n_envs": a.n_envs,
            "seed": cfg.seed,
            "shop": resolved["shop"],
            "reward": reward,
            "simulator": sim.meta.get("inputs"),
        }
    )


def train_policies(
    cfg: RunConfig,
    sim: Simulator,
    ctx: PolicyContext,
    names: list[str],
    out: Path,
    *,
    echo: Echo = print,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Every selected policy, ready to play: the baselines built, PPO and SlateQ trained on the
    train split (saved under ``out/models``; resumed from ``out/checkpoints``, or reused when
    finished). Returns (policies by name, seconds by step)."""
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    policies: dict[str, Any] = build_policies(names, ctx)
    timing["build_policies"] = time.perf_counter() - t0
    reward = cfg.reward_fn()
    a = cfg.agents
    for name, steps in (("ppo", a.ppo.steps), ("dqn", a.dqn.steps)):
        if name in names and steps:
            env = training_env(sim, cfg.shop_for("train"), a.n_envs, cfg.seed, reward)
            policies[name], timing[f"train_{name}"] = train_agent(
                name, env, a.ppo, a.dqn, out, seed=cfg.seed, key=agent_key(cfg, sim, name), echo=echo
            )
    return policies, timing


def evaluate_policies(
    cfg: RunConfig,
    sim: Simulator,
    policies: dict[str, Any],
    *,
    split: str = "test",
    episodes: int | None = None,
    out: Path | None = None,
    echo: Echo = print,
) -> dict[str, EpisodeResults]:
    """Every policy on the same sessions of ``split`` and engine seed (plus PPO's sampled slates).

    With ``out``, each policy's results are cached in ``out/evaluation/SPLIT/NAME.npz`` and a
    cached result with the same key is loaded instead of evaluated again."""
    n = cfg.evaluation.episodes if episodes is None else episodes
    jobs = [(name, pol, True) for name, pol in policies.items()]
    if "ppo" in policies and split == "test":
        jobs.append(("ppo_sampled", policies["ppo"], False))
    results: dict[str, EpisodeResults] = {}
    reused: list[str] = []
    starts: SessionStarts | None = None
    for name, pol, deterministic in tqdm(jobs, desc=f"evaluating policies ({split})", unit="policy"):
        key = _eval_key(cfg, sim, name, split, n, deterministic)
        path = None if out is None or key is None else out / "evaluation" / split / f"{name}.npz"
        cached = None if path is None or key is None else _load_results(path, key, n, echo)
        if cached is not None:
            results[name] = cached
            reused.append(name)
            continue
        if starts is None:  # the sessions' starts, computed once for every policy
            starts = SessionStarts(sim, cfg.shop_for(split))
        results[name] = evaluate_one(cfg, sim, pol, split, n, deterministic, starts)
        if path is not None and key is not None:
            _save_results(path, key, results[name])
            boundary("evaluate:policy-done")
    if reused:
        echo(f"evaluation ({split}): reused the results of {', '.join(reused)} ({out}/evaluation/{split})")
    return results


def evaluate_one(
    cfg: RunConfig,
    sim: Simulator,
    pol: Any,
    split: str,
    n: int,
    deterministic: bool,
    starts: SessionStarts | None = None,
    observer: StepObserver | None = None,
) -> EpisodeResults:
    """One policy on ``n`` episodes of ``split`` exactly as the run evaluates it (engine seed
    ``seed + 1``, numpy and torch global generators seeded and restored); ``observer`` sees
    every step (``shopsim explain`` replays an episode through it)."""
    # sampled slates (PPO) draw from torch's global generator: seeded here, so the result does
    # not depend on what ran before (training, or nothing when the model was reused)
    np_state = np.random.get_state()  # noqa: NPY002 - restored below
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        np.random.seed(cfg.seed + 1)  # noqa: NPY002 - baselines must not depend on the history
        try:
            return evaluate_policy_in_sim(
                sim,
                pol,
                episodes=n,
                config=cfg.shop_for(split),
                reward=cfg.reward_fn(),
                seed=cfg.seed + 1,
                deterministic=deterministic,
                starts=starts,
                observer=observer,
            )
        finally:
            np.random.set_state(np_state)  # noqa: NPY002


def _eval_key(
    cfg: RunConfig, sim: Simulator, name: str, split: str, n: int, deterministic: bool
) -> str | None:
    reward = cfg.reward_key()
    if reward is None:
        return None
    resolved = cfg.resolved()
    base = name.removesuffix("_sampled")
    parts = {
        "policy": name,
        "split": split,
        "episodes": n,
        "deterministic": deterministic,
        "seed": cfg.seed,
        "shop": resolved["shop"],
        "evaluation": resolved["evaluation"],
        "agents": {k: v for k, v in resolved["agents"].items() if k != "policies"},
        "model": agent_key(cfg, sim, base) if base in RL_AGENTS else None,
        "reward": reward,
        "simulator": sim.meta.get("inputs"),
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _save_results(path: Path, key: str, res: EpisodeResults) -> None:
    arrays = {f.name: np.asarray(getattr(res, f.name)) for f in fields(EpisodeResults)}
    with atomic_file(path) as fh:
        np.savez(fh, allow_pickle=False, key=np.array(key), **arrays)


def _load_results(path: Path, key: str, n: int, echo: Echo) -> EpisodeResults | None:
    """The cached results at ``path`` when intact (zip CRCs), of this key and complete."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None  # another config or model: evaluated again and replaced
            got = {f.name: np.array(z[f.name]) for f in fields(EpisodeResults)}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        echo(f"note: {path} cannot be read ({type(exc).__name__}); evaluating again")
        return None
    if any(len(v) != n for v in got.values()):
        return None
    return EpisodeResults(**got)
