"""Fit stage: the leave model, P(leave) after a logged step from the step number and whether
the step bought something. The effect of a slate without a click is not in the logs (they only
record steps with an interaction), so it enters as the configured assumption
``leave_no_click_logit``."""

from __future__ import annotations

from typing import Any

import numpy as np

from shopsim.envs.model.episodes import Episodes, leave_examples
from shopsim.envs.model.response import Scorer, fit_scorer


def fit_leave(
    episodes: dict[str, Episodes], *, impressions: bool, leave_no_click_logit: float, seed: int
) -> tuple[Scorer, dict[str, Any]]:
    """Fit the leave model on the valid episodes (train when valid has no leave rows); returns
    the scorer and its report."""
    lx, ly, lg = leave_examples(episodes["valid"], sequence=not impressions)
    if len(ly) == 0:
        lx, ly, lg = leave_examples(episodes["train"], sequence=not impressions)
    scorer = fit_scorer(lx, ly.astype(float), lg, hidden=0, seed=seed).scorer
    report = {
        "features": ["log1p(step)", "bought this step"],
        "fit_rows": len(ly),
        "weights": {
            "bias": round(scorer.b2, 4),
            "w": np.round(scorer.w2 / scorer.std, 4).tolist(),
        },
        "leave_no_click_logit": {
            "value": leave_no_click_logit,
            "kind": "assumption",
            "why": "logs only record steps with an interaction; the effect of a slate without a click "
            "cannot be measured",
        },
    }
    return scorer, report
