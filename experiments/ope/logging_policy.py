"""Stochastic logging policies with exact slate propensities recorded at decision time.

:class:`StochasticSlate` turns any scoring policy (``scores(obs) -> (B, N)``, e.g. every
:class:`~shopsim.agents.policy.ScoringPolicy`) into a full-support behaviour policy: with
probability ε a uniformly random slate of valid candidates, otherwise a Plackett–Luce slate over
``scores / temperature``. For the slate it shows it returns

* ``joint`` — P(the whole ordered slate) = ε·P_unif + (1 − ε)·P_PL (exact);
* ``prefix`` (B, k) — P(the slate's first l items in order), l = 1 … k (exact, same mixture);
* ``marginal`` (B, k) — P(item at its slot): exact for slot 1; for deeper slots the PL part has
  no closed form and is estimated from ``n_mc`` Gumbel-top-k draws (a labelled Monte-Carlo
  estimate, kept ≥ the prefix probability); ``n_mc=0`` skips it (NaN below slot 1).

Invariants joint ≤ prefix ≤ marginal hold by construction (checked by
:func:`~shopsim.experiments.ope.feedback.check_slate_propensities` in the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shopsim.agents.policy import batched, random_valid_slates


def _pl_prefix(scores: np.ndarray, mask: np.ndarray, slate: np.ndarray) -> np.ndarray:
    """(B, k) probabilities of each prefix of ``slate`` under Plackett–Luce(scores) on valid items."""
    s = np.where(mask, scores, -np.inf)
    s = s - s.max(1, keepdims=True)
    e = np.where(mask, np.exp(s), 0.0)
    rows = np.arange(len(s))
    left = e.sum(1)
    out = np.empty(slate.shape)
    p = np.ones(len(s))
    for j in range(slate.shape[1]):
        ej = e[rows, slate[:, j]]
        p = p * ej / left
        out[:, j] = p
        left = left - ej
    return out


def _unif_prefix(n_valid: np.ndarray, k: int) -> np.ndarray:
    """(B, k) probability of any given ordered prefix of length l under a uniform slate."""
    return np.cumprod(1.0 / (n_valid[:, None] - np.arange(k)[None, :]), axis=1)


class StochasticSlate:
    """ε-mixture of uniform and Plackett–Luce(scores / temperature) slates (full support).

    :param base: any object with ``scores(obs) -> (B, N)`` (and optionally ``bind``).
    :param epsilon: share of uniformly random slates, in (0, 1] for full support.
    :param temperature: > 0; lower = closer to the base policy's top-k.
    """

    def __init__(
        self,
        base: Any,
        slate_size: int,
        *,
        epsilon: float = 0.1,
        temperature: float = 1.0,
        n_mc: int = 1000,
        seed: int = 0,
    ) -> None:
        if not 0 < epsilon <= 1:
            raise ValueError(f"epsilon={epsilon}: must be in (0, 1] so every slate has positive probability")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}: must be > 0")
        self.base, self.slate_size = base, slate_size
        self.epsilon, self.temperature, self.n_mc = epsilon, temperature, n_mc
        self.rng = np.random.default_rng(seed)
        self.name = f"stochastic_{getattr(base, 'name', 'policy')}"
        self.last: dict[str, np.ndarray] = {}
        self.record = True
        """Record propensities on every draw (off for on-policy Monte-Carlo rollouts)."""

    def bind(self, core: Any) -> None:
        if hasattr(self.base, "bind"):
            self.base.bind(core)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Draw slates and record their propensities in ``self.last``."""
        obs, single = batched(observation)
        mask = obs["cand_mask"].astype(bool)
        b, k = mask.shape[0], self.slate_size
        s = np.asarray(self.base.scores(obs), dtype=np.float64) / self.temperature
        s = np.where(mask, s, -np.inf)
        g = s + self.rng.gumbel(size=s.shape)
        pl = np.argsort(-g, axis=1)[:, :k]
        unif = random_valid_slates(mask, k, self.rng)
        explore = np.asarray(self.rng.random(b) < self.epsilon)
        slate = np.where(explore[:, None], unif, pl)
        self.last = self.propensities(obs, slate, s) if self.record else {}
        return (slate[0] if single else slate), state

    def propensities(
        self, obs: dict[str, np.ndarray], slate: np.ndarray, scaled_scores: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """``joint`` (B,), ``prefix`` (B, k), ``marginal`` (B, k) of ``slate`` under this policy."""
        mask = obs["cand_mask"].astype(bool)
        s = (
            np.where(mask, np.asarray(self.base.scores(obs), float) / self.temperature, -np.inf)
            if scaled_scores is None
            else scaled_scores
        )
        k = slate.shape[1]
        n_valid = mask.sum(1).astype(float)
        eps = self.epsilon
        prefix = eps * _unif_prefix(n_valid, k) + (1 - eps) * _pl_prefix(s, mask, slate)
        # marginals: uniform part exact (1/n at every slot); PL part exact at slot 1, MC below
        pl_marg = np.empty(slate.shape)
        pl_marg[:, 0] = _pl_prefix(s, mask, slate[:, :1])[:, 0]
        if k > 1 and self.n_mc == 0:
            pl_marg[:, 1:] = np.nan  # not computed (n_mc = 0): estimators needing marginals refuse NaN
        elif k > 1:
            for lo in range(0, len(s), 16):  # row chunks bound memory: 16 × n_mc × N keys
                c = slice(lo, lo + 16)
                keys = s[c, None, :] + self.rng.gumbel(size=(len(s[c]), self.n_mc, s.shape[1]))
                draws = np.argsort(-keys, axis=2)[:, :, :k]
                pl_marg[c, 1:] = (draws[:, :, 1:] == slate[c, None, 1:]).mean(1)
        marginal = eps / n_valid[:, None] + (1 - eps) * pl_marg
        marginal = np.maximum(marginal, prefix)  # MC noise must not break prefix ≤ marginal
        return {"joint": prefix[:, -1].copy(), "prefix": prefix, "marginal": marginal}
