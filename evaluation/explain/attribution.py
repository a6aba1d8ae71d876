"""Exact Shapley attributions of a model's output over named inputs, with completeness.

A logit ``f(x)`` over a handful of named inputs (the shopper model's 17 click features, or a
policy's score over its candidate features and state) is split into one contribution per
input — or per *group* of inputs (players) — against a baseline input (the train-split mean of
the features): the interventional Shapley values

    φᵢ = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S)),
    v(S) = f(x on S, baseline elsewhere).

They are computed exactly, by evaluating ``f`` on all 2ⁿ coalitions (n ≤ :data:`MAX_PLAYERS`),
so **completeness** holds to rounding: Σφᵢ = f(x) − f(baseline). For a linear ``f`` they are
wᵢ (xᵢ − bᵢ); an input ``f`` does not read gets 0, two inputs ``f`` treats alike get the same.
Exact enumeration instead of sampling (KernelSHAP) or path integrals (integrated gradients,
whose Riemann sums meet completeness only approximately): with ≤ 20 players it is cheap, and
an explanation that does not add up is not one a merchandiser can check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import factorial

import numpy as np

from shopsim.errors import ShopsimError

MAX_PLAYERS = 20
"""Most players of an exact attribution (2²⁰ ≈ 1M evaluations of the model per explained row)."""

Model = Callable[[np.ndarray], np.ndarray]
"""A vectorised model: (rows, inputs) → (rows,) outputs (a logit, a score, a Q-value)."""


@dataclass(frozen=True)
class Attribution:
    """One explained output: ``value = base + contributions.sum()`` (to rounding)."""

    players: tuple[str, ...]
    contributions: np.ndarray
    """(players,) the Shapley value of each player."""
    value: float
    """f(x)."""
    base: float
    """f(baseline)."""

    @property
    def completeness_gap(self) -> float:
        """|Σ contributions − (value − base)|: 0 up to rounding for an exact attribution."""
        return float(abs(self.contributions.sum() - (self.value - self.base)))

    def ranked(self) -> list[tuple[str, float]]:
        """(player, contribution) from the largest |contribution| down."""
        order = np.argsort(-np.abs(self.contributions), kind="stable")
        return [(self.players[i], float(self.contributions[i])) for i in order]


def _coalitions(n: int) -> np.ndarray:
    """(2ⁿ, n) bool: row s holds player i iff bit i of s is set."""
    s = np.arange(1 << n, dtype=np.int64)[:, None]
    return ((s >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def _shapley_weights(n: int) -> np.ndarray:
    """w[k] = k! (n − k − 1)! / n! for a coalition of size k not holding the player."""
    return np.array([factorial(k) * factorial(n - k - 1) / factorial(n) for k in range(n)])


def shapley(
    model: Model,
    x: np.ndarray,
    baseline: np.ndarray,
    names: Sequence[str],
    groups: Sequence[Sequence[int]] | None = None,
    *,
    chunk: int = 1 << 16,
) -> list[Attribution]:
    """Exact interventional Shapley values of ``model`` at every row of ``x`` (rows, inputs)
    against ``baseline`` (inputs,): one player per input, or per group of input columns
    (``groups``, named by ``names``; every column in exactly one group)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
    n_inputs = x.shape[1]
    if baseline.shape[0] != n_inputs:
        raise ShopsimError(f"attribution: baseline has {baseline.shape[0]} inputs, the rows {n_inputs}")
    if groups is None:
        groups = [[i] for i in range(n_inputs)]
    if len(names) != len(groups):
        raise ShopsimError(f"attribution: {len(names)} names for {len(groups)} players")
    covered = sorted(i for g in groups for i in g)
    if covered != list(range(n_inputs)):
        raise ShopsimError("attribution: every input must belong to exactly one group")
    n = len(groups)
    if n > MAX_PLAYERS:
        raise ShopsimError(
            f"attribution: {n} players; exact Shapley takes at most {MAX_PLAYERS} (group inputs)"
        )
    members = _coalitions(n)  # (C, n)
    column_on = np.zeros((members.shape[0], n_inputs), dtype=bool)
    for p, g in enumerate(groups):
        column_on[:, list(g)] = members[:, [p]]
    size = members.sum(axis=1)
    weights = _shapley_weights(n)
    out: list[Attribution] = []
    for row in x:
        v = np.empty(members.shape[0])
        for start in range(0, members.shape[0], chunk):  # bounded memory for 2ⁿ × inputs
            on = column_on[start : start + chunk]
            v[start : start + chunk] = np.asarray(model(np.where(on, row, baseline)), dtype=np.float64)
        phi = np.empty(n)
        for p in range(n):
            without = ~members[:, p]
            idx = np.flatnonzero(without)
            phi[p] = np.sum(weights[size[idx]] * (v[idx | (1 << p)] - v[idx]))
        out.append(Attribution(tuple(names), phi, float(v[-1]), float(v[0])))
    return out


__all__ = ["MAX_PLAYERS", "Attribution", "Model", "shapley"]
