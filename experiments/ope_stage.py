"""The optional OPE stage of ``shopsim run`` (config section ``ope``).

Off-policy estimates of the run's policies, written as the ``ope`` block of results.json
(schema: ``docs/schemas/ope_block.schema.json``), a Markdown table (:func:`ope_markdown`) and
``plots/ope.png``. Two sources:

* ``simulator`` — the protocol of ``shopsim ope validate`` (:mod:`.ope_validate`, whose
  functions this reuses) with the run's own policies as the targets: a randomised behaviour
  (A/B/n over uniform random and every deterministic policy of the run, with ε-uniform
  exploration, or ε-greedy around one policy) logs ``n_logged`` pages of test sessions in the
  run's simulator under the run's reward; every policy's value is estimated from that log for
  two estimands, with a bootstrap 95% interval over logged sessions, the ESS and a ``trust``
  block (:func:`shopsim.evaluation.ope.diagnostics.trust`):

  * ``session`` — the expected return of a test session, the quantity results.json's
    ``sim.return_mean`` measures on-policy (sessions drawn uniformly from the test split by
    both, so the run's in-simulator evaluation **is** this estimand's truth and is reused);
  * ``first_page`` — the expected reward of a session's first page (a contextual slate
    bandit); its truth is the same evaluation's first-page rewards
    (:attr:`~shopsim.evaluation.in_simulator.EpisodeResults.first`).

  The log is drawn on seed ``seed + 20011 + repeat``, so it shares no random stream with the
  run's evaluation (``seed + 1``) and the estimates are independent of the truth they are
  compared with. A policy the run did not evaluate gets a Monte-Carlo truth of
  ``truth_episodes`` sessions on seed ``seed + 10007`` (as ``shopsim ope validate`` does).
  Item-level estimators (``iips``, ``rips``, ``cascade_dr``) need a reward that is a sum of
  per-slot terms; under any other reward they are skipped, with the reason in the block.

* ``log`` — the shop's own log, when it records the logging policy's propensities (format
  ``obd``; an ``events`` log with a ``propensity`` column). The run's policies act on
  simulator observations (a shopper state and candidates drawn by the simulator), which the
  log's rounds do not carry, so they **cannot** be evaluated on it; the block says so and
  estimates what the log supports, as ``shopsim ope obd`` does (:mod:`.ope_obd`): each logging
  policy's click-through rate per impression from another logging policy's rows, against its
  own on-policy CTR (uniform random's probabilities are exact; any other policy is taken as
  context-free, its time-averaged slot probabilities estimated by its own rows' shares). A log
  of one logging policy gets uniform random's CTR estimated from it, with no truth.

:func:`check_ope` refuses ``source: log`` on a format without propensities at config time,
before any work.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.agents.registry import REGISTRY
from shopsim.errors import ShopsimError
from shopsim.evaluation.ope.estimators import SINGLE_SLOT
from shopsim.evaluation.ope.sessions import SESSION_ESTIMATORS

ITEM_LEVEL = ("iips", "rips", "cascade_dr")
"""Slate estimators on per-slot weights (they need a slot-additive reward)."""
FIRST_PAGE_ESTIMATORS = (*SINGLE_SLOT, *ITEM_LEVEL)
DEFAULT_SESSION = ("pdis", "wpdis", "dr", "wdr")
DEFAULT_FIRST_PAGE = ("ips", "snips", "dr", "cascade_dr")
LOG_PROPENSITY_FORMATS = frozenset({"obd"})
"""Formats whose logs always carry the logging policy's propensities (``events``: when the
source has a ``propensity`` column, or one mapped to it)."""
TRUTH_SEED_OFFSET = 10_007
"""Seed offset of a Monte-Carlo truth the stage computes itself (as ``shopsim ope validate``)."""
LOG_SEED_OFFSET = 20_011
"""Seed offset of the logs: no stream shared with the run's evaluation (``seed + 1``)."""
ESTIMANDS = ("session", "first_page")


@dataclass
class OPEStageConfig:
    """Off-policy evaluation as a stage of the run (off by default)."""

    enabled: bool = False
    """Run the OPE stage and write the ``ope`` block of results.json."""
    source: str = "simulator"
    """``simulator``: log a randomised behaviour policy in the fitted simulator (truth known);
    ``log``: the logged propensities of the shop's own log (formats with propensities)."""
    n_logged: int = 10_000
    """``source: simulator``: pages logged per repeat."""
    repeats: int = 1
    """``source: simulator``: independent logs (each estimate's spread and interval coverage over them)."""
    epsilon: float = 0.1
    """``source: simulator``: share of uniformly random slates in the behaviour policy, in (0, 1]."""
    behaviour: str = "mixture"
    """``source: simulator``: ``mixture`` (A/B/n over uniform random and every deterministic policy
    of the run) or one policy's name (ε-greedy around it: the other policies then have little
    overlap, which the ESS shows)."""
    assignment: str = "session"
    """``source: simulator``: the mixture draws its arm per ``session`` (as an A/B test; what makes
    session estimates feasible) or per ``page``."""
    session_estimators: tuple[str, ...] = DEFAULT_SESSION
    """Estimators of a session's value reported: pdis, wpdis, dr, wdr."""
    first_page_estimators: tuple[str, ...] = DEFAULT_FIRST_PAGE
    """Estimators of the first page's value reported: ips, snips, dm, dr, sndr, switch_dr, dros,
    iips, rips, cascade_dr (``source: log``: the single-slot ones of this list)."""
    n_boot: int = 500
    """Bootstrap resamples of every interval."""
    truth: bool = True
    """Compare with on-policy truth: the run's own in-simulator evaluation (the same estimands),
    or, for a policy it did not evaluate, ``truth_episodes`` on-policy sessions."""
    truth_episodes: int = 3000
    """On-policy sessions of a truth the stage computes itself."""
    batch: int = 512
    """Sessions simulated in parallel while logging."""

    def __post_init__(self) -> None:
        if self.source not in ("simulator", "log"):
            raise ShopsimError(f"source={self.source!r}: use simulator or log")
        for name, value, low in (
            ("n_logged", self.n_logged, 100),
            ("repeats", self.repeats, 1),
            ("n_boot", self.n_boot, 50),
            ("truth_episodes", self.truth_episodes, 100),
            ("batch", self.batch, 1),
        ):
            if value < low:
                raise ShopsimError(f"{name}={value}: must be ≥ {low}")
        if not 0 < self.epsilon <= 1:
            raise ShopsimError(f"epsilon={self.epsilon}: must be in (0, 1] so every slate can be logged")
        if self.assignment not in ("session", "page"):
            raise ShopsimError(f"assignment={self.assignment!r}: use session or page")
        if self.behaviour != "mixture" and (self.behaviour not in REGISTRY or self.behaviour == "random"):
            raise ShopsimError(
                f"behaviour={self.behaviour!r}: use mixture or a deterministic policy of the run "
                f"(e.g. {', '.join(n for n in REGISTRY if n != 'random')})"
            )
        self.session_estimators = tuple(self.session_estimators)
        self.first_page_estimators = tuple(self.first_page_estimators)
        for key, names, known in (
            ("session_estimators", self.session_estimators, SESSION_ESTIMATORS),
            ("first_page_estimators", self.first_page_estimators, FIRST_PAGE_ESTIMATORS),
        ):
            bad = [n for n in names if n not in known]
            if bad:
                raise ShopsimError(f"{key}: unknown estimator {bad[0]!r}; use {', '.join(known)}")
            if len(set(names)) != len(names):
                raise ShopsimError(f"{key}: an estimator is listed twice; list each once")
        if not self.session_estimators and not self.first_page_estimators:
            raise ShopsimError(
                "session_estimators and first_page_estimators are both empty; list at least one estimator"
            )


# ---------------------------------------------------------------------- config-time check
def check_ope(cfg: Any, where: str = "config") -> None:
    """Refuse, before any work, an ``ope`` section the run cannot honour: ``source: log`` on a
    log without propensities, or a ``behaviour`` policy the run does not play. ``cfg`` is a
    :class:`~shopsim.experiments.config.RunConfig` (duck-typed: ``cfg.ope``, ``cfg.data``,
    ``cfg.agents``; this module does not import the config module, which imports it).

    :raises ShopsimError: one line naming the key and the fix.
    """
    o = cfg.ope
    if not o.enabled:
        return
    policies = getattr(getattr(cfg, "agents", None), "policies", None)
    if (
        o.source == "simulator"
        and o.behaviour != "mixture"
        and policies is not None
        and o.behaviour not in policies
    ):
        raise ShopsimError(
            f"{where}: ope.behaviour: {o.behaviour!r} is not among agents.policies; "
            "add it there or use ope.behaviour: mixture"
        )
    if o.source != "log":
        return
    fmt = cfg.data.format
    if fmt in LOG_PROPENSITY_FORMATS:
        return
    if fmt == "events":
        mapped = cfg.data.column_map.get("propensity")
        if mapped is not None:
            return  # prepare refuses a mapped column that is absent
        path = cfg.data.source_path()
        cols = _source_columns(path)
        if cols is None or "propensity" in cols:
            return  # unreadable here: prepare reports it; a propensity column: checked once prepared
        raise ShopsimError(
            f"{where}: ope.source: log needs logged propensities and {path} has no propensity column; "
            "use ope.source: simulator (or map one with data.column_map: {propensity: COLUMN})"
        )
    raise ShopsimError(
        f"{where}: ope.source: log needs logged propensities and data.format {fmt!r} records none; "
        "use ope.source: simulator"
    )


def _source_columns(path: Path) -> list[str] | None:
    """The header of an ``events`` source file (None when it cannot be read cheaply)."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        name = path.name.lower()
        sep = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        return list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except Exception:  # any unreadable file is prepare's to report, with its own message
        return None


# ---------------------------------------------------------------------- the stage
def run_ope_stage(
    cfg: OPEStageConfig,
    sim: Any,
    policies: dict[str, Any],
    *,
    shop: Any,
    reward: Any,
    seed: int,
    truth: dict[str, Any] | None,
    log_dir: Path | None,
    out: Path,
) -> dict[str, Any]:
    """The ``ope`` block of results.json (module docstring), and ``out/plots/ope.png``.

    :param sim: the run's :class:`~shopsim.envs.model.simulator.Simulator`.
    :param policies: the run's policies by name (the ``random`` baseline is the behaviour's
        uniform component; every other one must be deterministic under ``deterministic=True``).
    :param shop: the test-split :class:`~shopsim.envs.engine.ShopperConfig` the run evaluated on.
    :param reward: the run's reward callable (a :class:`~shopsim.envs.rewards.WeightedReward`
        gives the estimands' ranges for the trust checks and per-slot rewards).
    :param seed: the run's seed.
    :param truth: the run's in-simulator results by name (``EpisodeResults`` on ``shop`` and
        ``reward``), reused as truth; None: compute it when ``cfg.truth``.
    :param log_dir: the run's prepared log folder (``events.parquet``; ``source: log``).
    :param out: the run folder (the plot goes to ``out/plots/ope.png``).
    """
    if cfg.source == "log":
        if log_dir is None:
            raise ShopsimError("ope.source: log needs the prepared log folder; use ope.source: simulator")
        block = log_block(cfg, log_dir, seed=seed)
    else:
        block = simulator_block(cfg, sim, policies, shop=shop, reward=reward, seed=seed, truth=truth)
    from shopsim.experiments.ope_validate import finite_json

    block = finite_json(block)
    if block["source"] == "simulator":
        plot_ope(block, out / "plots" / "ope.png")
    return block


def simulator_block(
    cfg: OPEStageConfig,
    sim: Any,
    policies: dict[str, Any],
    *,
    shop: Any,
    reward: Any,
    seed: int,
    truth: dict[str, Any] | None,
) -> dict[str, Any]:
    """``source: simulator``: log in the simulator, estimate every policy (module docstring)."""
    from shopsim.envs.rewards import WeightedReward
    from shopsim.evaluation.ope.diagnostics import THRESHOLDS
    from shopsim.evaluation.ope.sim_logging import log_in_simulator
    from shopsim.experiments.ope_validate import (
        behaviour_and_targets,
        behaviour_label,
        estimate_log,
        value_ranges,
    )

    k = shop.slate_size
    pols = {n: p for n, p in policies.items() if n != "random"}
    if not pols:
        raise ShopsimError("ope: the run has no deterministic policy to evaluate; add one to agents.policies")
    if cfg.behaviour != "mixture" and cfg.behaviour not in pols:
        raise ShopsimError(
            f"ope.behaviour: {cfg.behaviour!r} is not a policy of this run; "
            f"use mixture or one of {', '.join(pols)}"
        )
    names = (["random"] if "random" in policies else []) + list(pols)
    weighted = isinstance(reward, WeightedReward)
    ranges: dict[str, tuple[float, float] | None] = (
        value_ranges(shop, reward) if weighted else {"session": None, "first_page": None}
    )
    skipped_est: dict[str, str] = {}
    first_page = list(cfg.first_page_estimators)
    if not (weighted and reward.slot_additive):
        for e in (e for e in first_page if e in ITEM_LEVEL):
            skipped_est[e] = (
                "item-level: needs a reward that is a sum of per-slot terms (clicks, purchases, "
                "revenue …); this run's reward is not"
            )
        first_page = [e for e in first_page if e not in ITEM_LEVEL]
    wanted = {"session": list(cfg.session_estimators), "first_page": first_page}

    per_repeat: list[dict[str, Any]] = []
    logs_meta: list[dict[str, Any]] = []
    for rep in range(cfg.repeats):
        s = seed + LOG_SEED_OFFSET + rep
        beh, targets = behaviour_and_targets(
            pols, k, behaviour=cfg.behaviour, epsilon=cfg.epsilon, assignment=cfg.assignment, seed=s
        )
        log = log_in_simulator(
            sim,
            beh,
            targets,
            config=shop,
            steps=cfg.n_logged,
            reward=reward,
            seed=s,
            batch=cfg.batch,
            features=True,
        )
        logs_meta.append(log["meta"])
        per_repeat.append(
            estimate_log(
                log,
                names,
                n_boot=cfg.n_boot,
                seed=s,
                ranges=ranges,
                session=wanted["session"],
                first_page=wanted["first_page"],
            )
        )
        del log

    truths, truth_source = _truths(cfg, sim, policies, names, shop=shop, reward=reward, seed=seed, run=truth)
    block: dict[str, Any] = {
        "source": "simulator",
        "config": _config_json(cfg),
        "behaviour": behaviour_label(
            list(pols), behaviour=cfg.behaviour, epsilon=cfg.epsilon, assignment=cfg.assignment
        ),
        "estimands": {
            "session": "expected return of a test session under the run's reward (results.json's "
            "sim.return_mean measures it on-policy)",
            "first_page": "expected reward of a test session's first page",
        },
        "logs": logs_meta,
        "truth_source": truth_source,
        "ranges": {key: None if v is None else list(v) for key, v in ranges.items()},
        "thresholds": dict(THRESHOLDS),
        "skipped": {
            "policies": {
                n: "a result row, not a policy object: the logger cannot replay it "
                "(PPO's sampled slates are stochastic; PPO itself is evaluated deterministically)"
                for n in (truth or {})
                if n not in policies
            },
            "estimators": skipped_est,
        },
        "policies": {},
    }
    for n in names:
        entry: dict[str, Any] = {"truth": truths.get(n)}
        for estimand in ESTIMANDS:
            t = truths[n][estimand]["value"] if n in truths else None
            entry[estimand] = {e: _entry(per_repeat, n, estimand, e, t) for e in wanted[estimand]}
        block["policies"][n] = entry
    block["summary"] = _summary(block, wanted)
    return block


def _config_json(cfg: OPEStageConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def _truth_of(res: Any, n_boot: int, seed: int, episodes: int, source: str) -> dict[str, Any]:
    from shopsim.stats import bootstrap_mean_ci

    def one(x: np.ndarray) -> dict[str, Any]:
        lo, hi = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
        return {"value": float(x.mean()), "ci95": [lo, hi]}

    return {
        "session": one(res.returns),
        "first_page": one(res.first),
        "episodes": episodes,
        "source": source,
    }


def _truths(
    cfg: OPEStageConfig,
    sim: Any,
    policies: dict[str, Any],
    names: list[str],
    *,
    shop: Any,
    reward: Any,
    seed: int,
    run: dict[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], str]:
    """Each policy's on-policy value: the run's evaluation where it has the policy, else a
    Monte-Carlo rollout on a seed no log uses; and which of the two (``run``, ``computed``,
    ``run+computed``, ``none``)."""
    if not cfg.truth:
        return {}, "none"
    from shopsim.agents.baselines.slates import RandomSlate
    from shopsim.evaluation.ope.sim_logging import on_policy_value

    out: dict[str, dict[str, Any]] = {}
    used = set()
    for n in names:
        if run is not None and n in run:
            res = run[n]
            out[n] = _truth_of(res, cfg.n_boot, seed, len(res.returns), "run")
            used.add("run")
            continue
        ts = seed + TRUTH_SEED_OFFSET
        pol = RandomSlate(shop.slate_size, seed=ts) if n == "random" else policies[n]
        res = on_policy_value(sim, pol, episodes=cfg.truth_episodes, config=shop, reward=reward, seed=ts)
        out[n] = _truth_of(res, cfg.n_boot, seed, cfg.truth_episodes, "computed")
        used.add("computed")
    return out, "+".join(s for s in ("run", "computed") if s in used) or "none"


def _entry(
    per_repeat: list[dict[str, Any]], n: str, estimand: str, e: str, truth: float | None
) -> dict[str, Any]:
    """One estimate of the block: the first log's value, interval, ESS and trust; against the
    truth its relative error and whether the interval covers it; over several logs their values."""
    first = per_repeat[0][n][estimand][e]
    out: dict[str, Any] = {
        "value": first["value"],
        "ci95": list(first["ci95"]),
        "ess": first["trust"]["ess"],
        "trust": first["trust"],
    }
    if truth is not None:
        out["truth"] = truth
        out["rel_error"] = _rel(first["value"], truth)
        out["covers_truth"] = bool(first["ci95"][0] <= truth <= first["ci95"][1])
    if len(per_repeat) > 1:
        reps = [rep[n][estimand][e] for rep in per_repeat]
        vals = [r["value"] for r in reps]
        over: dict[str, Any] = {"values": vals, "mean": float(np.mean(vals))}
        if truth is not None:
            over["rel_error_mean"] = float(np.mean([_rel(v, truth) for v in vals]))
            over["coverage"] = float(np.mean([r["ci95"][0] <= truth <= r["ci95"][1] for r in reps]))
        out["repeats"] = over
    return out


def _rel(value: float, truth: float) -> float:
    return abs(value - truth) / abs(truth) if truth else math.inf


def _summary(block: dict[str, Any], wanted: dict[str, list[str]]) -> dict[str, Any]:
    """Per estimand and estimator, over the policies: how many estimates were flagged, and
    against the truth the mean and worst relative error, the share of intervals covering the
    truth and the rank correlation of estimates with the truth; ``usable``: never flagged."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for estimand in ESTIMANDS:
        per: dict[str, Any] = {}
        for e in wanted[estimand]:
            entries = [p[estimand][e] for p in block["policies"].values()]
            s: dict[str, Any] = {
                "flagged": sum(x["trust"]["verdict"] != "ok" for x in entries),
                "of": len(entries),
            }
            known = [x for x in entries if "truth" in x]
            if known:
                rel = [x["rel_error"] for x in known]
                s["rel_error_mean"] = float(np.mean(rel))
                s["rel_error_max"] = float(np.max(rel))
                s["coverage"] = float(np.mean([x["covers_truth"] for x in known]))
                rho = None
                if len(known) > 2:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # constant input: no correlation (None)
                        r = spearmanr([x["value"] for x in known], [x["truth"] for x in known]).statistic
                    rho = float(r) if np.isfinite(r) else None
                s["spearman"] = rho
            per[e] = s
        out[estimand] = {"usable": [e for e, v in per.items() if v["flagged"] == 0], "estimators": per}
    return out


# ---------------------------------------------------------------------- source: log
def log_block(cfg: OPEStageConfig, log_dir: Path, *, seed: int) -> dict[str, Any]:
    """``source: log``: each logging policy's CTR from another's rows (module docstring)."""
    import pandas as pd

    from shopsim.evaluation.ope.diagnostics import CLICK_RANGE, THRESHOLDS, trust
    from shopsim.evaluation.ope.estimators import (
        LoggedBandit,
        check_action_dist,
        diagnostics,
        estimate,
        importance_weights,
    )
    from shopsim.evaluation.ope.feedback import from_events
    from shopsim.experiments.ope_obd import _trust_summary, bts_marginal, reward_model

    path = log_dir / "events.parquet"
    if not path.is_file():
        raise ShopsimError(f"{path}: no such file; ope.source: log reads the prepared log of the run")
    events = pd.read_parquet(path)
    fix = "use ope.source: simulator"
    if "propensity" not in events.columns or not events["propensity"].notna().any():
        raise ShopsimError(f"{path}: ope.source: log needs logged propensities and this log has none; {fix}")
    imp = events["event"] == "impression"
    ids = sorted(events.loc[imp, "item_id"].astype(str).unique())
    if "logging_policy" in events.columns:
        groups = {str(k): g for k, g in events.groupby("logging_policy", sort=True)}
    else:
        groups = {"logged": events}
    raw = {n: from_events(g, item_ids=ids, source=f"{path} [{n}]")[0] for n, g in groups.items()}
    n_actions = len(ids)
    n_positions = max(d.n_positions for d in raw.values())
    logs = {
        n: LoggedBandit(
            d.action,
            d.reward,
            d.pscore,
            n_actions=n_actions,
            position=d.position,
            n_positions=n_positions,
            meta=d.meta,
        )
        for n, d in raw.items()
    }
    estimators = [e for e in cfg.first_page_estimators if e in SINGLE_SLOT] or list(SINGLE_SLOT)

    def target_probs(name: str) -> np.ndarray:
        if name in ("random", "uniform"):
            return np.full((n_actions, n_positions), 1.0 / n_actions)
        return bts_marginal(logs[name])

    pairs = [(t, b) for t in logs for b in logs if t != b] or [("uniform", next(iter(logs)))]
    block: dict[str, Any] = {
        "source": "log",
        "config": _config_json(cfg),
        "note": "the run's policies act on simulator observations (a shopper state and simulated "
        "candidates) that the log's rounds do not carry, so they cannot be evaluated on this log; "
        "these are the logging policies' click-through rates per impression, each estimated from "
        "another logging policy's rows",
        "estimand": "click-through rate per impression (the log's reward is the click)",
        "n_actions": n_actions,
        "n_positions": n_positions,
        "logged_policies": {
            n: {
                "rows": d.n,
                "clicks": int(d.reward.sum()),
                "ctr": _ctr(d.reward, cfg.n_boot, seed),
                "mean_inverse_pscore": float(np.mean(1.0 / d.pscore)) if d.pscore is not None else None,
            }
            for n, d in logs.items()
        },
        "directions": {},
        "thresholds": dict(THRESHOLDS),
    }
    for target, behaviour in pairs:
        log = logs[behaviour]
        if log.pscore is None:
            raise ShopsimError(f"{path} [{behaviour}]: no logged propensities; {fix}")
        pi = np.broadcast_to(target_probs(target), (log.n, n_actions, n_positions))
        q = reward_model(log, seed=seed)
        w = importance_weights(log, check_action_dist(log, pi))
        tv = block["logged_policies"][target]["ctr"]["value"] if target in logs else None
        est: dict[str, dict[str, Any]] = {}
        for name in estimators:
            e = estimate(name, log, pi, q, n_boot=cfg.n_boot, seed=seed).to_json()
            e["trust"] = trust(name, e["value"], None if name == "dm" else w, CLICK_RANGE)
            e["ess"] = e["trust"]["ess"]
            if tv is not None:
                e["truth"] = tv
                e["rel_error"] = _rel(e["value"], tv)
                e["covers_truth"] = bool(e["ci95"][0] <= tv <= e["ci95"][1])
            est[name] = e
        block["directions"][f"{target}_from_{behaviour}"] = {
            "target": target,
            "behaviour": behaviour,
            "target_probabilities": "exact (uniform)"
            if target in ("random", "uniform")
            else "estimated: context-free, the target's own rows' shares per slot",
            "truth": block["logged_policies"][target]["ctr"] if target in logs else None,
            "rows": log.n,
            "estimates": est,
            "diagnostics": diagnostics(log, pi),
            "trust_summary": _trust_summary(est),
        }
    return block


def _ctr(reward: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    from shopsim.stats import bootstrap_mean_ci

    lo, hi = bootstrap_mean_ci(reward, n_boot=n_boot, seed=seed)
    return {"value": float(reward.mean()), "ci95": [lo, hi]}


# ---------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.1%}"


def ope_markdown(block: dict[str, Any]) -> str:
    """The ``ope`` block as Markdown (for results.md): per estimand a table of every policy's
    truth and estimates (value [95% CI], relative error, ⚠ when the trust check flags it),
    then each estimator's accuracy over the policies."""
    if block["source"] == "log":
        return _log_markdown(block)
    pages = sum(m["pages"] for m in block["logs"])
    sessions = sum(m["sessions"] for m in block["logs"])
    truth = {
        "run": "the run's own in-simulator evaluation",
        "computed": f"{block['config']['truth_episodes']:,} on-policy sessions per policy",
        "run+computed": "the run's evaluation, or on-policy sessions for policies it did not play",
        "none": "not computed",
    }[block["truth_source"]]
    lines = [
        f"Off-policy estimates from {pages:,} logged pages ({sessions:,} test sessions, "
        f"{len(block['logs'])} log(s)); behaviour: {block['behaviour']}; truth: {truth}.",
        "",
    ]
    for estimand in ESTIMANDS:
        ests = list(block["summary"][estimand]["estimators"])
        if not ests:
            continue
        lines += [
            f"**{estimand.replace('_', ' ')} value** ({block['estimands'][estimand]})",
            "",
            "| policy | truth [95% CI] | " + " | ".join(ests) + " |",
            "|---|---|" + "---|" * len(ests),
        ]
        for n, p in block["policies"].items():
            t = p["truth"]
            cell_t = "—" if t is None else _val_ci(t[estimand])
            cells = []
            for e in ests:
                x = p[estimand][e]
                c = _val_ci(x)
                if "rel_error" in x:
                    c += f" ({_pct(x['rel_error'])})"
                if x["trust"]["verdict"] != "ok":
                    c += " ⚠ " + ", ".join(x["trust"]["reasons"])
                cells.append(c)
            lines.append(f"| {n} | {cell_t} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| estimator | mean rel. error | max | CI covers truth | Spearman | flagged |",
            "|---|---|---|---|---|---|",
        ]
        for e, s in block["summary"][estimand]["estimators"].items():
            cov = "—" if "coverage" not in s else f"{s['coverage']:.0%}"
            sp = "—" if s.get("spearman") is None else f"{s['spearman']:.2f}"
            lines.append(
                f"| {e} | {_pct(s.get('rel_error_mean'))} | {_pct(s.get('rel_error_max'))} | {cov} | {sp} | "
                f"{s['flagged']}/{s['of']} |"
            )
        lines.append("")
    for e, why in block["skipped"]["estimators"].items():
        lines.append(f"- {e} not reported: {why}")
    for n, why in block["skipped"]["policies"].items():
        lines.append(f"- {n} not estimated: {why}")
    th = block["thresholds"]
    lines.append(
        f"⚠ = flagged by the trust check: outside_range (outside the estimand's possible range), low_ess "
        f"(ESS < max({th['min_ess']:.0f}, {th['min_ess_share']:.0%} of the logged sessions)), heavy_weight "
        f"(one session > {th['max_weight_share']:.0%} of the total weight)."
    )
    return "\n".join(lines)


def _val_ci(x: dict[str, Any]) -> str:
    lo, hi = x["ci95"]
    return f"{x['value']:.4f} [{lo:.4f}, {hi:.4f}]"


def _log_markdown(block: dict[str, Any]) -> str:
    lines = [f"Off-policy estimates on the shop's own log ({block['estimand']}). Note: {block['note']}.", ""]
    for key, d in block["directions"].items():
        t = d["truth"]
        head = "no on-policy truth in the log" if t is None else f"on-policy truth {_val_ci(t)}"
        lines += [
            f"**{key}** — {head}; {d['rows']:,} rows of {d['behaviour']}; target probabilities "
            f"{d['target_probabilities']}; ESS {d['diagnostics']['ess']:.0f}",
            "",
            "| estimator | value [95% CI] | relative error | covers truth | trust |",
            "|---|---|---|---|---|",
        ]
        for name, e in d["estimates"].items():
            cover = "—" if "covers_truth" not in e else ("yes" if e["covers_truth"] else "no")
            mark = "ok" if e["trust"]["verdict"] == "ok" else "⚠ " + ", ".join(e["trust"]["reasons"])
            lines.append(f"| {name} | {_val_ci(e)} | {_pct(e.get('rel_error'))} | {cover} | {mark} |")
        lines += ["", f"Trust: {d['trust_summary']['line']}", ""]
    return "\n".join(lines)


def plot_ope(block: dict[str, Any], path: Path) -> None:
    """Per policy and estimand: the truth with its 95% interval (black) and each reported
    estimator's estimate with its interval (coloured; hollow when the trust check flags it)."""
    from shopsim.plots import pyplot

    plt = pyplot()

    from shopsim.artifacts import atomic_file

    names = list(block["policies"])
    if block["truth_source"] != "none":
        names.sort(key=lambda n: block["policies"][n]["truth"]["session"]["value"])
    y = np.arange(len(names))
    est = [e for e in ESTIMANDS if block["summary"][e]["estimators"]]
    fig, axes = plt.subplots(
        1, len(est), figsize=(5.5 * len(est), 0.42 * len(names) + 1.8), sharey=True, squeeze=False
    )
    for ax, estimand in zip(axes[0], est, strict=True):
        es = list(block["summary"][estimand]["estimators"])
        step = 0.7 / (len(es) + 1)
        if block["truth_source"] != "none":
            t = np.array([block["policies"][n]["truth"][estimand]["value"] for n in names])
            ci = np.array([block["policies"][n]["truth"][estimand]["ci95"] for n in names])
            ax.errorbar(t, y - 0.35 + step / 2, xerr=[t - ci[:, 0], ci[:, 1] - t], fmt="D", color="k", ms=4,
                        capsize=2, label="truth (on-policy)")  # fmt: skip
        for j, e in enumerate(es):
            xs = [block["policies"][n][estimand][e] for n in names]
            v = np.array([x["value"] for x in xs])
            ci = np.array([x["ci95"] for x in xs])
            yy = y - 0.35 + step * (j + 1.5)
            line = ax.errorbar(v, yy, xerr=[v - ci[:, 0], ci[:, 1] - v], fmt="o", ms=4, capsize=2, label=e)
            bad = np.array([x["trust"]["verdict"] != "ok" for x in xs])
            if bad.any():
                ax.plot(v[bad], yy[bad], "o", ms=7, mfc="white", mec=line[0].get_color())
        ax.set_yticks(y, names)
        ax.set_xlabel("value")
        ax.set_title(f"{estimand.replace('_', ' ')} value (hollow: trust flagged)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


__all__ = [
    "DEFAULT_FIRST_PAGE",
    "DEFAULT_SESSION",
    "LOG_PROPENSITY_FORMATS",
    "OPEStageConfig",
    "check_ope",
    "log_block",
    "ope_markdown",
    "plot_ope",
    "run_ope_stage",
    "simulator_block",
]
