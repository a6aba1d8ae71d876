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
:func:`~shopsim.evaluation.ope.feedback.check_slate_propensities` in the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shopsim.agents.policy import EngineBound, batched, bind_engine, random_valid_slates
from shopsim.envs.engine import ShopperBatch


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


class StochasticSlate(EngineBound):
    """ε-mixture of uniform and Plackett–Luce(scores / temperature) slates (full support).

    :param base: any object with ``scores(obs) -> (B, N)`` (bound too if it is :class:`EngineBound`).
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

    def bind(self, engine: ShopperBatch) -> None:
        """Bind the base policy (if it reads the engine)."""
        bind_engine(self.base, engine)

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


def indicator_propensities(target_slate: np.ndarray, slate: np.ndarray) -> dict[str, np.ndarray]:
    """Propensities of ``slate`` under a *deterministic* policy that shows ``target_slate``:
    joint = 1{whole slate equal}, prefix = 1{first l items equal}, marginal = 1{same item at
    the slot} (all exact)."""
    same = np.asarray(target_slate) == np.asarray(slate)
    prefix = np.cumprod(same, axis=1).astype(np.float64)
    return {"joint": prefix[:, -1].copy(), "prefix": prefix, "marginal": same.astype(np.float64)}


def uniform_propensities(mask: np.ndarray, slate: np.ndarray) -> dict[str, np.ndarray]:
    """Propensities of ``slate`` under uniformly random valid slates (the ``random`` policy)."""
    n_valid = mask.astype(bool).sum(1).astype(np.float64)
    prefix = _unif_prefix(n_valid, slate.shape[1])
    marginal = np.repeat(1.0 / n_valid[:, None], slate.shape[1], axis=1)
    return {"joint": prefix[:, -1].copy(), "prefix": prefix, "marginal": marginal}


class MixtureSlate(EngineBound):
    """A randomised A/B/n behaviour policy over K policies with ε-uniform exploration.

    Each session (``assignment="session"``, the default — how shops run A/B tests) or each
    page (``assignment="page"``) is assigned one of the K policies uniformly; on every page, with
    probability ε the shown slate is a uniformly random valid slate instead of that policy's
    slate. A component may be ``None``: the uniformly random policy itself.

    Component k shows slate s with probability :math:`\\mu_k(s) = (1-ε)1\\{S_k = s\\} + ε
    P_{unif}(s)` (:math:`P_{unif}(s)` for the random component). The behaviour's probability of
    the shown slate given everything observed so far is exact:
    :math:`\\mu(s_t \\mid h_t) = \\sum_k P(k \\mid h_t)\\,\\mu_k(s_t)`, with the posterior
    :math:`P(k \\mid h_t) \\propto \\prod_{u<t} \\mu_k(s_u)` under session assignment (uniform under
    page assignment); prefix and marginal propensities likewise. The product of these
    per-page propensities over a session is the probability of the whole logged trajectory, so
    per-decision importance weights of a target that is one of the components are bounded by
    :math:`K/(1-ε)^{t+1}` after t + 1 pages — against :math:`(K/(1-ε))^{t+1}` under page
    assignment: session assignment is what makes session-level OPE feasible.

    After :meth:`predict`, ``slates[name]`` holds each deterministic component's slate for the
    same observation (targets among the components cost nothing extra) and ``last`` the
    propensities of the shown slate. Call :meth:`reset_rows` when rows start new sessions.
    """

    def __init__(
        self,
        policies: dict[str, Any],
        slate_size: int,
        *,
        epsilon: float = 0.1,
        assignment: str = "session",
        seed: int = 0,
    ) -> None:
        if not 0 < epsilon <= 1:
            raise ValueError(f"epsilon={epsilon}: must be in (0, 1] so every slate has positive probability")
        if assignment not in ("session", "page"):
            raise ValueError(f"assignment={assignment!r}: use 'session' or 'page'")
        if not policies:
            raise ValueError("MixtureSlate: needs at least one policy")
        self.policies, self.slate_size, self.epsilon = dict(policies), slate_size, epsilon
        self.assignment = assignment
        self.rng = np.random.default_rng(seed)
        self.name = "mixture"
        self.slates: dict[str, np.ndarray] = {}
        self.last: dict[str, np.ndarray] = {}
        self.assigned = np.zeros(0, np.int64)
        self.logpost = np.zeros((0, len(self.policies)))

    def bind(self, engine: ShopperBatch) -> None:
        """Bind every component policy that reads the engine."""
        for p in self.policies.values():
            bind_engine(p, engine)

    def reset_rows(self, rows: np.ndarray) -> None:
        """New sessions in ``rows``: draw their policy, forget their history."""
        rows = np.asarray(rows, dtype=np.int64)
        need = int(rows.max()) + 1 if len(rows) else 0
        if len(self.assigned) < need:
            grow = need - len(self.assigned)
            self.assigned = np.r_[self.assigned, np.zeros(grow, np.int64)]
            self.logpost = np.r_[self.logpost, np.zeros((grow, len(self.policies)))]
        self.assigned[rows] = self.rng.integers(0, len(self.policies), len(rows))
        self.logpost[rows] = 0.0

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Draw the shown slates and record their exact propensities in ``last``."""
        obs, single = batched(observation)
        mask = obs["cand_mask"].astype(bool)
        b, k = mask.shape[0], self.slate_size
        if len(self.assigned) != b:  # first call without the logger's reset_rows: every row is new
            self.assigned, self.logpost = self.assigned[:0], self.logpost[:0]
            self.reset_rows(np.arange(b))
        self.slates = {
            n: np.asarray(p.predict(obs, deterministic=True)[0], dtype=np.int64).reshape(b, k)
            for n, p in self.policies.items()
            if p is not None
        }
        comp = self.assigned if self.assignment == "session" else self.rng.integers(0, len(self.policies), b)
        unif = random_valid_slates(mask, k, self.rng)
        explore = np.asarray(self.rng.random(b) < self.epsilon)
        slate = unif.copy()
        for j, n in enumerate(self.policies):
            use = (comp == j) & ~explore
            if n in self.slates:
                slate[use] = self.slates[n][use]
        self.last = self.propensities(obs, slate, update=True)
        return (slate[0] if single else slate), state

    def component_propensities(
        self, obs: dict[str, np.ndarray], slate: np.ndarray
    ) -> list[dict[str, np.ndarray]]:
        """Each component's joint / prefix / marginal of ``slate`` (same observation)."""
        u = uniform_propensities(obs["cand_mask"], slate)
        out = []
        for n in self.policies:
            if n not in self.slates:
                out.append(u)
                continue
            ind = indicator_propensities(self.slates[n], slate)
            out.append({key: self.epsilon * u[key] + (1 - self.epsilon) * ind[key] for key in u})
        return out

    def propensities(
        self, obs: dict[str, np.ndarray], slate: np.ndarray, *, update: bool = False
    ) -> dict[str, np.ndarray]:
        """Exact joint (B,), prefix (B, k) and marginal (B, k) of ``slate`` given each row's
        history; ``update`` adds this page to the session posteriors."""
        comps = self.component_propensities(obs, slate)
        if self.assignment == "session":
            post = np.exp(self.logpost - self.logpost.max(1, keepdims=True))
            post /= post.sum(1, keepdims=True)
        else:
            post = np.full((len(slate), len(comps)), 1.0 / len(comps))
        out = {  # Σ_k P(k | h) μ_k, over the stacked (B, K, …) component propensities
            key: np.einsum("bk,bk...->b...", post, np.stack([c[key] for c in comps], axis=1))
            for key in ("joint", "prefix", "marginal")
        }
        if update and self.assignment == "session":
            self.logpost += np.log(np.stack([c["joint"] for c in comps], axis=1))
        return out


class ComponentTarget:
    """Target = one deterministic component of a :class:`MixtureSlate` (its slate of the current
    page is already computed by the behaviour)."""

    def __init__(self, mixture: MixtureSlate, name: str) -> None:
        self.mixture, self.name = mixture, name

    def propensities(self, obs: dict[str, np.ndarray], slate: np.ndarray) -> dict[str, np.ndarray]:
        return indicator_propensities(self.model_slate(obs), slate)

    def model_slate(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The slate the target shows on this page."""
        return self.mixture.slates[self.name]


class DeterministicTarget(EngineBound):
    """Target = any deterministic slate policy (``predict(obs, deterministic=True)``), evaluated
    once per page (cached on the observation object)."""

    def __init__(self, policy: Any, slate_size: int) -> None:
        self.policy, self.slate_size = policy, slate_size
        self._obs: object = None
        self._slate = np.zeros((0, slate_size), np.int64)

    def bind(self, engine: ShopperBatch) -> None:
        """Bind the target policy (if it reads the engine)."""
        bind_engine(self.policy, engine)

    def model_slate(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The slate the target shows on this page."""
        if obs is not self._obs:
            b = obs["cand_mask"].shape[0]
            self._slate = np.asarray(self.policy.predict(obs, deterministic=True)[0], np.int64).reshape(b, -1)
            self._obs = obs
        return self._slate

    def propensities(self, obs: dict[str, np.ndarray], slate: np.ndarray) -> dict[str, np.ndarray]:
        return indicator_propensities(self.model_slate(obs), slate)


class UniformTarget:
    """Target = the uniformly random policy (exact uniform propensities). Its ``model_slate`` is
    one uniform draw: an unbiased Monte-Carlo stand-in for the reward model's expectation."""

    def __init__(self, slate_size: int, seed: int = 0) -> None:
        self.slate_size = slate_size
        self.rng = np.random.default_rng(seed)

    def propensities(self, obs: dict[str, np.ndarray], slate: np.ndarray) -> dict[str, np.ndarray]:
        return uniform_propensities(obs["cand_mask"], slate)

    def model_slate(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return random_valid_slates(obs["cand_mask"].astype(bool), self.slate_size, self.rng)
