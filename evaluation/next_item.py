"""Held-out next-item results with uncertainty: session-bootstrap intervals of the per-target
metrics of :mod:`shopsim.data.next_item`.

Targets of one session are correlated, so 95% intervals come from a bootstrap over *sessions*
(1,000 resamples, seeded); comparisons use the paired bootstrap of the per-target difference on
the same resamples.
"""

from __future__ import annotations

import numpy as np

from shopsim.data.next_item import NextItemTask


def _session_resamples(sessions: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Bootstrap resamples of target indices, drawing whole sessions with replacement."""
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(sessions, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(uniq))]
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        out.append(np.concatenate([members[i] for i in pick]) if len(pick) else np.zeros(0, int))
    return out


def bootstrap_ci(
    values: np.ndarray, sessions: np.ndarray, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and 95% session-bootstrap interval of per-target ``values``."""
    if len(values) == 0:
        return (float("nan"), float("nan"), float("nan"))
    means = [values[idx].mean() for idx in _session_resamples(sessions, n_boot, seed)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(lo), float(hi)


def paired_difference_ci(
    a: np.ndarray, b: np.ndarray, sessions: np.ndarray, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same targets, with its 95% paired session-bootstrap interval."""
    return bootstrap_ci(a - b, sessions, n_boot=n_boot, seed=seed)


def summarize(
    task: NextItemTask, metrics: dict[str, np.ndarray], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, object]]:
    """``{"overall"|"cold": {metric: {"value", "ci95"}, "n"}}`` for a model's per-target metrics."""
    out: dict[str, dict[str, object]] = {}
    for name, mask in (("overall", np.ones(len(task), bool)), ("cold", task.cold)):
        block: dict[str, object] = {"n": int(mask.sum())}
        for m, v in metrics.items():
            value, lo, hi = bootstrap_ci(v[mask], task.session_of_target[mask], n_boot=n_boot, seed=seed)
            block[m] = {"value": round(value, 4), "ci95": [round(lo, 4), round(hi, 4)]}
        out[name] = block
    return out
