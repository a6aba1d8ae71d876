"""When an off-policy estimate can be trusted: one verdict per estimate, for every OPE report.

:func:`trust` gives each estimate a block ``{verdict, reasons, kind, range, n, ess, ess_share,
max_weight, max_weight_share}``; ``shopsim ope obd`` and ``shopsim ope validate`` attach it to
every estimate, mark flagged ones in their tables and name the estimators that remain usable
(:func:`usable`, :func:`summary_line`).

**Weight statistics.** For importance weights :math:`w_1 … w_n` (the weights the estimator
multiplies rewards with):

* Kish's effective sample size :math:`\\mathrm{ESS} = (\\sum_t w_t)^2 / \\sum_t w_t^2` (Kish 1965;
  for importance sampling Kong 1992, Liu 1996: :math:`\\mathrm{ESS} \\approx n / (1 + \\mathrm{Var}\\,w)`
  when :math:`E w = 1`), and its share of n;
* the largest weight and its share of :math:`\\sum_t w_t`.

Weights per slot or per step (an (n, L) array: slate marginal or prefix weights, a session's
cumulative weights per step) are summarised by their *worst* column, the one with the smallest
ESS (the max weight share is the largest over columns), since every column's weights enter the
estimate.

**Reasons** (in this order; none = verdict ``ok``, else ``flagged``):

* ``outside_range`` — the point estimate lies outside the reward's possible range (clicks per
  slot: [0, 1]; a page of k slots under a bounded :class:`~shopsim.envs.rewards.WeightedReward`:
  :func:`page_reward_range`; a session of at most ``max_steps`` pages: :func:`session_return_range`),
  beyond a float tolerance of :data:`RANGE_TOL` × the range's width. No value of the target can
  be there, so the estimate is wrong whatever its interval says. Checked for every estimator.
* ``low_ess`` — :math:`\\mathrm{ESS} < \\max(` :data:`MIN_ESS` :math:`,` :data:`MIN_ESS_SHARE`
  :math:`\\cdot n)`. The floor of 100 is the ESS below which a bootstrap percentile interval of a
  mean has too few effective draws in its tails to be read (the same floor Vehtari et al. 2021,
  *Rank-normalization … for assessing convergence of MCMC*, Bayesian Analysis 16(2), recommend
  before reporting Monte-Carlo quantiles: ESS > 100 per chain). The 1% share says
  :math:`E_b[w^2] \\gtrsim 100`, i.e. the target is so far from the logger
  (:math:`\\chi^2(\\pi_e \\| \\pi_b) \\gtrsim 99`) that the sample has probably not reached the
  target's mass at all, and the Kish ESS, computed from the same weights, overstates the
  information (Owen 2013, *Monte Carlo theory, methods and examples*, §9.3; Chatterjee &
  Diaconis 2018, *The sample size required in importance sampling*, Ann. Appl. Probab.: the log
  needs about :math:`\\exp(\\mathrm{KL}(\\pi_e \\| \\pi_b))` rows); an A/B test on 1% of the traffic
  would measure the target as precisely.
* ``heavy_weight`` — one weight carries more than :data:`MAX_WEIGHT_SHARE` (5%) of
  :math:`\\sum_t w_t`: a single logged round then moves a self-normalised estimate by up to 5%
  of the reward's range when its reward changes, and bounds the ESS by
  :math:`1/0.05^2 = 400` whatever n is.

The weight rules apply to the estimators whose value rests on raw importance weights
(:data:`KIND` ``importance``: IPS, SNIPS, PDIS, WPDIS and the slate IPS family; ``doubly_robust``:
DR, SNDR, WDR, Cascade-DR, whose correction term is weighted by them and so has the same
variance). Model-based DM (``model``) uses no weights. The shrinkage estimators (``shrinkage``:
Switch-DR replaces the correction by the model where :math:`w > λ`, DRos shrinks :math:`w` to
:math:`λw/(w^2+λ) \\le \\sqrt{λ}/2`, clipped IPS caps it at λ) bound the weights they use: where
the shrinkage changed at least one round's weight (``shrunk_rows`` > 0) they trade the
variance for the reward model's bias and remain usable (with that bias) under low overlap;
where it changed none (Switch-DR or clipped IPS with every :math:`w \\le λ`) the estimate *is* DR
or IPS and gets their weight rules. Every block reports the raw weights' statistics, so the
overlap is visible whatever the verdict.

Neither Open Bandit Pipeline 0.5.7 nor SCOPE-RL ships a verdict like this (both report
estimates and intervals only), so the thresholds above are shopsim's, with the reasons given;
:data:`THRESHOLDS` writes them into every JSON that carries trust blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from shopsim.envs.rewards import WeightedReward
from shopsim.evaluation.ope.estimators import DEFAULT_LAMBDA

MIN_ESS = 100.0
"""Absolute ESS floor (see the module docstring)."""
MIN_ESS_SHARE = 0.01
"""ESS floor as a share of the rounds."""
MAX_WEIGHT_SHARE = 0.05
"""Largest share of Σw one round may carry."""
RANGE_TOL = 1e-9
"""Float tolerance of the range check, relative to the range's width (at least 1)."""
THRESHOLDS: dict[str, float] = {
    "min_ess": MIN_ESS,
    "min_ess_share": MIN_ESS_SHARE,
    "max_weight_share": MAX_WEIGHT_SHARE,
    "range_tol": RANGE_TOL,
}
"""The thresholds as written into the JSON reports (``trust_thresholds``)."""

REASONS = ("outside_range", "low_ess", "heavy_weight")
CLICK_RANGE = (0.0, 1.0)
"""Possible values of a click (one slot of one round)."""

KIND: dict[str, str] = {
    **dict.fromkeys(("ips", "snips", "pdis", "wpdis", "sips", "iips", "rips", "pi"), "importance"),
    **dict.fromkeys(("dr", "sndr", "wdr", "cascade_dr"), "doubly_robust"),
    "dm": "model",
    **dict.fromkeys(("switch_dr", "dros", "ips_clip"), "shrinkage"),
}
"""Estimator name → kind; the weight rules apply to ``importance`` and ``doubly_robust``."""
WEIGHT_RULED = frozenset({"importance", "doubly_robust"})


def page_reward_range(reward: WeightedReward, slate_size: int) -> tuple[float, float] | None:
    """Possible range of one page's reward under ``reward`` with ``slate_size`` slots, or None
    when a term is unbounded (``revenue``: prices have no upper bound; ``novelty``: −log
    popularity neither).

    Each slot's click, purchase, cross-category and basket terms are 0/1 indicators times their
    weight, the diversity term is at most its weight (distinct categories / k ≤ 1), no-click and
    leave count once; the bound takes every negative term at its most negative and every
    positive one at its largest, so it holds whatever the terms' joint law."""
    if reward.revenue or reward.novelty:
        return None
    slot = (reward.click, reward.purchase, reward.cross_category, reward.basket)
    page = (reward.diversity, reward.no_click, reward.leave)
    lo = slate_size * sum(min(w, 0.0) for w in slot) + sum(min(w, 0.0) for w in page)
    hi = slate_size * sum(max(w, 0.0) for w in slot) + sum(max(w, 0.0) for w in page)
    return float(lo), float(hi)


def session_return_range(page: tuple[float, float] | None, max_steps: int) -> tuple[float, float] | None:
    """Possible range of an undiscounted session return of 1 … ``max_steps`` pages, each in ``page``."""
    if page is None:
        return None
    lo, hi = page
    return float(min(lo, lo * max_steps)), float(max(hi, hi * max_steps))


def weight_stats(weights: ArrayLike) -> dict[str, float | int | None]:
    """n, ESS, ESS share, max weight and its share of Σw of importance weights (n,) or, per
    slot/step, (n, L): then the column with the smallest ESS (max weight and share: over all)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[:, None]
    n = int(w.shape[0])
    total = w.sum(0)
    sq = (w**2).sum(0)
    ess_cols = np.divide(total**2, sq, out=np.zeros_like(total), where=sq > 0)
    j = int(np.argmin(ess_cols))
    share = np.divide(w.max(0), total, out=np.ones_like(total), where=total > 0)
    ess = float(ess_cols[j])
    return {
        "n": n,
        "ess": ess,
        "ess_share": ess / n,
        "max_weight": float(w.max()),
        "max_weight_share": float(share.max()),
    }


def shrunk_rows(name: str, weights: np.ndarray, lam: float | None = None) -> int:
    """Rounds whose weight the shrinkage estimator ``name`` changes (λ: its default unless given):
    Switch-DR and clipped IPS change the weights above λ, DRos every positive weight."""
    lm = DEFAULT_LAMBDA[name] if lam is None else float(lam)
    w = np.asarray(weights, dtype=np.float64)
    changed = w > lm if name in ("switch_dr", "ips_clip") else lm * w / (w**2 + lm) != w
    return int(changed.reshape(len(w), -1).any(1).sum())


def trust(
    name: str,
    value: float | None,
    weights: ArrayLike | None,
    value_range: tuple[float, float] | None,
    *,
    lam: float | None = None,
) -> dict[str, Any]:
    """The trust block of one estimate (module docstring): ``name`` picks the kind (:data:`KIND`),
    ``value`` the point estimate, ``weights`` the raw importance weights the estimate rests on
    (None for DM), ``value_range`` the estimand's possible range (None = unknown, unchecked) and
    ``lam`` a shrinkage estimator's λ (default: :data:`~.estimators.DEFAULT_LAMBDA`)."""
    kind = KIND.get(name, "importance")
    reasons: list[str] = []
    if value_range is not None and value is not None:
        lo, hi = value_range
        tol = RANGE_TOL * max(1.0, hi - lo)
        if not (lo - tol <= value <= hi + tol):
            reasons.append("outside_range")
    stats: dict[str, float | int | None] = {
        "n": None,
        "ess": None,
        "ess_share": None,
        "max_weight": None,
        "max_weight_share": None,
    }
    shrunk = None
    if weights is not None and kind != "model":
        stats = weight_stats(weights)
        if kind == "shrinkage":
            shrunk = shrunk_rows(name, np.asarray(weights, dtype=np.float64), lam)
        if kind in WEIGHT_RULED or shrunk == 0:
            n, ess, wshare = stats["n"], stats["ess"], stats["max_weight_share"]
            assert isinstance(n, int)
            assert isinstance(ess, float)
            assert isinstance(wshare, float)
            if ess < max(MIN_ESS, MIN_ESS_SHARE * n):
                reasons.append("low_ess")
            if wshare > MAX_WEIGHT_SHARE:
                reasons.append("heavy_weight")
    return {
        "verdict": "flagged" if reasons else "ok",
        "reasons": reasons,
        "kind": kind,
        "range": None if value_range is None else [float(value_range[0]), float(value_range[1])],
        **stats,
        "shrunk_rows": shrunk,
    }


def usable(trusts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the estimates whose verdict is ``ok`` (in the given order)."""
    return [name for name, t in trusts.items() if t["verdict"] == "ok"]


def mark(t: Mapping[str, Any]) -> str:
    """The table cell of a trust block: ``ok`` or ``⚠ reason, reason``."""
    return "ok" if t["verdict"] == "ok" else "⚠ " + ", ".join(t["reasons"])


def summary_line(trusts: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: the usable estimators and their kinds, then the flagged ones with reasons."""
    ok = usable(trusts)
    flagged = [f"{n} ({', '.join(t['reasons'])})" for n, t in trusts.items() if t["verdict"] != "ok"]
    head = (
        "usable here: " + ", ".join(f"{n} ({trusts[n]['kind']})" for n in ok)
        if ok
        else "no estimate is usable here"
    )
    return head + ("; flagged: " + ", ".join(flagged) if flagged else "; none flagged")


__all__ = [
    "CLICK_RANGE",
    "KIND",
    "MAX_WEIGHT_SHARE",
    "MIN_ESS",
    "MIN_ESS_SHARE",
    "RANGE_TOL",
    "REASONS",
    "THRESHOLDS",
    "mark",
    "page_reward_range",
    "session_return_range",
    "shrunk_rows",
    "summary_line",
    "trust",
    "usable",
    "weight_stats",
]
