"""OPE on the Open Bandit Dataset: estimate one logging policy's CTR from the other's logs.

The folder holds ``random/`` and ``bts/`` sub-folders, each with one campaign's log CSV
(whatever its name; ``.csv`` or ``.csv.gz``) and ``item_context.csv`` (or ``.csv.gz``). Both
policies ran on the same platform in the same period, so the on-policy CTR of one is the ground
truth for estimates computed from the other's logs (with its own bootstrap interval: ~40
clicks per 10k rows make it noisy).

Target probabilities:

* ``random_from_bts`` — uniform random: :math:`\\pi_e(a \\mid p) = 1/|A|` at every slot.
* ``bts_from_random`` — Bernoulli Thompson Sampling is context-free: at time t it shows item a
  at slot p with :math:`\\pi_t(a, p)`, the same for every user. The logs give one value of
  :math:`\\pi_t` per row (the logged item's propensity), so the policy *as it ran over the
  period* is the time average :math:`\\bar\\pi(a, p) = \\frac1T \\sum_t \\pi_t(a, p)`, and the value
  the BTS log measures on-policy is that of :math:`\\bar\\pi`. Its unbiased estimate is the
  share of BTS rows at slot p that showed a: :math:`\\hat\\pi(a, p) = n_{bts}(a, p) / n_{bts}(p)`
  (:math:`E[1\\{a_t = a\\}] = E[\\pi_t(a, p)]`). Averaging the *logged propensities* of item a
  instead would be size-biased (rows where a was likely are over-represented:
  :math:`E[\\pi_t(a) \\mid a_t = a] = E[\\pi_t(a)^2] / \\bar\\pi(a) \\ge \\bar\\pi(a)`); the report
  shows the logged propensities' own check, :math:`\\frac1T\\sum_t 1/\\text{pscore}_t` ≈ the number
  of (item, slot) pairs shown with positive probability.

Reward model (DM, DR, SNDR, Switch-DR, DRos): a click-through rate per (item, slot), shrunk
towards the slot's CTR with an empirical-Bayes prior of strength ``prior`` rows, and
**cross-fitted**: the model used for a row is fitted on the other folds only.

Trust: every estimate carries a ``trust`` block (:func:`shopsim.evaluation.ope.diagnostics.trust`
on the rows' importance weights and the click range [0, 1]); each direction a ``trust_summary``
naming the usable estimators; the file the thresholds (``trust_thresholds``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopsim.artifacts import write_text_atomic
from shopsim.errors import ShopsimError
from shopsim.evaluation.ope.diagnostics import CLICK_RANGE, THRESHOLDS, mark, summary_line, trust, usable
from shopsim.evaluation.ope.estimators import (
    SINGLE_SLOT,
    LoggedBandit,
    check_action_dist,
    diagnostics,
    estimate,
    importance_weights,
)
from shopsim.stats import bootstrap_mean_ci

NEED = ("item_id", "position", "click", "propensity_score")


CSV_SUFFIXES = (".csv", ".csv.gz")
"""A policy folder's files that count as CSVs: plain or gzipped (the bundled sample ships
``.csv.gz``)."""
ITEM_CONTEXT = tuple(f"item_context{suffix}" for suffix in CSV_SUFFIXES)


def read_policy_log(folder: Path) -> pd.DataFrame:
    """The one log CSV (``.csv`` or ``.csv.gz``) of a policy folder (any name except
    ``item_context.csv``/``item_context.csv.gz``)."""
    if not folder.is_dir():
        raise ShopsimError(f"{folder}: no such folder; expected random/ and bts/ sub-folders")
    csvs = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(CSV_SUFFIXES) and p.name not in ITEM_CONTEXT
    )
    if len(csvs) != 1:
        found = ", ".join(p.name for p in csvs) or "none"
        raise ShopsimError(
            f"{folder}: expected exactly one log CSV (.csv or .csv.gz) besides item_context, found {found}"
        )
    try:
        df = pd.read_csv(csvs[0])  # a .gz is decompressed (compression inferred from the name)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShopsimError(
            f"{csvs[0]}: cannot be read as an Open Bandit Dataset CSV ({first}); pass the dataset's own files"
        ) from None
    missing = [c for c in NEED if c not in df.columns]
    if missing:
        raise ShopsimError(
            f"{csvs[0]}: missing column(s) {', '.join(missing)}; is this an Open Bandit Dataset log?"
        )
    if df.empty:
        raise ShopsimError(f"{csvs[0]}: no rows")
    return df


def to_bandit(df: pd.DataFrame, n_actions: int, n_positions: int, source: str) -> LoggedBandit:
    """Rows → :class:`LoggedBandit` (positions 1-based in the CSV, 0-based here)."""
    try:
        return LoggedBandit(
            df["item_id"].to_numpy(),
            df["click"].to_numpy(),
            df["propensity_score"].to_numpy(),
            n_actions=n_actions,
            position=df["position"].to_numpy() - 1,
            n_positions=n_positions,
            meta={"source": source},
        )
    except ShopsimError as exc:
        raise ShopsimError(f"{source}: {exc}") from None


def reward_model(data: LoggedBandit, *, folds: int = 2, prior: float = 200.0, seed: int = 0) -> np.ndarray:
    """Cross-fitted shrunk CTR per (item, slot): (n, n_actions, n_positions)."""
    fold = np.random.default_rng(seed).integers(0, folds, data.n)
    q = np.zeros((data.n, data.n_actions, data.n_positions))
    for f in range(folds):
        train = fold != f
        shape = (data.n_actions, data.n_positions)
        n_ap = np.zeros(shape)
        c_ap = np.zeros(shape)
        np.add.at(n_ap, (data.action[train], data.position[train]), 1.0)
        np.add.at(c_ap, (data.action[train], data.position[train]), data.reward[train])
        slot_ctr = c_ap.sum(0) / np.maximum(n_ap.sum(0), 1.0)
        q[fold == f] = (c_ap + prior * slot_ctr) / (n_ap + prior)
    return q


def bts_marginal(bts: LoggedBandit) -> np.ndarray:
    """π̂(a, p) = share of BTS rows at slot p that showed a (see the module docstring)."""
    counts = np.zeros((bts.n_actions, bts.n_positions))
    np.add.at(counts, (bts.action, bts.position), 1.0)
    return counts / np.maximum(counts.sum(0, keepdims=True), 1.0)


def _truth(log: LoggedBandit, n_boot: int, seed: int) -> dict[str, Any]:
    lo, hi = bootstrap_mean_ci(log.reward, n_boot=n_boot, seed=seed)
    return {"value": float(log.reward.mean()), "ci95": [lo, hi]}


def run_obd(folder: Path, out: Path, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Both directions, every single-slot estimator; writes ``out/ope_obd.json``."""
    if not folder.is_dir():
        raise ShopsimError(
            f"{folder}: no such folder; point at an Open Bandit Dataset folder with random/ and bts/"
        )
    raw = {name: read_policy_log(folder / name) for name in ("random", "bts")}
    n_actions = int(max(df["item_id"].max() for df in raw.values())) + 1
    n_positions = int(max(df["position"].max() for df in raw.values()))
    logs = {name: to_bandit(df, n_actions, n_positions, f"{folder / name}") for name, df in raw.items()}
    targets = {
        "random": np.full((n_actions, n_positions), 1.0 / n_actions),
        "bts": bts_marginal(logs["bts"]),
    }
    report: dict[str, Any] = {"n_actions": n_actions, "n_positions": n_positions}
    for target, behaviour in (("random", "bts"), ("bts", "random")):
        log = logs[behaviour]
        pi = np.broadcast_to(targets[target], (log.n, n_actions, n_positions))
        q = reward_model(log, seed=seed)
        est = {name: estimate(name, log, pi, q, n_boot=n_boot, seed=seed).to_json() for name in SINGLE_SLOT}
        w = importance_weights(log, check_action_dist(log, pi))
        for name, e in est.items():  # a click is 0 or 1 at every slot: the CTR is in [0, 1]
            e["trust"] = trust(name, e["value"], None if name == "dm" else w, CLICK_RANGE)
        report[f"{target}_from_{behaviour}"] = {
            "truth": _truth(logs[target], n_boot, seed),
            "estimates": est,
            "diagnostics": diagnostics(log, pi),
            "rows": log.n,
            "clicks": int(log.reward.sum()),
            "mean_inverse_pscore": float(np.mean(1.0 / log.pscore)) if log.pscore is not None else None,
            "trust_summary": _trust_summary(est),
        }
    report["trust_thresholds"] = dict(THRESHOLDS)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "ope_obd.json", json.dumps(report, indent=2) + "\n")
    return report


def _trust_summary(est: dict[str, dict[str, Any]]) -> dict[str, Any]:
    trusts = {name: e["trust"] for name, e in est.items()}
    return {
        "usable": usable(trusts),
        "flagged": {name: t["reasons"] for name, t in trusts.items() if t["verdict"] != "ok"},
        "line": summary_line(trusts),
    }


def obd_markdown(report: dict[str, Any]) -> str:
    """Both directions' tables: each estimate against the truth and its trust verdict
    (:mod:`shopsim.evaluation.ope.diagnostics`), then one line naming the usable estimators."""
    lines = []
    for key in ("random_from_bts", "bts_from_random"):
        d = report[key]
        t = d["truth"]
        lines += [
            f"**{key}** — on-policy truth {t['value']:.5f} [{t['ci95'][0]:.5f}, {t['ci95'][1]:.5f}]; "
            f"{d['rows']:,} logged rows, {d['clicks']} clicks; ESS {d['diagnostics']['ess']:.0f}, "
            f"max weight {d['diagnostics']['max_weight']:.2f}, "
            f"mean weight {d['diagnostics']['mean_weight']:.3f}",
            "",
            "| estimator | value | 95% CI | contains truth | relative error | trust |",
            "|---|---|---|---|---|---|",
        ]
        for name, e in d["estimates"].items():
            inside = e["ci95"][0] <= t["value"] <= e["ci95"][1]
            rel = abs(e["value"] - t["value"]) / t["value"] if t["value"] else float("nan")
            lines.append(
                f"| {name} | {e['value']:.5f} | [{e['ci95'][0]:.5f}, {e['ci95'][1]:.5f}] | "
                f"{'yes' if inside else 'no'} | {rel:.2f} | {mark(e['trust']) if 'trust' in e else '—'} |"
            )
        if "trust_summary" in d:
            lines += ["", f"Trust: {d['trust_summary']['line']}"]
        lines.append("")
    if "trust_thresholds" in report:
        th = report["trust_thresholds"]
        lines.append(
            f"⚠ flags: outside_range = the estimate is outside the reward's range [0, 1]; "
            f"low_ess = ESS < max({th['min_ess']:.0f}, {th['min_ess_share']:.0%} of rows); "
            f"heavy_weight = one row carries > {th['max_weight_share']:.0%} of the total importance weight "
            "(weight rules: IS and DR estimators, and switch_dr/dros where their shrinkage changed "
            "no weight; dm is model-based)"
        )
        lines.append("")
    return "\n".join(lines)
