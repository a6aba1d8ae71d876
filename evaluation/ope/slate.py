"""Slate off-policy estimators for additive slot rewards, :math:`V = E[\\sum_l r_l]`.

Logged slates :math:`A_t = (a_{t,1}, …, a_{t,L})` with per-slot rewards :math:`r_{t,l}` and three
weights from the behaviour and target propensities (see :mod:`.feedback` for the invariants):

* joint :math:`w_t = \\pi_e(A_t) / \\pi_b(A_t)`;
* prefix :math:`w_{t,1:l} = \\pi_e(a_{t,1:l}) / \\pi_b(a_{t,1:l})`;
* marginal :math:`w_{t,l} = \\pi_e(a_{t,l} \\text{ at } l) / \\pi_b(a_{t,l} \\text{ at } l)`.

Estimators:

* ``sips`` — standard IPS, :math:`\\frac1n\\sum_t w_t \\sum_l r_{t,l}`: unbiased, high variance
  (Li et al. 2018);
* ``iips`` — independent IPS, :math:`\\frac1n\\sum_{t,l} w_{t,l} r_{t,l}`: unbiased only when each
  slot's reward depends on that slot's item alone (biased on cascade clicks; Li et al. 2018);
* ``rips`` — reward-interaction IPS, :math:`\\frac1n\\sum_{t,l} w_{t,1:l} r_{t,l}`: unbiased when a
  slot's reward depends on the items above it only (cascade; McInerney et al. 2020);
* ``pi`` — pseudo-inverse (Swaminathan et al. 2017) for a slate-level reward
  :math:`R_t = \\sum_l r_{t,l}` under a behaviour policy that fills slots independently:
  :math:`\\frac1n\\sum_t R_t (\\sum_l w_{t,l} - L + 1)`; with one slot it is IPS;
* ``cascade_dr`` — Cascade-DR (Kiyohara et al. 2022) with a reward model
  :math:`\\hat q_l(x, a_{1:l})` and its expectation under the target at slot l given the logged
  prefix, :math:`\\hat q^{\\pi}_l`: :math:`\\frac1n\\sum_{t,l} [w_{t,1:l}(r_{t,l} - \\hat q_{t,l}) +
  w_{t,1:l-1} \\hat q^{\\pi}_{t,l}]`; with a zero model it is RIPS.
"""

from __future__ import annotations

import numpy as np

from shopsim.errors import ShopsimError
from shopsim.evaluation.ope.estimators import Estimate
from shopsim.stats import bootstrap_mean_ci

SLATE_ESTIMATORS = ("sips", "iips", "rips", "pi", "cascade_dr")


def _ratio(num: np.ndarray, den: np.ndarray, name: str) -> np.ndarray:
    if num.shape != den.shape:
        raise ShopsimError(
            f"{name}: target and behaviour propensities have shapes {num.shape} and {den.shape}"
        )
    if (den <= 0).any() or (den > 1 + 1e-12).any():
        raise ShopsimError(f"{name}: behaviour propensities must be in (0, 1]")
    return num / den


def slate_round_values(
    name: str,
    reward: np.ndarray,
    *,
    joint: tuple[np.ndarray, np.ndarray] | None = None,
    prefix: tuple[np.ndarray, np.ndarray] | None = None,
    marginal: tuple[np.ndarray, np.ndarray] | None = None,
    q_hat: np.ndarray | None = None,
    q_hat_pi: np.ndarray | None = None,
) -> np.ndarray:
    """Per-slate terms (n,) whose mean is the estimate.

    :param reward: (n, L) slot rewards.
    :param joint: (target, behaviour) probabilities of the whole slate, each (n,).
    :param prefix: (target, behaviour) probabilities of the prefix up to each slot, (n, L).
    :param marginal: (target, behaviour) probabilities of each item at its slot, (n, L).
    :param q_hat: (n, L) reward model at the logged prefix; ``q_hat_pi`` its target expectation.
    """
    r = np.asarray(reward, dtype=np.float64)
    if r.ndim != 2:
        raise ShopsimError(f"reward: expected (slates, slots), got shape {r.shape}")
    need = {"sips": joint, "iips": marginal, "rips": prefix, "pi": marginal, "cascade_dr": prefix}
    if name not in need:
        raise ShopsimError(f"estimator {name!r}: unknown; choose from {', '.join(SLATE_ESTIMATORS)}")
    props = need[name]
    if props is None:
        kind = {"sips": "joint", "iips": "marginal", "pi": "marginal"}.get(name, "prefix")
        raise ShopsimError(
            f"{name}: needs {kind} propensities (pscore{'' if kind == 'joint' else '_' + kind})"
        )
    w = _ratio(np.asarray(props[0], float), np.asarray(props[1], float), name)
    if name == "sips":
        return w * r.sum(1)
    if name in ("iips", "rips"):
        return (w * r).sum(1)
    if name == "pi":
        return r.sum(1) * (w.sum(1) - r.shape[1] + 1)
    # cascade_dr
    q = np.zeros_like(r) if q_hat is None else np.asarray(q_hat, float)
    qpi = np.zeros_like(r) if q_hat_pi is None else np.asarray(q_hat_pi, float)
    w_prev = np.concatenate([np.ones((len(r), 1)), w[:, :-1]], axis=1)
    return (w * (r - q) + w_prev * qpi).sum(1)


def slate_estimate(
    name: str, reward: np.ndarray, *, n_boot: int = 1000, seed: int = 0, **props: object
) -> Estimate:
    """The estimate with a bootstrap 95% interval over slates (see :func:`slate_round_values`)."""
    v = slate_round_values(name, reward, **props)  # type: ignore[arg-type]
    return Estimate(float(v.mean()), bootstrap_mean_ci(v, n_boot=n_boot, seed=seed))
