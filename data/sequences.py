"""Item sequences of logged sessions: the steps every later stage reads from a log.

A session's *sequence* is its items in time order with impressions left out and consecutive
repeats of one item collapsed into one step; a collapsed run carries its strongest event
(:class:`~shopsim.data.schema.EventCode`: a view then a cart of the same item is one ``cart`` step).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from shopsim.data.schema import EVENT_CODES


@overload
def session_sequences(
    events: pd.DataFrame, index: pd.Index, with_events: Literal[False] = ...
) -> dict[str, np.ndarray]: ...
@overload
def session_sequences(
    events: pd.DataFrame, index: pd.Index, with_events: Literal[True]
) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...
def session_sequences(events: pd.DataFrame, index: pd.Index, with_events: bool = False) -> Any:
    """Item-index sequences per session (no impressions; consecutive repeats collapsed).

    With ``with_events``, each value is ``(items, event_codes)`` where a collapsed run carries
    its strongest event (a view then a cart of the same item is one step with code ``cart``).
    """
    ev = events[events["event"] != "impression"]
    codes = index.get_indexer(pd.Index(ev["item_id"]))
    evc = ev["event"].map(EVENT_CODES).to_numpy(dtype=np.int64)
    sids = ev["session_id"].to_numpy()
    out: dict[str, Any] = {}
    if len(codes) == 0:
        return out
    # rows of a session are contiguous (canonical order): cut at session boundaries
    cut = np.flatnonzero(sids[1:] != sids[:-1]) + 1
    starts = np.r_[0, cut]
    for sid, seq, e in zip(sids[starts], np.split(codes, cut), np.split(evc, cut), strict=True):
        new_run = np.r_[True, seq[1:] != seq[:-1]]
        if with_events:
            run_id = np.cumsum(new_run) - 1
            strongest = np.zeros(int(new_run.sum()), dtype=np.int64)
            np.maximum.at(strongest, run_id, e)
            out[str(sid)] = (seq[new_run], strongest)
        else:
            out[str(sid)] = seq[new_run]
    return out
