"""Held-out next-item results with uncertainty: session-bootstrap intervals of the per-target
metrics of :mod:`shopsim.data.next_item`.

Targets of one session are correlated, so 95% intervals come from a bootstrap over *sessions*
(1,000 resamples, seeded); comparisons use the paired bootstrap of the per-target difference on
the same resamples (:func:`shopsim.stats.grouped_mean_ci`, :func:`shopsim.stats.paired_difference_ci`).
"""

from __future__ import annotations

import numpy as np

from shopsim.data.next_item import NextItemTask
from shopsim.stats import grouped_mean_ci


def summarize(
    task: NextItemTask, metrics: dict[str, np.ndarray], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, object]]:
    """``{"overall"|"cold": {metric: {"value", "ci95"}, "n"}}`` for a model's per-target metrics."""
    out: dict[str, dict[str, object]] = {}
    for name, mask in (("overall", np.ones(len(task), bool)), ("cold", task.cold)):
        block: dict[str, object] = {"n": int(mask.sum())}
        for m, v in metrics.items():
            value, lo, hi = grouped_mean_ci(v[mask], task.session_of_target[mask], n_boot=n_boot, seed=seed)
            block[m] = {"value": round(value, 4), "ci95": [round(lo, 4), round(hi, 4)]}
        out[name] = block
    return out
