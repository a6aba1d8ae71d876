"""Off-policy estimators for multi-step sessions: per-decision and weighted per-decision IS.

A logged session i is a sequence of decisions t = 0 … T_i − 1 with reward :math:`r_{i,t}` and
importance ratio :math:`\\rho_{i,t} = \\pi_e(A_{i,t} \\mid s_{i,t}) / \\pi_b(A_{i,t} \\mid s_{i,t})`
(for slates: the joint slate probabilities). With cumulative weights
:math:`w_{i,t} = \\prod_{u \\le t} \\rho_{i,u}`:

* ``pdis`` — per-decision importance sampling (Precup, Sutton & Singh 2000), unbiased:
  :math:`\\frac1n \\sum_i \\sum_t \\gamma^t w_{i,t} r_{i,t}`;
* ``wpdis`` — weighted per-decision IS, biased but consistent and bounded by the rewards at
  each step: :math:`\\sum_t \\gamma^t \\frac{\\sum_i w_{i,t} r_{i,t}}{\\sum_i w_{i,t}}`;
* ``dr`` — step-wise doubly robust (Jiang & Li 2016; Thomas & Brunskill 2016) with a model
  :math:`\\hat q_{i,t} = \\hat Q(s_{i,t}, A_{i,t})` at the logged action and its target value
  :math:`\\hat v_{i,t} = E_{A \\sim \\pi_e}\\hat Q(s_{i,t}, A)`:
  :math:`\\frac1n \\sum_i \\sum_t \\gamma^t [w_{i,t}(r_{i,t} - \\hat q_{i,t}) + w_{i,t-1}\\hat v_{i,t}]`
  (:math:`w_{i,-1} = 1`); unbiased for any model, and PDIS when the model is zero;
* ``wdr`` — weighted DR (Thomas & Brunskill 2016): each step's two sums divided by
  :math:`\\sum_i w_{i,t}` and :math:`\\sum_i w_{i,t-1}` instead of n.

Sessions have different lengths: a finished session is treated as absorbed (reward 0, ratio 1
afterwards), the usual convention (Jiang & Li 2016), so its weight keeps counting in WPDIS's
denominators.
"""

from __future__ import annotations

import numpy as np

from shopsim.errors import ShopsimError
from shopsim.evaluation.ope.estimators import Estimate
from shopsim.stats import boot_counts, percentile_interval

SESSION_ESTIMATORS = ("pdis", "wpdis", "dr", "wdr")
NEEDS_MODEL = {"dr", "wdr"}


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


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def session_values(
    name: str,
    r: np.ndarray,
    w: np.ndarray,
    disc: np.ndarray,
    counts: np.ndarray,
    q: np.ndarray | None = None,
    v: np.ndarray | None = None,
) -> np.ndarray:
    """Estimates for each row of bootstrap ``counts`` (B, n) from padded (n, T) rewards ``r``,
    cumulative weights ``w`` and, for ``dr``/``wdr``, the model's ``q`` and ``v``."""
    n = r.shape[0]
    if name == "pdis":
        return counts @ ((w * r) @ disc) / n
    if name == "wpdis":
        return _ratio(counts @ (w * r), counts @ w) @ disc
    if q is None or v is None:
        raise ShopsimError(
            f"{name}: needs a reward model (q_hat at the logged actions and v_hat under the target)"
        )
    w_prev = np.concatenate([np.ones((n, 1)), w[:, :-1]], axis=1)
    if name == "dr":
        return counts @ ((w * (r - q) + w_prev * v) @ disc) / n
    if name == "wdr":
        return (
            _ratio(counts @ (w * (r - q)), counts @ w) + _ratio(counts @ (w_prev * v), counts @ w_prev)
        ) @ disc
    raise ShopsimError(f"estimator {name!r}: unknown; choose from {', '.join(SESSION_ESTIMATORS)}")


def session_estimate(
    name: str,
    rewards: list[np.ndarray],
    ratios: list[np.ndarray],
    *,
    q_hat: list[np.ndarray] | None = None,
    v_hat: list[np.ndarray] | None = None,
    gamma: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """A session estimator (``pdis``, ``wpdis``, ``dr``, ``wdr``) with a bootstrap 95% interval
    over sessions; ``q_hat``/``v_hat`` are per-session model values for the DR estimators."""
    if name not in SESSION_ESTIMATORS:
        raise ShopsimError(f"estimator {name!r}: unknown; choose from {', '.join(SESSION_ESTIMATORS)}")
    r, rho = pad_sessions(rewards, ratios)
    q = v = None
    if name in NEEDS_MODEL:
        if q_hat is None or v_hat is None:
            raise ShopsimError(
                f"{name}: needs a reward model (q_hat at the logged actions and v_hat under the target)"
            )
        q, _ = pad_sessions(q_hat, ratios)
        v, _ = pad_sessions(v_hat, ratios)
    counts = boot_counts(len(r), n_boot, seed)
    return padded_session_estimate(name, r, np.cumprod(rho, axis=1), counts, q, v, gamma=gamma)


def padded_session_estimate(
    name: str,
    r: np.ndarray,
    w: np.ndarray,
    counts: np.ndarray,
    q: np.ndarray | None = None,
    v: np.ndarray | None = None,
    *,
    gamma: float = 1.0,
) -> Estimate:
    """:func:`session_estimate` on padded arrays (cumulative weights ``w``) and given counts."""
    disc = gamma ** np.arange(r.shape[1])
    value = float(session_values(name, r, w, disc, np.ones((1, len(r))), q, v)[0])
    return Estimate(value, percentile_interval(session_values(name, r, w, disc, counts, q, v)))
