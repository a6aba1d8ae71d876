"""Off-policy estimators for multi-step sessions: per-decision and weighted per-decision IS.

A logged session i is a sequence of decisions t = 0 … T_i − 1 with reward :math:`r_{i,t}` and
importance ratio :math:`\\rho_{i,t} = \\pi_e(A_{i,t} \\mid s_{i,t}) / \\pi_b(A_{i,t} \\mid s_{i,t})`
(for slates: the joint slate probabilities). With cumulative weights
:math:`w_{i,t} = \\prod_{u \\le t} \\rho_{i,u}`:

* ``pdis`` — per-decision importance sampling (Precup, Sutton & Singh 2000), unbiased:
  :math:`\\frac1n \\sum_i \\sum_t \\gamma^t w_{i,t} r_{i,t}`;
* ``wpdis`` — weighted per-decision IS, biased but consistent and bounded by the rewards at
  each step: :math:`\\sum_t \\gamma^t \\frac{\\sum_i w_{i,t} r_{i,t}}{\\sum_i w_{i,t}}`.

Sessions have different lengths: a finished session is treated as absorbed (reward 0, ratio 1
afterwards), the usual convention (Jiang & Li 2016), so its weight keeps counting in WPDIS's
denominators.
"""

from __future__ import annotations

import numpy as np

from shopsim.errors import ShopsimError
from shopsim.experiments.ope.estimators import Estimate

SESSION_ESTIMATORS = ("pdis", "wpdis")


def pad_sessions(rewards: list[np.ndarray], ratios: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged per-session rewards and ratios → (n, T) arrays, absorbed after the end."""
    if len(rewards) != len(ratios):
        raise ShopsimError(f"sessions: {len(rewards)} reward sequences but {len(ratios)} ratio sequences")
    if not rewards:
        raise ShopsimError("sessions: no logged sessions")
    horizon = max(len(r) for r in rewards)
    r_out = np.zeros((len(rewards), horizon))
    rho_out = np.ones((len(rewards), horizon))
    for i, (r, rho) in enumerate(zip(rewards, ratios, strict=True)):
        if len(r) != len(rho):
            raise ShopsimError(f"session {i}: {len(r)} rewards but {len(rho)} importance ratios")
        rho = np.asarray(rho, float)
        if len(rho) and (not np.isfinite(rho).all() or (rho < 0).any()):
            raise ShopsimError(f"session {i}: importance ratios must be finite and ≥ 0")
        r_out[i, : len(r)] = r
        rho_out[i, : len(rho)] = rho
    return r_out, rho_out


def _values(name: str, r: np.ndarray, w: np.ndarray, disc: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Estimates for each row of bootstrap ``counts`` (B, n)."""
    if name == "pdis":
        return counts @ ((w * r) @ disc) / r.shape[0]
    num = counts @ (w * r)  # (B, T)
    den = counts @ w
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0) @ disc


def session_estimate(
    name: str,
    rewards: list[np.ndarray],
    ratios: list[np.ndarray],
    *,
    gamma: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """``pdis`` or ``wpdis`` with a bootstrap 95% interval over sessions."""
    if name not in SESSION_ESTIMATORS:
        raise ShopsimError(f"estimator {name!r}: unknown; choose from {', '.join(SESSION_ESTIMATORS)}")
    r, rho = pad_sessions(rewards, ratios)
    w = np.cumprod(rho, axis=1)
    disc = gamma ** np.arange(r.shape[1])
    value = float(_values(name, r, w, disc, np.ones((1, len(r))))[0])
    counts = np.random.default_rng(seed).multinomial(len(r), np.full(len(r), 1.0 / len(r)), size=n_boot)
    lo, hi = np.percentile(_values(name, r, w, disc, counts.astype(float)), [2.5, 97.5])
    return Estimate(value, (float(lo), float(hi)))
