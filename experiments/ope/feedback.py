"""Logged feedback in Open Bandit Pipeline's ``bandit_feedback`` dict formats, both ways.

obp does not install on Python ≥ 3.11, but its dict formats are the lingua franca of OPE code:

* **single slot / position-wise** (``OpenBanditDataset.obtain_batch_bandit_feedback``):
  ``n_rounds`` int, ``n_actions`` int, ``action`` (n,) int64, ``position`` (n,) int64
  (0-based), ``reward`` (n,) float64, ``pscore`` (n,) float64, ``context`` (n, d) float64,
  ``action_context`` (n_actions, d_a) float64;
* **slates, long format** (``SyntheticSlateBanditDataset.obtain_batch_bandit_feedback``): one
  row per (slate, slot): ``n_rounds``, ``n_unique_action``, ``len_list``, ``slate_id``,
  ``position``, ``action``, ``reward`` (n_rounds · len_list,), ``context`` (n_rounds, d), and the
  three behaviour propensities ``pscore`` (joint: the whole slate), ``pscore_cascade`` (prefix:
  the slate up to and including this slot) and ``pscore_item_position`` (marginal: this item at
  this slot), which must satisfy joint ≤ prefix ≤ marginal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shopsim.errors import ShopsimError
from shopsim.experiments.ope.estimators import LoggedBandit

SINGLE_KEYS = ("n_rounds", "n_actions", "action", "position", "reward", "pscore", "context", "action_context")
SLATE_KEYS = (
    "n_rounds",
    "n_unique_action",
    "len_list",
    "slate_id",
    "position",
    "action",
    "reward",
    "context",
    "pscore",
    "pscore_cascade",
    "pscore_item_position",
)


def to_bandit_feedback(
    data: LoggedBandit, context: np.ndarray | None = None, action_context: np.ndarray | None = None
) -> dict[str, Any]:
    """obp's single-slot ``bandit_feedback`` dict (context/action_context default to empty columns)."""
    if data.pscore is None:
        raise ShopsimError("pscore: obp's bandit_feedback needs propensities; this log has none")
    ctx = np.zeros((data.n, 0)) if context is None else np.asarray(context, np.float64)
    actx = np.zeros((data.n_actions, 0)) if action_context is None else np.asarray(action_context, np.float64)
    if ctx.shape[0] != data.n:
        raise ShopsimError(f"context: {ctx.shape[0]} rows but the log has {data.n} rounds")
    if actx.shape[0] != data.n_actions:
        raise ShopsimError(f"action_context: {actx.shape[0]} rows but the log has {data.n_actions} actions")
    return {
        "n_rounds": int(data.n),
        "n_actions": int(data.n_actions),
        "action": data.action.astype(np.int64),
        "position": data.position.astype(np.int64),
        "reward": data.reward.astype(np.float64),
        "pscore": data.pscore.astype(np.float64),
        "context": ctx,
        "action_context": actx,
    }


def from_bandit_feedback(feedback: dict[str, Any]) -> LoggedBandit:
    """A :class:`LoggedBandit` from obp's single-slot dict (validated like any other input)."""
    missing = [k for k in ("n_actions", "action", "reward") if k not in feedback]
    if missing:
        raise ShopsimError(f"bandit_feedback: missing key(s) {', '.join(missing)}")
    position = feedback.get("position")
    n_positions = int(np.max(position)) + 1 if position is not None and len(position) else 1
    return LoggedBandit(
        feedback["action"],
        feedback["reward"],
        feedback.get("pscore"),
        n_actions=int(feedback["n_actions"]),
        position=position,
        n_positions=n_positions,
    )


def check_slate_propensities(
    joint: np.ndarray, prefix: np.ndarray, marginal: np.ndarray, atol: float = 1e-12
) -> None:
    """joint ≤ prefix ≤ marginal, all in (0, 1]: one clear error for the first violation."""
    for name, p in (("pscore", joint), ("pscore_cascade", prefix), ("pscore_item_position", marginal)):
        bad = ~((p > 0) & (p <= 1 + atol))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ShopsimError(f"{name}: row {i} is {float(p[i])!r}, outside (0, 1]")
    for (a, pa), (b, pb) in (
        (("pscore", joint), ("pscore_cascade", prefix)),
        (("pscore_cascade", prefix), ("pscore_item_position", marginal)),
    ):
        bad = pa > pb + atol
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ShopsimError(
                f"{a} > {b} at row {i} ({float(pa[i]):.6g} > {float(pb[i]):.6g}); a slate cannot be more "
                "likely than its prefix, nor a prefix more likely than one of its items at its slot"
            )
