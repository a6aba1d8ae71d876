"""Long-term shopper dynamics, measured from the logs — where RL could have headroom.

A myopic ranker (greedy on the click model) is optimal unless the shopper's future depends on
what is shown now in a way the ranker ignores. These measurements say which such dynamics the
logs support (each with its count, so thin evidence shows as thin):

* ``leave_hazard_by_step`` — P(the session ends after step j | it reached step j);
* ``continuation`` — P(another step follows) after a purchase step vs after other steps;
* ``purchase_by_repeat_views`` — P(a step's item is bought) by how often the session had
  already shown interest in that item (0, 1, 2+ earlier steps);
* ``same_category_next`` — P(the next item is in the current item's category) against the
  rate expected if categories were drawn by popularity (stickiness > 1, fatigue < 1);
* impression logs: ``ctr_by_category_history`` — CTR of shown items by how many of the user's
  earlier clicks were in the item's category (does repetition lower clicks?);
* basket logs: ``basket_lift`` — for item pairs bought together at least twice, the mean lift
  P(both) / (P(a) P(b)) over baskets (does one purchase raise another's odds?).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shopsim.data.schema import EVENT_CODES
from shopsim.data.sequences import session_sequences

PURCHASE = EVENT_CODES["purchase"]


def _rate(hits: int, n: int) -> dict[str, float | int]:
    return {"rate": round(hits / n, 4) if n else float("nan"), "n": int(n)}


def measure_dynamics(events: pd.DataFrame, items: pd.DataFrame, *, max_step: int = 10) -> dict[str, Any]:
    """The measurements above on ``events`` (usually the train split)."""
    index = pd.Index(items["item_id"])
    cats = items["category"].astype("string").fillna("").to_numpy()
    out: dict[str, Any] = {}
    impressions = bool((events["event"] == "impression").any())
    seqs = session_sequences(events, index, with_events=True)
    lengths = np.array([len(s) for s, _ in seqs.values()])
    # impression logs: their click sequences are users' histories, not sessions
    if len(lengths) and not impressions:
        out["leave_hazard_by_step"] = {
            str(j): _rate(int((lengths == j).sum()), int((lengths >= j).sum()))
            for j in range(1, max_step + 1)
        }
        after_buy = after_other = cont_buy = cont_other = 0
        rep = {0: [0, 0], 1: [0, 0], 2: [0, 0]}
        same = same_n = 0
        cat_share = pd.Series(cats[np.concatenate([s for s, _ in seqs.values()])]).value_counts(
            normalize=True
        )
        cat_share = cat_share[cat_share.index != ""]
        expected_same = float((cat_share**2).sum()) if len(cat_share) else float("nan")
        for seq, ev in seqs.values():
            seen: dict[int, int] = {}
            for t, (item, code) in enumerate(zip(seq.tolist(), ev.tolist(), strict=True)):
                cont = t < len(seq) - 1
                if code == PURCHASE:
                    after_buy += 1
                    cont_buy += cont
                else:
                    after_other += 1
                    cont_other += cont
                bucket = min(seen.get(item, 0), 2)
                rep[bucket][0] += code == PURCHASE
                rep[bucket][1] += 1
                seen[item] = seen.get(item, 0) + 1
                if cont and cats[item] and cats[seq[t + 1]]:
                    same += cats[item] == cats[seq[t + 1]]
                    same_n += 1
        out["continuation"] = {
            "after_purchase": _rate(cont_buy, after_buy),
            "after_other": _rate(cont_other, after_other),
        }
        out["purchase_by_repeat_views"] = {
            ("2+" if b == 2 else str(b)): _rate(h, n) for b, (h, n) in rep.items()
        }
        out["same_category_next"] = {
            **_rate(same, same_n),
            "expected_by_popularity": round(expected_same, 4),
            "stickiness": round((same / same_n) / expected_same, 3)
            if same_n and expected_same
            else float("nan"),
        }
    if impressions:
        out["ctr_by_category_history"] = _ctr_by_category_history(events, cats, index)
    if "quantity" in events and not (events["event"].isin(["view", "click", "cart"])).any():
        out["basket_lift"] = _basket_lift(seqs)
    return out


def _ctr_by_category_history(events: pd.DataFrame, cats: np.ndarray, index: pd.Index) -> dict[str, Any]:
    imp = events[events["event"] == "impression"]
    clk = events[(events["event"] == "click") & events["slate_id"].notna()]
    clicked = set(zip(clk["slate_id"].astype(str), clk["item_id"].astype(str), strict=True))
    hist = events[(events["event"] != "impression") & events["slate_id"].isna()]
    hist_cats = (
        pd.Series(cats[index.get_indexer(pd.Index(hist["item_id"]))], index=hist["user_id"].to_numpy())
        .loc[lambda s: s != ""]
        .groupby(level=0)
        .value_counts()
    )
    icat = cats[index.get_indexer(pd.Index(imp["item_id"]))]
    known = icat != ""
    users = imp["user_id"].to_numpy()
    keys = list(zip(users[known], icat[known], strict=True))
    n_hist = np.array([hist_cats.get(k, 0) for k in keys])
    y = np.array(
        [
            (s, i) in clicked
            for s, i in zip(
                imp["slate_id"].astype(str)[known], imp["item_id"].astype(str)[known], strict=True
            )
        ]
    )
    out = {}
    for name, m in (
        ("0", n_hist == 0),
        ("1", n_hist == 1),
        ("2-4", (n_hist >= 2) & (n_hist <= 4)),
        ("5+", n_hist >= 5),
    ):
        out[name] = _rate(int(y[m].sum()), int(m.sum()))
    return out


def _basket_lift(seqs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    baskets = [np.unique(s) for s, _ in seqs.values() if len(np.unique(s)) > 1]
    n = len(baskets)
    if n == 0:
        return {"pairs": 0}
    item_counts: dict[int, int] = {}
    pair_counts: dict[tuple[int, int], int] = {}
    for b in baskets:
        for i in b.tolist():
            item_counts[i] = item_counts.get(i, 0) + 1
        if len(b) <= 50:
            for x in range(len(b)):
                for y in range(x + 1, len(b)):
                    key = (int(b[x]), int(b[y]))
                    pair_counts[key] = pair_counts.get(key, 0) + 1
    lifts = [c * n / (item_counts[a] * item_counts[b]) for (a, b), c in pair_counts.items() if c >= 2]
    return {
        "baskets": n,
        "pairs_bought_together_twice": len(lifts),
        "mean_lift": round(float(np.mean(lifts)), 2) if lifts else float("nan"),
        "median_lift": round(float(np.median(lifts)), 2) if lifts else float("nan"),
    }
