"""The held-out next-item task a log defines, and its ranking metrics: one protocol for every model
(encoders, baselines, policies). It lives in the log layer because the encoder trains and
early-stops on it; :mod:`shopsim.evaluation.next_item` adds the session-bootstrap intervals.

Protocol. For every session of a split, take its item sequence (events other than impressions,
consecutive repeats of the same item collapsed). Each position t ≥ 1 is a target: given the
items before it, rank the **whole catalog** (every item of items.parquet) and see where the
next item lands. A target is *cold* when its item never occurs in the train split.

The last history item is never a candidate: consecutive repeats are collapsed, so the next
item always differs from it (otherwise every model would waste its first slot on it).

Ties. Models that give several items the same score (identical text, the same attributes,
items an ID model has never seen) are charged the **exact expected** metric under a uniformly
random order of the tied items — never the catalog order, which would leak.

Uncertainty. Targets of one session are correlated, so 95% intervals come from a bootstrap
over *sessions* (1,000 resamples, seeded); comparisons use the paired bootstrap of the
per-target difference on the same resamples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopsim.data.log import SessionLog
from shopsim.data.sequences import session_sequences

Scorer = Callable[[list[np.ndarray]], np.ndarray]
"""Maps a batch of histories (arrays of item indices) to scores (batch × n_items)."""


@dataclass
class NextItemTask:
    """Next-item targets of one split, with histories as item indices into the catalog."""

    item_ids: np.ndarray
    """Catalog item ids; index i of a score row is item ``item_ids[i]``."""
    histories: list[np.ndarray]
    history_events: list[np.ndarray]
    """Event code of each history item (:data:`EVENT_CODES`: strongest event of the run)."""
    targets: np.ndarray
    session_of_target: np.ndarray
    cold: np.ndarray
    """True where the target item never occurs in the train split."""

    @classmethod
    def from_log(cls, log: SessionLog, split: str, *, max_history: int = 20) -> NextItemTask:
        """Build the targets of ``split`` (see the module docstring)."""
        item_ids = log.items["item_id"].to_numpy()
        index = pd.Index(item_ids)
        seqs = session_sequences(log.split(split), index, with_events=True)
        train_items = np.zeros(len(item_ids), dtype=bool)
        for seq in session_sequences(log.split("train"), index).values():
            train_items[seq] = True
        histories, hist_events, targets, sessions = [], [], [], []
        for k, (seq, evs) in enumerate(seqs.values()):
            for t in range(1, len(seq)):
                histories.append(seq[max(0, t - max_history) : t])
                hist_events.append(evs[max(0, t - max_history) : t])
                targets.append(seq[t])
                sessions.append(k)
        tgt = np.asarray(targets, dtype=np.int64)
        return cls(
            item_ids=item_ids,
            histories=histories,
            history_events=hist_events,
            targets=tgt,
            session_of_target=np.asarray(sessions, dtype=np.int64),
            cold=~train_items[tgt] if len(tgt) else np.zeros(0, dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.targets)


def expected_rank_metrics(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Per-target Recall@k, NDCG@k and MRR, exact in expectation over random tie orders.

    :param scores: (B, N) scores; NaN counts as lowest.
    :param targets: (B,) target item indices.
    :return: ``{"recall@k", "ndcg@k", "mrr"}`` → arrays of shape (B,).
    """
    s = np.where(np.isnan(scores), -np.inf, scores)
    st = s[np.arange(len(targets)), targets][:, None]
    greater = (s > st).sum(axis=1)
    tied = (s == st).sum(axis=1)  # includes the target itself
    n = s.shape[1]
    pos = np.arange(1, n + 1)
    cum_dcg = np.r_[0.0, np.cumsum(np.where(pos <= k, 1.0 / np.log2(pos + 1), 0.0))]
    cum_rr = np.r_[0.0, np.cumsum(1.0 / pos)]
    hi = greater + tied
    return {
        f"recall@{k}": np.clip((k - greater) / tied, 0.0, 1.0),
        f"ndcg@{k}": (cum_dcg[hi] - cum_dcg[greater]) / tied,
        "mrr": (cum_rr[hi] - cum_rr[greater]) / tied,
    }


def evaluate_scorer(
    task: NextItemTask, scorer: Scorer, *, k: int = 10, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Per-target metrics of ``scorer`` on ``task`` (scored in batches)."""
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(task), batch_size):
        hist = task.histories[start : start + batch_size]
        scores = np.array(scorer(hist), dtype=np.float64)
        scores[np.arange(len(hist)), [h[-1] for h in hist]] = -np.inf
        parts.append(expected_rank_metrics(scores, task.targets[start : start + batch_size], k))
    keys = parts[0].keys() if parts else (f"recall@{k}", f"ndcg@{k}", "mrr")
    return {m: np.concatenate([p[m] for p in parts]) if parts else np.zeros(0) for m in keys}
