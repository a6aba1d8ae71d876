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
from functools import lru_cache
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


@lru_cache(maxsize=4)
def coalitions(n: int) -> np.ndarray:
    """(2ⁿ, n) bool: row s holds player i iff bit i of s is set (read-only, cached)."""
    s = np.arange(1 << n, dtype=np.int64)[:, None]
    out = ((s >> np.arange(n, dtype=np.int64)) & 1).astype(bool)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=4)
def _coefficients(n: int) -> np.ndarray:
    """(2ⁿ, n): φ = v @ coef. Player p gains w(|S| − 1) from each coalition S that holds it
    and loses w(|S|) from each that does not, w(k) = k! (n − k − 1)! / n!."""
    w = np.array([factorial(k) * factorial(n - k - 1) / factorial(n) for k in range(n)])
    members = coalitions(n)
    size = members.sum(axis=1)
    gain = w[np.maximum(size - 1, 0)][:, None]
    loss = w[np.minimum(size, n - 1)][:, None]
    out = np.where(members, gain, -loss)
    out.flags.writeable = False
    return out


def shapley_from_values(values: np.ndarray, names: Sequence[str]) -> list[Attribution]:
    """Exact Shapley values from the coalition values ``v(S)`` of each explained row: ``values``
    (rows, 2ⁿ), column s the coalition of :func:`coalitions` row s (0: the baseline, the last:
    every player). For models whose coalition values have a faster route than evaluating the
    model on 2ⁿ masked inputs (an affine first layer, see :mod:`.shopper` and :mod:`.policy_view`)."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n = len(names)
    if v.shape[1] != 1 << n:
        raise ShopsimError(f"attribution: {v.shape[1]} coalition values for {n} players (need 2^{n})")
    phi = v @ _coefficients(n)
    return [Attribution(tuple(names), phi[i], float(v[i, -1]), float(v[i, 0])) for i in range(len(v))]


def _check_groups(n_inputs: int, groups: Sequence[Sequence[int]] | None) -> list[list[int]]:
    out = [[i] for i in range(n_inputs)] if groups is None else [list(g) for g in groups]
    covered = sorted(i for g in out for i in g)
    if covered != list(range(n_inputs)):
        raise ShopsimError("attribution: every input must belong to exactly one group")
    if len(out) > MAX_PLAYERS:
        raise ShopsimError(
            f"attribution: {len(out)} players; exact Shapley takes at most {MAX_PLAYERS} (group inputs)"
        )
    return out


def model_coalition_values(
    model: Model,
    x: np.ndarray,
    baseline: np.ndarray,
    groups: Sequence[Sequence[int]] | None = None,
    *,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """(2ⁿ,) ``model`` on every coalition of the players (``groups`` of input columns) at the
    input row ``x``: the coalition's columns from ``x``, the others from ``baseline``."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if baseline.shape[0] != x.shape[0]:
        raise ShopsimError(f"attribution: baseline has {baseline.shape[0]} inputs, the rows {x.shape[0]}")
    groups = _check_groups(x.shape[0], groups)
    members = coalitions(len(groups))  # (C, n)
    column_on = np.zeros((members.shape[0], x.shape[0]), dtype=bool)
    for p, g in enumerate(groups):
        column_on[:, g] = members[:, [p]]
    values = np.empty(members.shape[0])
    for start in range(0, members.shape[0], chunk):  # bounded memory for 2ⁿ × inputs
        on = column_on[start : start + chunk]
        values[start : start + chunk] = np.asarray(model(np.where(on, x, baseline)), dtype=np.float64)
    return values


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
    n_players = x.shape[1] if groups is None else len(groups)
    if len(names) != n_players:
        raise ShopsimError(f"attribution: {len(names)} names for {n_players} players")
    values = [model_coalition_values(model, row, baseline, groups, chunk=chunk) for row in x]
    return shapley_from_values(np.stack(values) if values else np.empty((0, 1 << n_players)), names)


__all__ = [
    "MAX_PLAYERS",
    "Attribution",
    "Model",
    "coalitions",
    "model_coalition_values",
    "shapley",
    "shapley_from_values",
]
