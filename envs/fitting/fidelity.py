"""How faithful a fitted simulator is: held-out click/purchase quality and replayed sessions.

* **Held-out events** (test split): ROC AUC (pooled; and the mean per-impression AUC where
  the log has impressions), log-loss and expected calibration error (ECE, 10 equal-width bins)
  of the click model, next to a popularity-only and a metadata-only model fitted the same way
  on the same data. With sampled negatives ECE is not meaningful (a constant predictor of the
  sampling rate is already calibrated), so it is reported for impression logs only.
* **Replay**: every test session is replayed — the simulated shopper starts from the session's
  history and intent, the page shows what the logging side showed (the first logged slate on
  impression logs; on sequence logs the item the real shopper went to next, in slot 1, then
  retrieval candidates) — and the simulated session statistics are compared with the real ones
  by Kolmogorov–Smirnov and Wasserstein distances (category mix: total-variation distance).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.stats import grouped_bootstrap, percentile_interval


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC with ties counted half (Mann–Whitney); NaN when one class is missing."""
    y = np.asarray(y, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = stats.rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def grouped_auc(y: np.ndarray, s: np.ndarray, groups: np.ndarray) -> float:
    """Mean AUC over groups (impressions) that have both a click and a non-click."""
    vals = []
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    cut = np.flatnonzero(g[1:] != g[:-1]) + 1
    for idx in np.split(order, cut):
        a = auc(y[idx], s[idx])
        if not np.isnan(a):
            vals.append(a)
    return float(np.mean(vals)) if vals else float("nan")


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Equal-width reliability bins and the expected calibration error."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            conf, acc = float(p[m].mean()), float(y[m].mean())
            ece += m.mean() * abs(conf - acc)
            rows.append(
                {
                    "bin": [round(edges[b], 2), round(edges[b + 1], 2)],
                    "n": int(m.sum()),
                    "predicted": conf,
                    "observed": acc,
                }
            )
    return {"ece": float(ece), "bins": rows}


def grouped_bootstrap_auc(
    y: np.ndarray, s: np.ndarray, groups: np.ndarray, *, n_boot: int = 200, seed: int = 0
) -> tuple[float, float]:
    """95% interval of the pooled AUC, resampling whole sessions (:func:`shopsim.stats.grouped_bootstrap`;
    resamples with one class only are left out of the percentiles)."""
    vals = grouped_bootstrap(lambda i: auc(y[i], s[i]), groups, n_boot=n_boot, seed=seed)
    return percentile_interval(vals, omit_nan=True)


def paired_auc_difference(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, groups: np.ndarray, *, n_boot: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """AUC(a) − AUC(b) on the same events, with a 95% paired interval resampling whole sessions."""
    diffs = grouped_bootstrap(lambda i: auc(y[i], a[i]) - auc(y[i], b[i]), groups, n_boot=n_boot, seed=seed)
    lo, hi = percentile_interval(diffs, omit_nan=True)
    return auc(y, a) - auc(y, b), lo, hi


@dataclass
class ReplayResult:
    steps: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray
    click_categories: np.ndarray
    """Category code of every simulated click."""


def replay(
    sim: Simulator,
    split: str,
    *,
    slate_size: int = 10,
    n_candidates: int = 100,
    max_steps: int = 50,
    repeats: int = 1,
    seed: int = 0,
    click_offset: float | None = None,
    purchase_offset: float | None = None,
) -> ReplayResult:
    """Replay every logged session of ``split`` under the logging behaviour (module docstring)."""
    eps = sim.episodes[split]
    n = len(eps) * repeats
    old = (sim.click_offset, sim.purchase_offset)
    if click_offset is not None:
        sim.click_offset = click_offset
    if purchase_offset is not None:
        sim.purchase_offset = purchase_offset
    try:
        cfg = ShopperConfig(
            slate_size=slate_size, n_candidates=n_candidates, max_steps=max_steps, split=split
        )
        core = ShopperBatch(sim, n, cfg)
        rng = np.random.default_rng(seed)
        core.reset_rows(np.arange(n), rng, np.tile(np.arange(len(eps)), repeats))
        alive = np.ones(n, bool)
        steps = np.zeros(n, np.int64)
        clicks = np.zeros(n, np.int64)
        buys = np.zeros(n, np.int64)
        cats: list[np.ndarray] = []
        logged = eps.logged_slate[core.episode_index] if eps.logged_slate.shape[1] else None
        for t in range(max_steps):
            items = _logging_slate(core, slate_size, logged if t == 0 else None)
            items[~alive] = -1
            ev, left, trunc = core.step(items, rng)
            steps += alive
            clicks += (ev.clicked.sum(1)) * alive
            buys += (ev.purchased.sum(1)) * alive
            cats.append(ev.category[ev.clicked & alive[:, None]])
            alive &= ~(left | trunc)
            if not alive.any():
                break
    finally:
        sim.click_offset, sim.purchase_offset = old
    return ReplayResult(steps, clicks, buys, np.concatenate(cats) if cats else np.zeros(0, np.int64))


def _logging_slate(core: ShopperBatch, k: int, logged: np.ndarray | None) -> np.ndarray:
    """The logging side's slate: the logged slate, or the real next item + retrieval candidates."""
    b = core.n
    if logged is not None:
        out = np.full((b, k), -1, np.int64)
        w = min(k, logged.shape[1])
        out[:, :w] = logged[:, :w]
        return out
    nxt = np.full(b, -1, np.int64)
    has = core.intent >= 0
    first = has.argmax(1)
    any_ = has.any(1)
    nxt[any_] = core.intent[np.flatnonzero(any_), first[any_]]
    cand = core.cand
    fill = np.where(cand == nxt[:, None], -1, cand)
    # keep the first k-1 valid candidates, in retrieval order
    valid = fill >= 0
    rank = np.cumsum(valid, 1) - 1
    out = np.full((b, k), -1, np.int64)
    out[:, 0] = nxt
    r, c = np.nonzero(valid & (rank < k - 1))
    out[r, 1 + rank[r, c]] = fill[r, c]
    return out


def compare_sessions(sim_res: ReplayResult, sim: Simulator, split: str) -> dict[str, Any]:
    """KS / Wasserstein distances between simulated and real session statistics."""
    eps = sim.episodes[split]
    out: dict[str, Any] = {}
    pairs = {
        "steps": (sim_res.steps, np.maximum(eps.real_steps, 1)),
        "clicks": (sim_res.clicks, eps.real_clicks),
        "purchases": (sim_res.purchases, eps.real_purchases),
    }
    for name, (a, b) in pairs.items():
        with warnings.catch_warnings():  # identical constant samples (e.g. no purchases at all)
            warnings.simplefilter("ignore", RuntimeWarning)
            ks = float(stats.ks_2samp(a, b).statistic)
        out[name] = {
            "sim_mean": float(np.mean(a)),
            "real_mean": float(np.mean(b)),
            "ks": ks,
            "wasserstein": float(stats.wasserstein_distance(a, b)),
        }
    out["purchase_rate"] = {
        "sim": float(np.mean(sim_res.purchases > 0)),
        "real": float(np.mean(eps.real_purchases > 0)),
    }
    real_cats = sim.catalog.category[eps.intent[eps.intent >= 0]]
    k = int(max(sim.catalog.category.max(), 0)) + 1
    # known categories only (code 0 = unknown): a log without categories has no mix to compare
    ps = np.bincount(sim_res.click_categories, minlength=k)[1:].astype(float)
    pr = np.bincount(real_cats, minlength=k)[1:].astype(float)
    if ps.sum() and pr.sum():
        ps, pr = ps / ps.sum(), pr / pr.sum()
        out["category_mix"] = {"total_variation": float(0.5 * np.abs(ps - pr).sum()), "categories": k - 1}
    return out


def plot_fidelity(
    report: dict[str, Any], replay_res: ReplayResult, sim: Simulator, split: str, out: Path
) -> list[str]:
    """Reliability plot and simulated-vs-real histograms; returns the written file names."""
    from shopsim.plots import pyplot

    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    rel = report["click"]["held_out"].get("reliability")
    if rel:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        for name, r in rel.items():
            xs = [b["predicted"] for b in r["bins"]]
            ys = [b["observed"] for b in r["bins"]]
            ax.plot(xs, ys, marker="o", label=f"{name} (ECE {r['ece']:.3f})")
        ax.set_xlabel("predicted click probability")
        ax.set_ylabel("observed click rate")
        ax.set_title("Click model reliability (test)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "reliability.png", dpi=120)
        plt.close(fig)
        written.append("reliability.png")
    eps = sim.episodes[split]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (name, a, b) in zip(
        axes,
        [
            ("steps per session", replay_res.steps, np.maximum(eps.real_steps, 1)),
            ("clicks per session", replay_res.clicks, eps.real_clicks),
            ("purchases per session", replay_res.purchases, eps.real_purchases),
        ],
        strict=True,
    ):
        hi = int(np.percentile(np.r_[a, b], 99)) + 2
        bins = np.arange(0, max(hi, 2) + 1) - 0.5
        ax.hist(b, bins=bins, alpha=0.6, density=True, label="real")
        ax.hist(a, bins=bins, alpha=0.6, density=True, label="simulated")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle(f"Replayed {split} sessions: simulated vs real")
    fig.tight_layout()
    fig.savefig(out / "sessions.png", dpi=120)
    plt.close(fig)
    written.append("sessions.png")
    k = int(max(sim.catalog.category.max(), 0)) + 1
    real_cats = sim.catalog.category[eps.intent[eps.intent >= 0]]
    if k > 1 and len(real_cats) and len(replay_res.click_categories):
        pr = np.bincount(real_cats, minlength=k)[1:]
        ps = np.bincount(replay_res.click_categories, minlength=k)[1:]
        top = np.argsort(-pr)[:15]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        x = np.arange(len(top))
        ax.bar(x - 0.2, pr[top] / max(pr.sum(), 1), width=0.4, label="real")
        ax.bar(x + 0.2, ps[top] / max(ps.sum(), 1), width=0.4, label="simulated")
        ax.set_xticks(x, [str(t + 1) for t in top], fontsize=7)
        ax.set_xlabel("category code (15 most clicked in the logs)")
        ax.set_ylabel("share of clicks")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "categories.png", dpi=120)
        plt.close(fig)
        written.append("categories.png")
    return written
