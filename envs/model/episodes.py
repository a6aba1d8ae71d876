"""Logged sessions as simulator material: episode starts, and the examples the response model
is fitted and checked on.

An **episode** starts from one real logged session. Sequence logs (no impressions): the first
``history_len`` items are the shopper's history, the rest is the hidden *intent* (in logged
order). Impression logs: the history is the user's earlier clicks (any session, strictly
earlier), the intent is what the shopper clicked on the session's later slates, and the
first logged slate is kept for replaying the logging policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from shopsim.data.schema import EVENT_CODES, EventCode
from shopsim.envs.model.catalog import Catalog, event_seconds

PURCHASE = int(EventCode.PURCHASE)
CLICK = int(EventCode.CLICK)
INTERACTION_CODES: tuple[EventCode, ...] = (EventCode.VIEW, EventCode.CLICK, EventCode.CART)
"""Event codes a simulated click may carry into the history (see :func:`interaction_code`)."""


def _pad(rows: list[np.ndarray], width: int, dtype: type = np.int32) -> np.ndarray:
    out: np.ndarray = np.full((len(rows), width), -1, dtype=dtype)
    for i, r in enumerate(rows):
        r = r[:width]
        out[i, : len(r)] = r
    return out


@dataclass
class Episodes:
    """Start points of simulated shoppers: one row per logged session of a split."""

    session_ids: np.ndarray
    hist: np.ndarray
    """(S, L) history item codes, most recent first, -1 padded."""
    hist_ev: np.ndarray
    intent: np.ndarray
    """(S, M) hidden intent item codes in logged order, -1 padded."""
    intent_ev: np.ndarray
    logged_slate: np.ndarray
    """(S, K) the first logged slate (impression logs), -1 padded; width 0 otherwise."""
    real_clicks: np.ndarray
    """(S,) clicks the real shopper made after the history."""
    real_purchases: np.ndarray
    real_steps: np.ndarray
    """(S,) steps of the real session after the history (slates or items)."""
    time: np.ndarray
    """(S,) the shopper's time (seconds since the log's start): the first intent step, else
    one second after the history (impression logs: the first slate)."""

    def __len__(self) -> int:
        return len(self.session_ids)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray] | np.lib.npyio.NpzFile, prefix: str) -> Episodes:
        return cls(**{f.name: z[f"{prefix}_{f.name}"] for f in fields(cls)})


def interaction_code(episodes: Iterable[Episodes]) -> EventCode:
    """The event code a simulated click carries into the shopper's history: the log's own.

    Rule, measured on the given episodes (the simulator passes its train split): the most
    frequent of :data:`INTERACTION_CODES` among their histories and hidden intents — the
    logged steps the simulated shopper continues. A tie goes to the weaker (smaller) code; a
    log without any (purchase-only) gives ``VIEW``, the code used before this rule. So a
    sequence log of views (REES46: 9,888 view, 46 cart, 167 purchase steps in the train
    split) gives ``VIEW``, and an impression log, whose steps are clicks (MIND), ``CLICK`` —
    the event type the state encoder saw for such steps in training.
    """
    counts = np.zeros(len(EventCode), np.int64)
    for e in episodes:
        for items, codes in ((e.hist, e.hist_ev), (e.intent, e.intent_ev)):
            counts += np.bincount(codes[items >= 0].astype(np.int64), minlength=len(EventCode))
    best = max(INTERACTION_CODES, key=lambda c: (int(counts[c]), -int(c)))
    return best if counts[best] > 0 else EventCode.VIEW


def session_runs(
    events: pd.DataFrame, index: pd.Index, t0: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per session: item codes, event codes and times (seconds since ``t0``) of its steps.

    The same steps as :func:`shopsim.evaluation.next_item.session_sequences` (impressions
    dropped, consecutive repeats of an item collapsed into one step carrying its strongest
    event); a step's time is that of its first event."""
    ev = events[events["event"] != "impression"]
    codes = index.get_indexer(pd.Index(ev["item_id"]))
    evc = ev["event"].map(EVENT_CODES).to_numpy(dtype=np.int64)
    ts = event_seconds(ev["timestamp"]) - t0
    sids = ev["session_id"].to_numpy()
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if len(codes) == 0:
        return out
    cut = np.flatnonzero(sids[1:] != sids[:-1]) + 1
    starts = np.r_[0, cut]
    for sid, seq, e, t in zip(
        sids[starts], np.split(codes, cut), np.split(evc, cut), np.split(ts, cut), strict=True
    ):
        new_run = np.r_[True, seq[1:] != seq[:-1]]
        run_id = np.cumsum(new_run) - 1
        strongest = np.zeros(int(new_run.sum()), dtype=np.int64)
        np.maximum.at(strongest, run_id, e)
        out[str(sid)] = (seq[new_run], strongest, t[new_run])
    return out


def has_impressions(events: pd.DataFrame) -> bool:
    return bool((events["event"] == "impression").any())


def _user_histories(
    events: pd.DataFrame, index: pd.Index
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per user: (timestamps, item codes, event codes) of non-impression events, in time order."""
    ev = events[events["event"] != "impression"].sort_values("timestamp", kind="stable")
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    codes = index.get_indexer(pd.Index(ev["item_id"]))
    ts = ev["timestamp"].to_numpy()
    evc = ev["event"].map(EVENT_CODES).to_numpy(dtype=np.int64)
    users = ev["user_id"].to_numpy()
    order = np.argsort(users, kind="stable")
    u_sorted = users[order]
    cut = np.flatnonzero(u_sorted[1:] != u_sorted[:-1]) + 1
    for grp in np.split(order, cut):
        if len(grp):
            out[str(users[grp[0]])] = (ts[grp], codes[grp], evc[grp])
    return out


@dataclass
class SlateLog:
    """Logged slates of impression sessions: context + shown items + clicks (fitting material)."""

    hist: np.ndarray
    hist_ev: np.ndarray
    intent: np.ndarray
    intent_ev: np.ndarray
    items: np.ndarray
    """(R, K) shown items in slot order, -1 padded."""
    clicked: np.ndarray
    session: np.ndarray
    time: np.ndarray
    """(R,) slate time in seconds since the log's start."""


def slate_log(
    events: pd.DataFrame,
    all_events: pd.DataFrame,
    index: pd.Index,
    *,
    max_history: int,
    max_intent: int,
    t0: int,
) -> SlateLog:
    """Slates of the impression sessions in ``events``; histories come from ``all_events``."""
    users = _user_histories(all_events, index)
    imp = events[events["event"] == "impression"]
    clk = events[(events["event"] == "click") & events["slate_id"].notna()]
    clicked_keys = set(zip(clk["slate_id"].astype(str), clk["item_id"].astype(str), strict=True))
    hist_rows, hev_rows, int_rows, iev_rows, item_rows, clk_rows, sess, times = [], [], [], [], [], [], [], []
    sess_clicks = clk.groupby("session_id")["item_id"].apply(list).to_dict()
    for (sid, slid), g in imp.groupby(["session_id", "slate_id"], sort=False):
        g = g.sort_values("position", kind="stable") if g["position"].notna().all() else g
        codes = index.get_indexer(pd.Index(g["item_id"]))
        lab = np.array([(str(slid), str(i)) in clicked_keys for i in g["item_id"]])
        user = str(g["user_id"].iloc[0])
        t_slate = g["timestamp"].iloc[0]
        h = users.get(user)
        if h is not None:
            keep = h[0] < t_slate
            hc, he = h[1][keep][::-1][:max_history], h[2][keep][::-1][:max_history]
        else:
            hc, he = np.zeros(0, np.int64), np.zeros(0, np.int64)
        own = set(index.get_indexer(pd.Index(g["item_id"][lab])).tolist())
        other = [c for c in index.get_indexer(pd.Index(sess_clicks.get(sid, []))) if c not in own]
        hist_rows.append(hc)
        hev_rows.append(he)
        int_rows.append(np.asarray(other, dtype=np.int64))
        iev_rows.append(np.full(len(other), CLICK))
        item_rows.append(codes)
        clk_rows.append(lab)
        sess.append(str(sid))
        times.append(int(event_seconds(g["timestamp"].to_numpy()[:1])[0]) - t0)
    width = max((len(r) for r in item_rows), default=1)
    clicked = np.zeros((len(clk_rows), width), dtype=bool)
    for i, r in enumerate(clk_rows):
        clicked[i, : len(r)] = r
    return SlateLog(
        hist=_pad(hist_rows, max_history),
        hist_ev=_pad(hev_rows, max_history, np.int64),
        intent=_pad(int_rows, max_intent),
        intent_ev=_pad(iev_rows, max_intent, np.int64),
        items=_pad(item_rows, width),
        clicked=clicked,
        session=np.asarray(sess),
        time=np.asarray(times, dtype=np.int64),
    )


def build_episodes(
    split_events: pd.DataFrame,
    all_events: pd.DataFrame,
    index: pd.Index,
    *,
    t0: int,
    history_len: int = 1,
    max_history: int = 20,
    max_intent: int = 50,
) -> Episodes:
    """Episodes of one split (see the module docstring)."""
    if has_impressions(all_events):
        sl = slate_log(split_events, all_events, index, max_history=max_history, max_intent=max_intent, t0=t0)
        # one episode per session: its first slate; intent = every click of the session
        first = np.r_[True, sl.session[1:] != sl.session[:-1]] if len(sl.session) else np.zeros(0, bool)
        idx = np.flatnonzero(first)
        intents, n_clicks = [], []
        for i in idx:
            # the intent is what the click model was fitted with: the session's clicks on its
            # *other* slates (MIND: none, one slate per session)
            own = sl.items[i][sl.clicked[i]]
            rest = sl.intent[i][sl.intent[i] >= 0]
            intents.append(rest.astype(np.int64))
            n_clicks.append(len(own) + len(rest))
        steps: np.ndarray = (
            pd.Series(sl.session).value_counts().reindex(sl.session[idx]).to_numpy()
            if len(idx)
            else np.zeros(0)
        )
        return Episodes(
            session_ids=sl.session[idx].astype(str),
            hist=sl.hist[idx],
            hist_ev=sl.hist_ev[idx],
            intent=_pad(intents, max_intent),
            intent_ev=_pad([np.full(len(x), CLICK) for x in intents], max_intent, np.int64),
            logged_slate=sl.items[idx],
            real_clicks=np.asarray(n_clicks, dtype=np.int64),
            real_purchases=np.zeros(len(idx), dtype=np.int64),
            real_steps=np.asarray(steps, dtype=np.int64),
            time=sl.time[idx],
        )
    seqs = session_runs(split_events, index, t0)
    sids, hist, hev, intent, iev, clicks, buys, times = [], [], [], [], [], [], [], []
    for sid, (seq, evs, ts) in seqs.items():
        h = min(history_len, len(seq))
        times.append(ts[h] if h < len(seq) else ts[h - 1] + 1)
        sids.append(sid)
        hist.append(seq[:h][::-1][:max_history])
        hev.append(evs[:h][::-1][:max_history])
        intent.append(seq[h:])
        iev.append(evs[h:])
        clicks.append(len(seq) - h)
        buys.append(int((evs[h:] == PURCHASE).sum()))
    return Episodes(
        session_ids=np.asarray(sids, dtype=str),
        hist=_pad(hist, max_history),
        hist_ev=_pad(hev, max_history, np.int64),
        intent=_pad(intent, max_intent),
        intent_ev=_pad(iev, max_intent, np.int64),
        logged_slate=np.zeros((len(sids), 0), dtype=np.int32),
        real_clicks=np.asarray(clicks, dtype=np.int64),
        real_purchases=np.asarray(buys, dtype=np.int64),
        real_steps=np.asarray(clicks, dtype=np.int64),
        time=np.asarray(times, dtype=np.int64),
    )


@dataclass
class ClickExamples:
    """Rows for fitting/evaluating the click model: contexts, candidate items, labels."""

    hist: np.ndarray
    hist_ev: np.ndarray
    intent: np.ndarray
    intent_ev: np.ndarray
    items: np.ndarray
    """(R, K) item codes, -1 padded."""
    labels: np.ndarray
    """(R, K) bool."""
    session: np.ndarray
    """(R,) session id of each row (for grouped splits and bootstraps)."""
    time: np.ndarray
    """(R,) time of the click decision (seconds since the log's start)."""
    impressions: bool
    """True: real shown-but-not-clicked negatives with slot positions (column = slot)."""


def click_examples(
    split_events: pd.DataFrame,
    all_events: pd.DataFrame,
    catalog: Catalog,
    index: pd.Index,
    *,
    negatives: int = 20,
    max_history: int = 20,
    max_intent: int = 50,
    rng: np.random.Generator,
) -> ClickExamples:
    """Click examples of a split: logged slates, or next item + popularity-sampled negatives."""
    t0 = int(catalog.t0[0])
    if has_impressions(all_events):
        sl = slate_log(split_events, all_events, index, max_history=max_history, max_intent=max_intent, t0=t0)
        return ClickExamples(
            sl.hist, sl.hist_ev, sl.intent, sl.intent_ev, sl.items, sl.clicked, sl.session, sl.time, True
        )
    seqs = session_runs(split_events, index, t0)
    weights = np.exp(catalog.popularity.astype(np.float64))  # ∝ train interactions + 1
    weights /= weights.sum()
    hist, hev, intent, iev, pos, sess, times = [], [], [], [], [], [], []
    for sid, (seq, evs, ts) in seqs.items():
        for t in range(1, len(seq)):
            times.append(ts[t])
            hist.append(seq[:t][::-1][:max_history])
            hev.append(evs[:t][::-1][:max_history])
            intent.append(seq[t + 1 :])
            iev.append(evs[t + 1 :])
            pos.append(seq[t])
            sess.append(sid)
    r = len(pos)
    negs = rng.choice(len(weights), size=(r, negatives), p=weights)
    posa = np.asarray(pos, dtype=np.int64)
    last = np.asarray([h[0] for h in hist], dtype=np.int64) if r else np.zeros(0, np.int64)
    bad = (negs == posa[:, None]) | (negs == last[:, None])
    items = np.concatenate([posa[:, None], np.where(bad, -1, negs)], axis=1)
    labels = np.zeros(items.shape, dtype=bool)
    labels[:, 0] = True
    return ClickExamples(
        hist=_pad(hist, max_history),
        hist_ev=_pad(hev, max_history, np.int64),
        intent=_pad(intent, max_intent),
        intent_ev=_pad(iev, max_intent, np.int64),
        items=items,
        labels=labels,
        session=np.asarray(sess, dtype=str),
        time=np.asarray(times, dtype=np.int64),
        impressions=False,
    )


@dataclass
class PurchaseExamples:
    hist: np.ndarray
    hist_ev: np.ndarray
    intent: np.ndarray
    intent_ev: np.ndarray
    items: np.ndarray
    """(R,) the clicked item."""
    labels: np.ndarray
    session: np.ndarray
    time: np.ndarray


def purchase_examples(
    split_events: pd.DataFrame, index: pd.Index, *, t0: int, max_history: int = 20, max_intent: int = 50
) -> PurchaseExamples:
    """Each clicked item after the first of a session; label: bought at that step or later."""
    seqs = session_runs(split_events, index, t0)
    hist, hev, intent, iev, items, labels, sess, times = [], [], [], [], [], [], [], []
    for sid, (seq, evs, ts) in seqs.items():
        bought = set(seq[evs == PURCHASE].tolist())
        for t in range(1, len(seq)):
            later = seq[t:][evs[t:] == PURCHASE]
            hist.append(seq[:t][::-1][:max_history])
            hev.append(evs[:t][::-1][:max_history])
            intent.append(seq[t + 1 :])
            iev.append(evs[t + 1 :])
            items.append(seq[t])
            labels.append(seq[t] in set(later.tolist()) and seq[t] in bought)
            sess.append(sid)
            times.append(ts[t])
    return PurchaseExamples(
        hist=_pad(hist, max_history),
        hist_ev=_pad(hev, max_history, np.int64),
        intent=_pad(intent, max_intent),
        intent_ev=_pad(iev, max_intent, np.int64),
        items=np.asarray(items, dtype=np.int64),
        labels=np.asarray(labels, dtype=bool),
        session=np.asarray(sess, dtype=str),
        time=np.asarray(times, dtype=np.int64),
    )


def leave_examples(episodes: Episodes, *, sequence: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, groups) for the leave model: after each logged step j, features
    [log1p(j), bought at j], label = the session ended there.

    Sequence logs: a step is an intent item; sessions without intent are skipped (their
    leaving follows a step without a click, see the response model). Impression logs: a step
    is a logged slate."""
    xs, ys, gs = [], [], []
    for s in range(len(episodes)):
        n = int(episodes.real_steps[s])
        ev = episodes.intent_ev[s][episodes.intent[s] >= 0]
        last = min(n, len(ev)) if sequence else n
        for j in range(1, last + 1):
            bought = float(sequence and ev[j - 1] == PURCHASE)
            xs.append([np.log1p(j), bought])
            ys.append(j == n)
            gs.append(s)
    return (
        np.asarray(xs, dtype=np.float32).reshape(-1, 2),
        np.asarray(ys, dtype=bool),
        np.asarray(gs, dtype=np.int64),
    )
