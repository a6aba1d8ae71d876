"""The reward model of DM / DR on simulator logs, cross-fitted over sessions.

:math:`\\hat q(x, i, l) = m_l\\,\\sigma(\\theta^\\top \\phi(x, i) + \\beta_l)` — a logistic click
model on the agent-visible candidate features :math:`\\phi` (the observation's ``cand_feat``)
with one intercept per slot, times :math:`m_l`, the mean slot reward per click at slot l (1 for
the default click reward; purchases, revenue … enter through it). A page's model value is
:math:`\\hat q(x, s) = c_0 + \\sum_l \\hat q(x, s_l, l)`, with :math:`c_0` the mean non-slot part
of the page reward (0 for slot-additive rewards).

It deliberately does not read the simulator's own click model: an estimator validated with
the true model would say nothing about logs from a real shop. Fitting is L2-regularised IRLS
(Newton) on standardised features. :func:`cross_fit` fits on one half of the sessions and
predicts the other (Chernozhukov et al. 2018's cross-fitting), so no round's model value has
seen that round's reward.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from shopsim.errors import ShopsimError


class SlotRewardModel:
    """:math:`\\hat q(x, i, l)` (see the module docstring).

    :param l2: ridge penalty on the standardised feature weights (not the slot intercepts).
    :param iters: Newton iterations (converges in < 10 on shop logs).
    """

    def __init__(self, l2: float = 1.0, iters: int = 15) -> None:
        self.l2, self.iters = l2, iters
        self.mu = self.sd = self.theta = self.m = np.zeros(0)
        self.c0 = 0.0

    def _design(self, feat: np.ndarray) -> np.ndarray:
        n, k, f = feat.shape
        z = (feat.reshape(-1, f) - self.mu) / self.sd
        slot = np.zeros((n * k, k))
        slot[np.arange(n * k), np.tile(np.arange(k), n)] = 1.0
        return np.concatenate([z, slot], axis=1)

    def fit(
        self, feat: np.ndarray, clicks: np.ndarray, slot_reward: np.ndarray, page_reward: np.ndarray
    ) -> SlotRewardModel:
        """``feat`` (n, k, F) features of the shown slates, ``clicks``/``slot_reward`` (n, k),
        ``page_reward`` (n,)."""
        if len(feat) == 0:
            raise ShopsimError("reward model: no logged pages to fit on")
        _, k, f = feat.shape
        flat = feat.reshape(-1, f).astype(np.float64)
        self.mu, self.sd = flat.mean(0), flat.std(0) + 1e-8
        x = self._design(feat)
        y = clicks.reshape(-1).astype(np.float64)
        theta = np.zeros(x.shape[1])
        base = np.clip(clicks.mean(0), 1e-4, 1 - 1e-4)
        theta[f:] = np.log(base / (1 - base))  # start at each slot's click rate
        pen = np.r_[np.full(f, self.l2), np.full(k, 1e-6)]
        for _ in range(self.iters):
            p = expit(x @ theta)
            grad = x.T @ (y - p) - pen * theta
            hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(pen)
            step = np.linalg.solve(hess, grad)
            theta = theta + step
            if np.abs(step).max() < 1e-6:
                break
        self.theta = theta
        per_click = slot_reward.sum(0) / np.maximum(clicks.sum(0), 1.0)
        self.m = np.where(clicks.sum(0) > 0, per_click, 0.0)
        self.c0 = float((page_reward - slot_reward.sum(1)).mean())
        return self

    def predict(self, feat: np.ndarray) -> np.ndarray:
        """(n, k) slot values :math:`\\hat q(x, s_l, l)` of slates with features ``feat``."""
        n, k, _ = feat.shape
        p = expit(self._design(feat) @ self.theta)
        return p.reshape(n, k) * self.m[None, :k]


def cross_fit(
    fold: np.ndarray,
    feat: np.ndarray,
    clicks: np.ndarray,
    slot_reward: np.ndarray,
    page_reward: np.ndarray,
    others: dict[str, np.ndarray],
    *,
    l2: float = 1.0,
) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Two-fold cross-fitted slot values of the logged slates and of each ``others[name]``
    slate (same rows), plus the mean non-slot page part c0. ``fold`` (n,) is 0/1 per row
    (whole sessions on one side)."""
    q = np.zeros(clicks.shape)
    q_other = {name: np.zeros(clicks.shape) for name in others}
    c0 = 0.0
    for side in (0, 1):
        train, test = fold != side, fold == side
        if not train.any() or not test.any():
            raise ShopsimError("reward model: cross-fitting needs logged sessions in both folds")
        model = SlotRewardModel(l2=l2).fit(feat[train], clicks[train], slot_reward[train], page_reward[train])
        q[test] = model.predict(feat[test])
        for name, f in others.items():
            q_other[name][test] = model.predict(f[test])
        c0 += model.c0 / 2
    return q, q_other, c0
