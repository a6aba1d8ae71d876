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
from shopsim.evaluation.ope.estimators import LoggedBandit

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


def from_events(
    events: Any,
    *,
    reward_events: tuple[str, ...] = ("click",),
    item_ids: list[str] | None = None,
    source: str = "events",
) -> tuple[LoggedBandit, list[str]]:
    """Canonical events (:mod:`shopsim.data.schema`, e.g. ``events.parquet`` of ``shopsim data prepare``)
    → position-wise :class:`LoggedBandit`.

    One round per ``impression`` row with a ``position``: the action is its item, the position
    0-based, the propensity the row's ``propensity``; the reward is 1 when an event of
    ``reward_events`` exists for the same slate (``slate_id``, else ``session_id``), item and
    position. Actions are coded in ``item_ids`` order (default: sorted ids of the impressions),
    returned alongside. Impressions without a position are refused with their count; when no row
    has a propensity the log gets ``pscore=None`` (IPS-type estimators then refuse; see
    :func:`~shopsim.evaluation.ope.estimators.with_estimated_pscore`), and a log where only
    some rows have one is refused (mixing is never silent).
    """
    import pandas as pd

    df = pd.DataFrame(events)
    missing = [c for c in ("session_id", "item_id", "event", "position") if c not in df.columns]
    if missing:
        raise ShopsimError(f"{source}: missing column(s) {', '.join(missing)}; expected canonical events")
    imp = df[df["event"] == "impression"]
    if imp.empty:
        raise ShopsimError(f"{source}: no impression rows; off-policy evaluation needs what was shown")
    no_pos = int(imp["position"].isna().sum())
    if no_pos:
        raise ShopsimError(
            f"{source}: {no_pos} impression rows have no position; every shown item needs its slot"
        )
    slate_col = "slate_id" if "slate_id" in df.columns and df["slate_id"].notna().all() else "session_id"
    key = [slate_col, "item_id", "position"]
    hits = df[df["event"].isin(reward_events)][key].drop_duplicates().assign(_hit=1.0)
    rounds = imp.merge(hits, on=key, how="left")
    reward = rounds["_hit"].fillna(0.0).to_numpy()
    ids = sorted(imp["item_id"].astype(str).unique()) if item_ids is None else list(item_ids)
    code = {v: i for i, v in enumerate(ids)}
    unknown = set(rounds["item_id"].astype(str)) - set(code)
    if unknown:
        raise ShopsimError(
            f"{source}: {len(unknown)} shown items are not in item_ids (e.g. {sorted(unknown)[0]})"
        )
    action = rounds["item_id"].astype(str).map(code).to_numpy()
    position = rounds["position"].astype("int64").to_numpy() - 1
    pscore = None
    if "propensity" in rounds.columns and rounds["propensity"].notna().any():
        n_missing = int(rounds["propensity"].isna().sum())
        if n_missing:
            raise ShopsimError(
                f"{source}: {n_missing} of {len(rounds)} impressions have no propensity; "
                "drop them or use the estimated-propensity mode for the whole log"
            )
        pscore = rounds["propensity"].astype(float).to_numpy()
    try:
        data = LoggedBandit(
            action, reward, pscore, n_actions=len(ids), position=position,
            n_positions=int(position.max()) + 1, meta={"source": source},
        )  # fmt: skip
    except ShopsimError as exc:
        raise ShopsimError(f"{source}: {exc}") from None
    return data, ids


def to_slate_bandit_feedback(
    log: dict[str, Any], n_unique_action: int, context: np.ndarray | None = None
) -> dict[str, Any]:
    """obp's long slate format from a simulator log (:func:`~.sim_logging.log_in_simulator`):
    one row per (page, slot) with the shown item as the action, the slot reward (or click) as
    the reward, and the behaviour's joint / prefix / marginal propensities. obp's optional
    synthetic-data keys (``expected_reward_factual``, ``pi_b``) have no counterpart in logs and
    are not written."""
    items = np.asarray(log["items"], dtype=np.int64)
    n, k = items.shape
    reward = np.asarray(log.get("slot_reward", log["slot_clicks"]), dtype=np.float64)
    joint, prefix, marginal = log["pscore_joint"], log["pscore_prefix"], log["pscore_marginal"]
    for j in range(k):
        check_slate_propensities(joint, prefix[:, j], marginal[:, j], atol=1e-9)
    ctx = np.zeros((n, 0)) if context is None else np.asarray(context, np.float64)
    if ctx.shape[0] != n:
        raise ShopsimError(f"context: {ctx.shape[0]} rows but the log has {n} slates")
    return {
        "n_rounds": int(n),
        "n_unique_action": int(n_unique_action),
        "len_list": int(k),
        "slate_id": np.repeat(np.arange(n, dtype=np.int64), k),
        "position": np.tile(np.arange(k, dtype=np.int64), n),
        "action": items.reshape(-1),
        "reward": reward.reshape(-1),
        "context": ctx,
        "pscore": np.repeat(np.asarray(joint, np.float64), k),
        "pscore_cascade": np.asarray(prefix, np.float64).reshape(-1),
        "pscore_item_position": np.asarray(marginal, np.float64).reshape(-1),
    }


def from_slate_bandit_feedback(feedback: dict[str, Any]) -> dict[str, np.ndarray]:
    """obp's long slate dict → (slates, slots) arrays ``items``, ``reward`` and the propensities
    ``pscore_joint`` (n,), ``pscore_prefix`` and ``pscore_marginal`` (n, k), validated."""
    missing = [key for key in SLATE_KEYS if key != "context" and key not in feedback]
    if missing:
        raise ShopsimError(f"slate bandit_feedback: missing key(s) {', '.join(missing)}")
    n, k = int(feedback["n_rounds"]), int(feedback["len_list"])
    for key in SLATE_KEYS[3:]:
        if key != "context" and np.shape(feedback[key]) != (n * k,):
            raise ShopsimError(
                f"slate bandit_feedback: {key} has shape {np.shape(feedback[key])}, "
                f"expected (n_rounds · len_list,) = ({n * k},)"
            )
    order = np.lexsort((feedback["position"], feedback["slate_id"]))

    def grid(key: str) -> np.ndarray:
        return np.asarray(feedback[key])[order].reshape(n, k)

    if not (grid("position") == np.arange(k)).all():
        raise ShopsimError("slate bandit_feedback: every slate needs positions 0 … len_list − 1 exactly once")
    joint_rows = grid("pscore")
    if not np.allclose(joint_rows, joint_rows[:, :1]):
        raise ShopsimError("slate bandit_feedback: pscore (the joint propensity) differs within a slate")
    out = {
        "items": grid("action").astype(np.int64),
        "reward": grid("reward").astype(np.float64),
        "pscore_joint": joint_rows[:, 0].astype(np.float64),
        "pscore_prefix": grid("pscore_cascade").astype(np.float64),
        "pscore_marginal": grid("pscore_item_position").astype(np.float64),
    }
    for j in range(k):
        check_slate_propensities(
            out["pscore_joint"], out["pscore_prefix"][:, j], out["pscore_marginal"][:, j], atol=1e-9
        )
    return out
