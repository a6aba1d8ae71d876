"""``shopsim ope validate``: off-policy estimates on simulator logs against on-policy truth.

Protocol (one seed drives everything; repeats use seeds ``seed + 1 …``):

1. **Behaviour.** A randomised A/B/n logger (:class:`~.logging_policy.MixtureSlate`): on every
   page, with probability ε a uniformly random valid slate, otherwise the slate of one of the K
   evaluated deterministic policies chosen uniformly. Its joint / prefix / marginal slate
   propensities are exact. (``behaviour=NAME`` logs ε-greedy around one policy instead: the
   other targets then fall outside its support for all practical purposes, which the ESS
   diagnostics show.)
2. **Log** ``n_logged`` pages of test-split sessions in the simulator
   (:func:`~.sim_logging.log_in_simulator`), recording each target's propensities of the shown
   slate and the candidate features the reward model needs.
3. **Reward model** for DM/DR: :class:`~.reward_model.SlotRewardModel`, cross-fitted over
   sessions (two folds).
4. **Estimate** each policy's value, with a bootstrap 95% interval over sessions, for two
   estimands:

   * ``session`` — expected session return (what results.json reports): ``pdis``, ``wpdis``,
     ``dr``, ``wdr`` (:mod:`.sessions`) with joint slate ratios per page;
   * ``first_page`` — expected reward of a session's first page, a contextual slate bandit
     whose contexts (logged session starts) do not depend on the policy: ``ips``, ``snips``,
     ``dm``, ``dr``, ``sndr``, ``switch_dr``, ``dros`` (:mod:`.estimators`, the action = the
     whole slate) and the item-level ``iips``, ``rips``, ``cascade_dr`` (:mod:`.slate`).

5. **Truth**: each policy played on-policy on ``truth_episodes`` sessions with a seed no
   repeat uses (:func:`~.sim_logging.on_policy_value`).
6. **Report** per policy × estimand × estimator: bias, RMSE, relative error
   :math:`E|\\hat V - V| / V` over repeats, CI coverage; per estimator: relative error over
   policies and the Spearman rank correlation between estimated and true values.
7. **Trust**: every estimate of every repeat carries a ``trust`` block
   (:func:`shopsim.evaluation.ope.diagnostics.trust`: outside the estimand's range — a page of
   ``slate_size`` clicks, a session of at most ``max_steps`` pages —, low ESS, one heavy
   weight); ``trust`` in the report counts the flags per estimator and names the usable ones.

Writes ``ope_validation.json``, ``ope_validation.md`` and ``plots/ope_validation.png``.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from shopsim.agents.baselines.slates import RandomSlate
from shopsim.agents.logging_policies import (
    ComponentTarget,
    DeterministicTarget,
    MixtureSlate,
    UniformTarget,
)
from shopsim.agents.registry import REGISTRY, PolicyContext, build_policies
from shopsim.agents.saving import ALGORITHMS, load_agent
from shopsim.artifacts import write_text_atomic
from shopsim.data import SessionLog
from shopsim.envs.engine import ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import WeightedReward
from shopsim.errors import ShopsimError
from shopsim.evaluation.ope.diagnostics import (
    REASONS,
    THRESHOLDS,
    page_reward_range,
    session_return_range,
    trust,
)
from shopsim.evaluation.ope.estimators import (
    DEFAULT_LAMBDA,
    SINGLE_SLOT,
    ratio_estimate,
    round_terms,
    weight_diagnostics,
)
from shopsim.evaluation.ope.reward_model import cross_fit
from shopsim.evaluation.ope.sessions import SESSION_ESTIMATORS, padded_session_estimate
from shopsim.evaluation.ope.sim_logging import log_in_simulator, on_policy_value
from shopsim.evaluation.ope.slate import slate_round_values
from shopsim.experiments.distributed import check_address, connect, one_line, require_ray, set_threads
from shopsim.stats import boot_counts, bootstrap_mean_ci

SESSION = SESSION_ESTIMATORS
ITEM_LEVEL = ("iips", "rips", "cascade_dr")
"""Slate estimators on per-slot weights (the single-slot ones take the whole slate as the action)."""
FIRST_PAGE = (*SINGLE_SLOT, *ITEM_LEVEL)
HEADLINE = {"session": ("wpdis", "dr"), "first_page": ("snips", "dr")}
"""The headline estimators per estimand: self-normalised IS and DR (for sessions the
self-normalised IS is WPDIS)."""


@dataclass
class ValidateConfig:
    """Settings of ``shopsim ope validate``.

    :param n_logged: pages logged per repeat.
    :param repeats: independent logs (each with its own seed), for bias, RMSE and coverage.
    :param truth_episodes: on-policy sessions per policy for the Monte-Carlo truth.
    :param epsilon: share of uniformly random slates in the behaviour policy.
    :param behaviour: ``"mixture"`` (A/B/n over the evaluated policies) or a policy name.
    :param assignment: the mixture's arm is drawn per ``"session"`` or per ``"page"``.
    :param n_boot: bootstrap resamples per interval.
    :param slate_size: items per logged slate.
    :param n_candidates: candidates the slate is chosen from on each page.
    :param seed: seed of every draw (the logs, the truths, the bootstrap).
    :param batch: shoppers simulated side by side while logging (memory vs speed).
    """

    n_logged: int = 100_000
    repeats: int = 5
    truth_episodes: int = 20_000
    epsilon: float = 0.1
    behaviour: str = "mixture"
    assignment: str = "session"
    slate_size: int = 10
    n_candidates: int = 100
    n_boot: int = 500
    seed: int = 0
    batch: int = 512

    def __post_init__(self) -> None:
        if self.n_logged < 100 or self.repeats < 1 or self.truth_episodes < 100 or self.n_boot < 50:
            raise ShopsimError(
                "n_logged ≥ 100, repeats ≥ 1, truth_episodes ≥ 100 and n_boot ≥ 50 are required"
            )
        if self.assignment not in ("session", "page"):
            raise ShopsimError(f"assignment={self.assignment!r}: use session or page")
        if not 0 < self.epsilon <= 1:
            raise ShopsimError(f"epsilon={self.epsilon}: must be in (0, 1] so every slate can be logged")


def evaluated_policies(
    sim: Simulator, k: int, *, models: Path | None = None, data: Path | None = None, seed: int = 0
) -> dict[str, Any]:
    """The deterministic policies to evaluate: every deployable registered baseline whose data
    requirements are met (those that fit on a log only when ``data``, a prepared log, is
    given; they come last), and ``ppo``/``dqn`` from ``models`` (``*.zip``). ``random`` is the
    behaviour's uniform component and is evaluated as such."""
    have = {"impressions"} if sim.meta.get("impressions") else set()
    if data is not None:
        have.add("log")
    eligible = [
        n
        for n, s in REGISTRY.items()
        if s.kind != "rl" and n != "random" and s.deployable and s.runs_on(have)
    ]
    names = sorted(eligible, key=lambda n: "log" in REGISTRY[n].requires)  # stable: registry order
    ctx = PolicyContext(k, seed=seed, log=SessionLog.load(data) if data is not None else None)
    pols: dict[str, Any] = dict(build_policies(names, ctx))
    if models is not None:
        for name in ALGORITHMS:
            path = models / f"{name}.zip"
            if path.exists():
                pols[name] = load_agent(path, device="cpu")
        if not ({"ppo", "dqn"} & set(pols)):
            raise ShopsimError(f"{models}: no ppo.zip or dqn.zip; pass the models/ folder a quickstart wrote")
    return pols


def _pad(session: np.ndarray, step: np.ndarray, values: np.ndarray, fill: float) -> np.ndarray:
    out = np.full((int(session.max()) + 1, int(step.max()) + 1), fill)
    out[session, step] = values
    return out


Range = tuple[float, float] | None


def value_ranges(shop: ShopperConfig, reward: WeightedReward | None = None) -> dict[str, Range]:
    """Possible range of each estimand under ``reward`` (the logger's: clicks by default):
    ``first_page`` a page of ``slate_size`` slots, ``session`` at most ``max_steps`` pages."""
    page = page_reward_range(reward or WeightedReward(), shop.slate_size)
    return {"session": session_return_range(page, shop.max_steps), "first_page": page}


def _estimate_repeat(
    log: dict[str, Any],
    names: list[str],
    cfg: ValidateConfig,
    seed: int,
    ranges: dict[str, Range] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """All estimates of one log (:func:`estimate_log` with every estimator)."""
    return estimate_log(log, names, n_boot=cfg.n_boot, seed=seed, ranges=ranges)


def estimate_log(
    log: dict[str, Any],
    names: list[str],
    *,
    n_boot: int,
    seed: int,
    ranges: dict[str, Range] | None = None,
    session: tuple[str, ...] | list[str] = SESSION,
    first_page: tuple[str, ...] | list[str] = FIRST_PAGE,
) -> dict[str, dict[str, dict[str, Any]]]:
    """All estimates of one log (:func:`~shopsim.evaluation.ope.sim_logging.log_in_simulator` with
    ``features=True``): {policy: {estimand: {estimator: Estimate-json, ..., "diagnostics": …}}}
    for the ``session`` and ``first_page`` estimators asked for (in the canonical order of
    :data:`SESSION` and :data:`FIRST_PAGE`), each with a bootstrap 95% interval over the log's
    sessions (``n_boot`` resamples drawn with ``seed``, the same for every estimator and
    policy). With ``ranges`` (:func:`value_ranges`) every estimate carries its ``trust`` block
    (:func:`shopsim.evaluation.ope.diagnostics.trust`) on the weights it rests on: sessions' cumulative
    weights per step, the first page's joint slate ratios, per-slot marginal (iips) or prefix
    (rips, cascade_dr) ratios."""
    want_session = [e for e in SESSION if e in session]
    want_single = [e for e in SINGLE_SLOT if e in first_page]
    want_item = [e for e in ITEM_LEVEL if e in first_page]
    sess, step = log["session"], log["step"]
    first = step == 0
    slot_r = log.get("slot_reward", log["slot_clicks"])
    fold = sess % 2
    q_slot, q_tgt, c0 = cross_fit(
        fold,
        log["feat"],
        log["slot_clicks"],
        slot_r,
        log["reward"],
        {n: log[f"{n}_feat"] for n in names},
    )
    q_page = c0 + q_slot.sum(1)
    counts = boot_counts(int(first.sum()), n_boot, seed)
    r_pad = _pad(sess, step, log["reward"], 0.0)
    q_pad = _pad(sess, step, q_page, 0.0)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for n in names:
        rho = log[f"{n}_joint"] / log["pscore_joint"]
        w = np.cumprod(_pad(sess, step, rho, 1.0), axis=1)
        v_page = c0 + q_tgt[n].sum(1)
        v_pad = _pad(sess, step, v_page, 0.0)
        res: dict[str, dict[str, Any]] = {"session": {}, "first_page": {}}
        for e in want_session:
            res["session"][e] = padded_session_estimate(e, r_pad, w, counts, q_pad, v_pad).to_json()
            if ranges is not None:
                res["session"][e]["trust"] = trust(e, res["session"][e]["value"], w, ranges["session"])
        res["session"]["diagnostics"] = weight_diagnostics(w[:, -1])
        fr, fw = log["reward"][first], rho[first]
        for e in want_single:
            a, b, d = round_terms(e, fr, fw, q_page[first], v_page[first], DEFAULT_LAMBDA.get(e))
            res["first_page"][e] = ratio_estimate(a, b, d, counts).to_json()
            if ranges is not None:
                res["first_page"][e]["trust"] = trust(
                    e, res["first_page"][e]["value"], None if e == "dm" else fw, ranges["first_page"]
                )
        props = {
            "marginal": (log[f"{n}_marginal"][first], log["pscore_marginal"][first]),
            "prefix": (log[f"{n}_prefix"][first], log["pscore_prefix"][first]),
        }
        for e in want_item:
            a = slate_round_values(
                e,
                slot_r[first],
                q_hat=q_slot[first],
                q_hat_pi=q_tgt[n][first],
                **props,
            )
            res["first_page"][e] = ratio_estimate(a, None, None, counts).to_json()
            if ranges is not None:
                kind = "marginal" if e == "iips" else "prefix"
                ratio = props[kind][0] / props[kind][1]
                res["first_page"][e]["trust"] = trust(
                    e, res["first_page"][e]["value"], ratio, ranges["first_page"]
                )
        res["first_page"]["diagnostics"] = weight_diagnostics(fw)
        out[n] = res
    return out


def _summary(
    per_repeat: list[dict[str, Any]], truth: dict[str, dict[str, Any]], names: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per policy and per estimator: bias, RMSE, relative error, coverage, rank correlation."""
    per_policy: dict[str, Any] = {n: {"session": {}, "first_page": {}} for n in names}
    per_estimator: dict[str, Any] = {"session": {}, "first_page": {}}
    for estimand, ests in (("session", SESSION), ("first_page", FIRST_PAGE)):
        v_true = np.array([truth[n][estimand]["value"] for n in names])
        for e in ests:
            vals = np.array([[rep[n][estimand][e]["value"] for n in names] for rep in per_repeat])  # (R, P)
            lo = np.array([[rep[n][estimand][e]["ci95"][0] for n in names] for rep in per_repeat])
            hi = np.array([[rep[n][estimand][e]["ci95"][1] for n in names] for rep in per_repeat])
            err = vals - v_true[None, :]
            rel = np.abs(err) / np.abs(v_true)[None, :]
            cover = (lo <= v_true[None, :]) & (v_true[None, :] <= hi)
            for j, n in enumerate(names):
                per_policy[n][estimand][e] = {
                    "mean": float(vals[:, j].mean()),
                    "bias": float(err[:, j].mean()),
                    "rmse": float(np.sqrt((err[:, j] ** 2).mean())),
                    "rel_error": float(rel[:, j].mean()),
                    "coverage": float(cover[:, j].mean()),
                }
            # constant estimates (e.g. a reward model that ranks nothing) have no rank correlation: None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns on constant input; handled below
                rho = [spearmanr(v, v_true).statistic for v in vals] if len(names) > 2 else []
            finite = [float(x) for x in rho if np.isfinite(x)]
            per_estimator[estimand][e] = {
                "rel_error_mean": float(rel.mean()),
                "rel_error_median": float(np.median(rel.mean(0))),
                "rel_error_max": float(rel.mean(0).max()),
                "rel_error_pooled": float(np.abs(err).mean(0).sum() / np.abs(v_true).sum()),
                "coverage": float(cover.mean()),
                "spearman": float(np.mean(finite)) if finite else None,
            }
    return per_policy, per_estimator


def trust_summary(
    per_repeat: list[dict[str, Any]], names: list[str], ranges: dict[str, Range]
) -> dict[str, Any]:
    """Per estimand and estimator: how many of its estimates (policies × repeats) were flagged,
    for which reasons, and the estimators never flagged (``usable``)."""
    out: dict[str, Any] = {
        "thresholds": dict(THRESHOLDS),
        "ranges": {k: None if v is None else list(v) for k, v in ranges.items()},
    }
    for estimand, ests in (("session", SESSION), ("first_page", FIRST_PAGE)):
        per: dict[str, Any] = {}
        for e in ests:
            blocks = [rep[n][estimand][e]["trust"] for rep in per_repeat for n in names]
            reasons = {r: sum(r in t["reasons"] for t in blocks) for r in REASONS}
            per[e] = {
                "kind": blocks[0]["kind"],
                "flagged": sum(t["verdict"] != "ok" for t in blocks),
                "of": len(blocks),
                "reasons": {r: c for r, c in reasons.items() if c},
            }
        out[estimand] = {"usable": [e for e, v in per.items() if v["flagged"] == 0], "estimators": per}
    return out


def _trust_line(estimand: str, t: dict[str, Any]) -> str:
    flagged = []
    for e, v in t["estimators"].items():
        if v["flagged"]:
            of = v["of"]
            flagged.append(f"{e} ({', '.join(f'{r} {c}/{of}' for r, c in v['reasons'].items())})")
    ok = ", ".join(f"{e} ({t['estimators'][e]['kind']})" for e in t["usable"]) or "none"
    return f"- {estimand}: usable for every policy and repeat: {ok}; flagged: {', '.join(flagged) or 'none'}"


def _truth_of(
    sim: Simulator, pols: dict[str, Any], name: str, shop: ShopperConfig, cfg: ValidateConfig
) -> dict[str, Any]:
    """Monte-Carlo on-policy value of policy ``name``, on a seed no logging repeat uses."""
    truth_seed = cfg.seed + 10_007
    pol = RandomSlate(cfg.slate_size, seed=truth_seed) if name == "random" else pols[name]
    res = on_policy_value(sim, pol, episodes=cfg.truth_episodes, config=shop, seed=truth_seed)
    return {
        "session": {"value": float(res.returns.mean()), "ci95": list(bootstrap_mean_ci(res.returns))},
        "first_page": {"value": float(res.first.mean()), "ci95": list(bootstrap_mean_ci(res.first))},
        "steps_per_session": float(res.steps.mean()),
    }


def _repeat_of(
    sim: Simulator,
    pols: dict[str, Any],
    shop: ShopperConfig,
    cfg: ValidateConfig,
    rep: int,
    *,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, Any]]]]:
    """Logging repeat ``rep`` (its own seed) and every estimate from its log: (log meta, estimates)."""
    seed = cfg.seed + 1 + rep
    beh, targets = _behaviour_and_targets(pols, cfg, seed)
    log = log_in_simulator(
        sim,
        beh,
        targets,
        config=shop,
        steps=cfg.n_logged,
        seed=seed,
        batch=cfg.batch,
        features=True,
        progress=progress,
    )
    return log["meta"], _estimate_repeat(log, ["random", *pols], cfg, seed, value_ranges(shop))


def _behaviour_and_targets(
    pols: dict[str, Any], cfg: ValidateConfig, seed: int
) -> tuple[MixtureSlate, dict[str, Any]]:
    """The logging policy of one repeat and every evaluated policy as a target over its log."""
    return behaviour_and_targets(
        pols,
        cfg.slate_size,
        behaviour=cfg.behaviour,
        epsilon=cfg.epsilon,
        assignment=cfg.assignment,
        seed=seed,
    )


def behaviour_and_targets(
    pols: dict[str, Any], k: int, *, behaviour: str, epsilon: float, assignment: str, seed: int
) -> tuple[MixtureSlate, dict[str, Any]]:
    """The logging policy (``behaviour``: ``"mixture"``, the A/B/n over uniform random and
    every policy of ``pols``, or one policy's name: ε-greedy around it) and every policy of
    ``pols`` plus ``random`` (uniform slates) as a target over its log. ``pols`` holds
    deterministic slate policies (``predict(obs, deterministic=True)``), not ``random``."""
    if behaviour == "mixture":
        beh = MixtureSlate({"random": None, **pols}, k, epsilon=epsilon, assignment=assignment, seed=seed)
        targets: dict[str, Any] = {n: ComponentTarget(beh, n) for n in pols}
    else:
        beh = MixtureSlate({behaviour: pols[behaviour]}, k, epsilon=epsilon, seed=seed)
        targets = {
            n: ComponentTarget(beh, n) if n == behaviour else DeterministicTarget(p, k)
            for n, p in pols.items()
        }
    return beh, {"random": UniformTarget(k, seed=seed), **targets}


def behaviour_label(pols: list[str], *, behaviour: str, epsilon: float, assignment: str) -> str:
    """The logging behaviour in words (the ``behaviour`` field of the reports)."""
    if behaviour == "mixture":
        return (
            f"A/B/n over random, {', '.join(pols)} (arm drawn per {assignment}) "
            f"with ε={epsilon} uniform exploration"
        )
    return f"ε-greedy around {behaviour} (ε={epsilon})"


def _checks(per_estimator: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline estimators against the targets: relative error ≤ 0.05, coverage ≥ 0.90."""
    return {
        f"{estimand}/{e}": {
            "rel_error_mean": per_estimator[estimand][e]["rel_error_mean"],
            "coverage": per_estimator[estimand][e]["coverage"],
            "target": "relative error ≤ 0.05, coverage ≥ 0.90",
            "met": per_estimator[estimand][e]["rel_error_mean"] <= 0.05
            and per_estimator[estimand][e]["coverage"] >= 0.90,
        }
        for estimand, es in HEADLINE.items()
        for e in es
    }


@dataclass(frozen=True)
class ValidationInputs:
    """What every unit of a validation (one truth, one logging repeat) loads: folders as
    absolute paths, so a Ray worker on another machine reads the same files."""

    sim_dir: str
    models: str | None
    data: str | None
    cfg: ValidateConfig


_LOADED: dict[str, tuple[Simulator, ShopperConfig, dict[str, Any]]] = {}
"""Per process: a Ray worker that runs several units loads the simulator and policies once."""


def load_inputs(inputs: ValidationInputs) -> tuple[Simulator, ShopperConfig, dict[str, Any]]:
    """The simulator, the shopper configuration and the evaluated policies of a validation."""
    key = json.dumps([inputs.sim_dir, inputs.models, inputs.data, asdict(inputs.cfg)], sort_keys=True)
    if key not in _LOADED:
        cfg = inputs.cfg
        sim = Simulator.load(Path(inputs.sim_dir))
        shop = ShopperConfig(slate_size=cfg.slate_size, n_candidates=cfg.n_candidates, split="test")
        shop.validate(sim)
        pols = evaluated_policies(
            sim,
            cfg.slate_size,
            models=None if inputs.models is None else Path(inputs.models),
            data=None if inputs.data is None else Path(inputs.data),
            seed=cfg.seed,
        )
        if cfg.behaviour != "mixture" and cfg.behaviour not in pols:
            raise ShopsimError(
                f"behaviour {cfg.behaviour!r}: unknown; use mixture or one of {', '.join(sorted(pols))}"
            )
        _LOADED.clear()  # one validation at a time per process
        _LOADED[key] = (sim, shop, pols)
    return _LOADED[key]


def _truth_task(inputs: ValidationInputs, name: str, threads: int) -> tuple[dict[str, Any], float]:
    """A Ray task: one policy's on-policy truth (and its wall time)."""
    set_threads(threads)
    t0 = time.perf_counter()
    sim, shop, pols = load_inputs(inputs)
    return _truth_of(sim, pols, name, shop, inputs.cfg), time.perf_counter() - t0


def _repeat_task(
    inputs: ValidationInputs, rep: int, threads: int
) -> tuple[tuple[dict[str, Any], dict[str, Any]], float]:
    """A Ray task: one logging repeat with its estimates (and its wall time)."""
    set_threads(threads)
    t0 = time.perf_counter()
    sim, shop, pols = load_inputs(inputs)
    return _repeat_of(sim, pols, shop, inputs.cfg, rep, progress=False), time.perf_counter() - t0


def _run_on_ray(
    inputs: ValidationInputs, names: list[str], address: str | None, threads: int
) -> tuple[dict[str, dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]], dict[str, float]]:
    """Every truth and every repeat as one Ray task each (``threads`` CPUs apiece); the results
    are put back in the serial order, so the report does not depend on which finished first."""
    ray = connect(address)
    truth_fn = ray.remote(num_cpus=threads, max_retries=0)(_truth_task)
    repeat_fn = ray.remote(num_cpus=threads, max_retries=0)(_repeat_task)
    ref = ray.put(inputs)
    # the repeats are the longest tasks: first in the queue, so no core idles at the end
    pending = {repeat_fn.remote(ref, rep, threads): ("repeat", rep) for rep in range(inputs.cfg.repeats)}
    pending |= {truth_fn.remote(ref, n, threads): ("truth", n) for n in names}
    truth: dict[str, dict[str, Any]] = {}
    repeats: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    timing = {"truth": 0.0, "log_and_estimate": 0.0}
    waiting = list(pending)
    with tqdm(total=len(waiting), desc="ope validate on Ray", unit="task") as bar:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            kind, key = pending[ready[0]]
            try:
                value, seconds = ray.get(ready[0])
            except Exception as exc:  # the task's own error, as one line
                raise ShopsimError(f"ope validate --ray: {kind} {key} failed: {one_line(exc)}") from None
            if kind == "truth":
                truth[str(key)] = value
                timing["truth"] += seconds
            else:
                repeats[int(key)] = value
                timing["log_and_estimate"] += seconds
            bar.set_postfix_str(f"{kind} {key} {seconds:.0f} s")
            bar.update()
    return {n: truth[n] for n in names}, [repeats[r] for r in range(inputs.cfg.repeats)], timing


def run_validation(
    sim_dir: Path,
    out: Path,
    cfg: ValidateConfig,
    *,
    models: Path | None = None,
    data: Path | None = None,
    results: Path | None = None,
    ray: bool = False,
    address: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """The whole protocol of the module docstring; returns (and writes) the report.

    With ``ray``, the independent units — each policy's on-policy truth and each logging
    repeat — run as Ray tasks of ``threads`` CPUs (locally, or on the cluster at ``address``);
    every unit draws from its own seed, so the report equals the serial one apart from
    ``timing_s`` and ``execution``."""
    if results is not None:
        check_results_file(results)
    if ray:
        require_ray("ope validate --ray runs its repeats")
        check_address(address)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    inputs = ValidationInputs(
        str(sim_dir.resolve()),
        None if models is None else str(models.resolve()),
        None if data is None else str(data.resolve()),
        cfg,
    )
    sim, shop, pols = load_inputs(inputs)  # fails here, before any task, on a bad input
    ranges = value_ranges(shop)
    names = ["random", *pols]
    timing: dict[str, float] = {}
    if ray:
        truth, done, timing = _run_on_ray(inputs, names, address, threads)
    else:
        t0 = time.perf_counter()
        truth = {
            n: _truth_of(sim, pols, n, shop, cfg) for n in tqdm(names, desc="on-policy truth", unit="policy")
        }
        timing["truth"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = [_repeat_of(sim, pols, shop, cfg, rep) for rep in range(cfg.repeats)]
        timing["log_and_estimate"] = time.perf_counter() - t0
    logs_meta = [meta for meta, _ in done]
    per_repeat = [estimates for _, estimates in done]

    per_policy, per_estimator = _summary(per_repeat, truth, names)
    checks = _checks(per_estimator)
    timing["total"] = time.perf_counter() - t_start
    report: dict[str, Any] = {
        "simulator": str(sim_dir),
        "config": asdict(cfg),
        "behaviour": behaviour_label(
            list(pols), behaviour=cfg.behaviour, epsilon=cfg.epsilon, assignment=cfg.assignment
        ),
        "logs": logs_meta,
        "truth": truth,
        "policies": per_policy,
        "estimators": per_estimator,
        "checks": checks,
        "repeats": per_repeat,
        "trust": trust_summary(per_repeat, names, ranges),
        "timing_s": {key: round(v, 1) for key, v in timing.items()},
        "execution": (
            {"engine": "ray", "address": address or "local", "threads_per_task": threads}
            if ray
            else {"engine": "serial", "address": None, "threads_per_task": None}
        ),
    }
    write_text_atomic(
        out / "ope_validation.json", json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n"
    )
    write_text_atomic(out / "ope_validation.md", validation_markdown(report) + "\n")
    _plot(report, out / "plots" / "ope_validation.png")
    if results is not None:
        annotate_results(results, per_repeat[0])
    return report


def finite_json(x: Any) -> Any:
    """Non-finite numbers (e.g. a relative error against a zero truth) → None: strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x


def check_results_file(path: Path) -> None:
    """Refuse, before any work, a ``--results`` that is not an existing, writable results.json."""
    if not path.is_file():
        raise ShopsimError(f"{path}: no such results.json; pass the file a quickstart wrote")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShopsimError(
            f"{path}: not a readable results.json ({type(exc).__name__}); pass the file a quickstart wrote"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), dict):
        raise ShopsimError(
            f"{path}: not a results.json (no 'policies' object); pass the file a quickstart wrote"
        )
    if not os.access(path, os.W_OK):
        raise ShopsimError(f"{path}: not writable; make it writable or copy it, then pass the copy")


def annotate_results(path: Path, first_repeat: dict[str, Any]) -> None:
    """Add an ``ope`` block (session estimates of the first repeat) to the policies
    of an existing results.json."""
    if not path.is_file():
        raise ShopsimError(f"{path}: no such results.json; pass the file a quickstart wrote")
    report = json.loads(path.read_text())
    for name, entry in report.get("policies", {}).items():
        if name in first_repeat:
            entry["ope"] = {e: first_repeat[name]["session"][e] for e in SESSION}
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")


EXECUTION_KEYS = ("timing_s", "execution")
"""Fields of ope_validation.json that say how a validation ran, not what it found."""


def _max_rel_difference(a: Any, b: Any) -> float:
    """Largest relative difference between the numbers of two equally shaped JSON values
    (``inf`` when their structure or a non-number differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return math.inf
        return max((_max_rel_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return math.inf
        return max((_max_rel_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool | None):
        if a == b:
            return 0.0
        return float(abs(a - b) / max(abs(a), abs(b)))
    return 0.0 if a == b else math.inf


def report_differences(a: dict[str, Any], b: dict[str, Any], rtol: float = 0.0) -> dict[str, float]:
    """Top-level fields in which two validation reports differ, apart from
    :data:`EXECUTION_KEYS`, with the largest relative difference of their numbers (``inf``:
    a structure or text differs); fields within ``rtol`` are left out. Empty: the same
    experiment gave the same answer."""
    keys = sorted((set(a) | set(b)) - set(EXECUTION_KEYS))
    diffs = {k: _max_rel_difference(a.get(k), b.get(k)) for k in keys}
    return {k: d for k, d in diffs.items() if d > rtol}


def engines_markdown(serial: dict[str, Any], on_ray: dict[str, Any]) -> str:
    """Serial vs Ray wall times of the same validation, and whether their findings are identical."""
    cfg = serial["config"]
    diff = report_differences(serial, on_ray)
    worst = max(diff.values(), default=0.0)
    ex = on_ray.get("execution") or {}
    rows = []
    for label, rep in (("serial (one process)", serial), (f"Ray tasks ({ex.get('address', '?')})", on_ray)):
        t = rep["timing_s"]
        rows.append(
            f"| {label} | {t['total'] / 60:.1f} | {t['truth'] / 60:.1f} | {t['log_and_estimate'] / 60:.1f} |"
        )
    speedup = serial["timing_s"]["total"] / on_ray["timing_s"]["total"]
    return "\n".join(
        [
            f"{len(serial['truth'])} policies, {cfg['repeats']} logs × {cfg['n_logged']:,} pages, "
            f"truth from {cfg['truth_episodes']:,} on-policy sessions per policy "
            f"({on_ray.get('execution', {}).get('threads_per_task')} CPU per Ray task).",
            "",
            "| engine | wall time (min) | truths (min) | logs + estimates (min) |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Ray / serial wall time: **{1 / speedup:.2f}** ({speedup:.2f}× faster); with Ray the two "
            "phases overlap and their times are summed task times. Findings identical to serial: "
            + (
                "**yes**, bit for bit (every truth, estimate, interval and check)"
                if not diff
                else f"**equal to a relative {worst:.0e}** ({', '.join(diff)}: floating-point rounding — "
                "BLAS sums over a different number of threads; bit for bit at equal thread counts)"
                if worst < 1e-9
                else "**no**: " + ", ".join(f"{k} (relative {v:.1e})" for k, v in diff.items())
            ),
        ]
    )


def validation_markdown(report: dict[str, Any]) -> str:
    """The tables people read: truth vs estimates, then each estimator's error and coverage."""
    cfg = report["config"]
    pages = np.mean([m["pages"] for m in report["logs"]])
    lines = [
        f"Off-policy estimates vs on-policy truth: {cfg['repeats']} independent logs of ≈{pages:,.0f} pages "
        f"(slate {cfg['slate_size']} of {cfg['n_candidates']}), behaviour = {report['behaviour']}; "
        f"truth = {cfg['truth_episodes']:,} on-policy sessions per policy on another seed.",
        "",
        "| policy | estimand | truth [95% CI] | "
        + " | ".join(f"{e} (rel. err, cover)" for e in ("wpdis", "dr"))
        + " |",
        "|---|---|---|---|---|",
    ]
    for n, t in report["truth"].items():
        for estimand, es in HEADLINE.items():
            cells = []
            for e in es:
                s = report["policies"][n][estimand][e]
                cells.append(f"{s['mean']:.4f} ({s['rel_error']:.3f}, {s['coverage']:.2f})")
            tv = t[estimand]
            lines.append(
                f"| {n} | {estimand} | {tv['value']:.4f} [{tv['ci95'][0]:.4f}, {tv['ci95'][1]:.4f}] | "
                + " | ".join(cells)
                + " |"
            )
    lines += [
        "",
        "(first_page columns: snips, dr.) Every estimator, over policies and repeats:",
        "",
        "| estimand | estimator | mean rel. error | median | max | pooled | CI coverage | Spearman | trust |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tr = report.get("trust")
    for estimand, ests in report["estimators"].items():
        for e, s in ests.items():
            sp = "—" if s["spearman"] is None else f"{s['spearman']:.3f}"
            cell = "—"
            if tr is not None:
                v = tr[estimand]["estimators"][e]
                cell = f"⚠ {', '.join(v['reasons'])} ({v['flagged']}/{v['of']})" if v["flagged"] else "ok"
            lines.append(
                f"| {estimand} | {e} | {s['rel_error_mean']:.3f} | {s['rel_error_median']:.3f} | "
                f"{s['rel_error_max']:.3f} | {s['rel_error_pooled']:.3f} | {s['coverage']:.2f} | {sp} | "
                f"{cell} |"
            )
    if tr is not None:
        th = tr["thresholds"]
        lines += [
            "",
            "Trust (⚠ = some estimates flagged, flagged/all over policies × repeats; outside_range = outside "
            f"the estimand's possible range, low_ess = ESS < max({th['min_ess']:.0f}, "
            f"{th['min_ess_share']:.0%} of rows), heavy_weight = one row > {th['max_weight_share']:.0%} "
            "of the total weight; see shopsim.evaluation.ope.diagnostics):",
            "",
            *(_trust_line(estimand, tr[estimand]) for estimand in ("session", "first_page")),
        ]
    lines += ["", "Checks:", ""]
    for key, c in report["checks"].items():
        lines.append(
            f"- {key}: relative error {c['rel_error_mean']:.3f}, coverage {c['coverage']:.2f} → "
            + ("met" if c["met"] else "**not met**")
        )
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    """Per policy: each repeat's estimate relative to the truth (dots), the truth's own 95%
    interval (grey) and the ±5% target band (dashed)."""
    from shopsim.plots import pyplot

    plt = pyplot()

    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(report["truth"], key=lambda n: report["truth"][n]["session"]["value"])
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.38 * len(names) + 1.8), sharey=True)
    for ax, (estimand, es) in zip(axes, HEADLINE.items(), strict=True):
        truth = np.array([report["truth"][n][estimand]["value"] for n in names])
        ci = np.array([report["truth"][n][estimand]["ci95"] for n in names])
        ax.barh(y, ci[:, 1] / truth - ci[:, 0] / truth, left=ci[:, 0] / truth - 1, height=0.6,
                color="#dddddd", label="truth's own 95% CI")  # fmt: skip
        for j, e in enumerate(es):
            vals = np.array([[rep[n][estimand][e]["value"] for n in names] for rep in report["repeats"]])
            rel = vals / truth[None, :] - 1
            jitter = (j - 0.5) * 0.25
            ys = np.tile(y + jitter, len(rel))
            ax.plot(rel.ravel(), ys, "o", ms=3, alpha=0.6, label=f"{e} (each repeat)")
        for x in (-0.05, 0.05):
            ax.axvline(x, color="k", ls="--", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, names)
        ax.set_xlabel("estimate / truth − 1")
        ax.set_title(f"{estimand.replace('_', ' ')} value")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = [
    "EXECUTION_KEYS",
    "FIRST_PAGE",
    "ITEM_LEVEL",
    "SESSION",
    "ValidateConfig",
    "ValidationInputs",
    "behaviour_and_targets",
    "behaviour_label",
    "engines_markdown",
    "estimate_log",
    "evaluated_policies",
    "finite_json",
    "load_inputs",
    "report_differences",
    "run_validation",
    "validation_markdown",
    "value_ranges",
]
