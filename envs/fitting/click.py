"""Fit stage: the click model.

Click examples of the fit splits and of test become flat tables (one row per context and shown
item); the four click models of :data:`CLICK_MODELS` are fitted side by side on the same rows and
scored on the held-out test rows. ``simulator`` is the one the environment uses; the others are
the baselines the fidelity report compares it with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopsim.data import SessionLog
from shopsim.encoders.bundle import NumpyStateEncoder
from shopsim.envs.fitting.fidelity import (
    auc,
    grouped_auc,
    grouped_bootstrap_auc,
    log_loss,
    paired_auc_difference,
    reliability,
)
from shopsim.envs.model.catalog import Catalog
from shopsim.envs.model.episodes import ClickExamples, click_examples
from shopsim.envs.model.features import (
    CLICK_FEATURES,
    ENCODER_FEATURES,
    INTENT_FEATURES,
    POPULARITY_FEATURES,
    Context,
    click_features,
)
from shopsim.envs.model.response import Scorer, _sigmoid, fit_scorer
from shopsim.errors import ShopsimError


def _contexts(
    cat: Catalog,
    enc: NumpyStateEncoder,
    hist: np.ndarray,
    hist_ev: np.ndarray,
    intent: np.ndarray,
    intent_ev: np.ndarray,
    time: np.ndarray,
) -> Context:
    """Feature contexts of logged histories; the state vectors are encoded in chunks to bound memory."""
    state = np.zeros((len(hist), cat.dim), np.float32)
    for s in range(0, len(hist), 4096):
        state[s : s + 4096] = enc(cat.vectors, hist[s : s + 4096], hist_ev[s : s + 4096])
    return Context(hist, hist_ev, state, intent, intent_ev, time)


@dataclass
class ClickTable:
    """Flattened click examples: one row per (context, shown item)."""

    x: np.ndarray
    y: np.ndarray
    session: np.ndarray
    impression: np.ndarray
    position: np.ndarray


def click_table(cat: Catalog, enc: NumpyStateEncoder, ex: ClickExamples, max_positions: int) -> ClickTable:
    """Click features of every shown item of ``ex``, padding dropped; slots past
    ``max_positions`` share the last position."""
    ctx = _contexts(cat, enc, ex.hist, ex.hist_ev, ex.intent, ex.intent_ev, ex.time)
    xs = []
    for s in range(0, len(ex.items), 2048):
        rows = np.arange(s, min(s + 2048, len(ex.items)))
        xs.append(click_features(cat, ctx.rows(rows), ex.items[rows]))
    x = np.concatenate(xs) if xs else np.zeros((0, ex.items.shape[1], len(CLICK_FEATURES)), np.float32)
    keep = ex.items >= 0
    pos = np.broadcast_to(np.minimum(np.arange(ex.items.shape[1]), max_positions - 1), ex.items.shape)
    return ClickTable(
        x=x[keep],
        y=ex.labels[keep].astype(np.float64),
        session=np.broadcast_to(ex.session[:, None], ex.items.shape)[keep],
        impression=np.broadcast_to(np.arange(len(ex.items))[:, None], ex.items.shape)[keep],
        position=pos[keep],
    )


CLICK_MODELS: dict[str, list[str]] = {
    "popularity": [f for f in CLICK_FEATURES if f in POPULARITY_FEATURES],
    "metadata": [f for f in CLICK_FEATURES if f not in ENCODER_FEATURES and f not in INTENT_FEATURES],
    "history": [f for f in CLICK_FEATURES if f not in INTENT_FEATURES],
    "simulator": list(CLICK_FEATURES),
}
"""Click models fitted side by side. ``history`` (encoder + metadata, the shopper's past only)
is comparable with published next-item click models; ``simulator`` adds the hidden intent and
is what the environment uses."""


def _feature_mask(names: list[str]) -> np.ndarray:
    return np.array([f in names for f in CLICK_FEATURES])


def _masked_scorer(sc: Scorer, mask: np.ndarray) -> Scorer:
    """Embed a scorer fitted on a feature subset into the full feature vector (zero weights)."""
    f = len(mask)
    mean = np.zeros(f, np.float32)
    std = np.ones(f, np.float32)
    mean[mask], std[mask] = sc.mean, sc.std
    if sc.w1.shape[1]:
        w1 = np.zeros((f, sc.w1.shape[1]), np.float32)
        w1[mask] = sc.w1
        return Scorer(mean, std, w1, sc.b1, sc.w2, sc.b2)
    w2 = np.zeros(f, np.float32)
    w2[mask] = sc.w2
    return Scorer(mean, std, sc.w1[:0].reshape(f, 0), sc.b1, w2, sc.b2)


@dataclass
class ClickTables:
    """The click rows the models are fitted on and the held-out test rows."""

    fit: ClickTable
    test: ClickTable
    width: int
    """Slots per fitting example (the logged slate width; 1 + negatives without impressions)."""


def click_tables(
    log: SessionLog,
    cat: Catalog,
    enc: NumpyStateEncoder,
    index: pd.Index,
    *,
    fit_splits: tuple[str, ...],
    negatives: int,
    max_positions: int,
    seed: int,
    data_dir: Path,
) -> ClickTables:
    """Click examples of ``fit_splits`` and of test as flat tables. Negatives of logs without
    impressions are sampled with one generator seeded by ``seed``, fit rows first."""
    events = log.events
    max_hist = enc.max_history
    rng = np.random.default_rng(seed)
    ex_fit = click_examples(
        events[events["split"].isin(fit_splits)],
        events,
        cat,
        index,
        negatives=negatives,
        max_history=max_hist,
        rng=rng,
    )
    ex_test = click_examples(
        log.split("test"), events, cat, index, negatives=negatives, max_history=max_hist, rng=rng
    )
    fit_t = click_table(cat, enc, ex_fit, max_positions)
    test_t = click_table(cat, enc, ex_test, max_positions)
    if fit_t.y.sum() == 0 or test_t.y.sum() == 0:
        raise ShopsimError(
            f"{data_dir}: no clicks or next items in the valid/test split to fit the click model on; "
            f"prepare the data with larger valid/test fractions (--split)"
        )
    return ClickTables(fit=fit_t, test=test_t, width=int(ex_fit.items.shape[1]))


@dataclass
class ClickModels:
    """The fitted click models and their report (``fidelity.json`` → ``click``)."""

    scorers: dict[str, Scorer]
    """Scorers over the full click feature vector, by :data:`CLICK_MODELS` name."""
    examination: np.ndarray | None
    """e(p) fitted jointly with the ``simulator`` model (impression logs), else None."""
    report: dict[str, Any]


def fit_click_models(
    tables: ClickTables,
    *,
    impressions: bool,
    negatives: int,
    hidden: int,
    max_positions: int,
    baselines: bool,
    seed: int,
) -> ClickModels:
    """Fit the click models of :data:`CLICK_MODELS` (only ``simulator`` without ``baselines``) on
    the fit rows and report their held-out AUC, its 95% CI, log-loss and (impression logs)
    per-impression AUC and reliability."""
    fit_t, test_t = tables.fit, tables.test
    n_pos = min(max_positions, tables.width) if impressions else 0
    report: dict[str, Any] = {
        "negatives": "impressions (shown, not clicked)"
        if impressions
        else f"{negatives} sampled ∝ popularity",
        "fit_rows": len(fit_t.y),
        "fit_positives": int(fit_t.y.sum()),
        "test_rows": len(test_t.y),
        "test_positives": int(test_t.y.sum()),
        "features": {k: v for k, v in CLICK_MODELS.items()},
        "held_out": {"auc": {}, "auc_ci95": {}, "log_loss": {}},
    }
    held = report["held_out"]
    scorers: dict[str, Scorer] = {}
    preds: dict[str, np.ndarray] = {}
    exam_fit: np.ndarray | None = None
    for name, feats in CLICK_MODELS.items():
        if not baselines and name != "simulator":
            continue
        m = _feature_mask(feats)
        res = fit_scorer(
            fit_t.x[:, m],
            fit_t.y,
            fit_t.session,
            hidden=hidden,
            positions=fit_t.position if impressions else None,
            n_positions=n_pos,
            seed=seed,
        )
        scorers[name] = _masked_scorer(res.scorer, m)
        exam = res.examination if res.examination is not None else np.ones(1)
        if name == "simulator":
            exam_fit = res.examination
        p = _sigmoid(scorers[name].logit(test_t.x)) * (
            exam[np.minimum(test_t.position, len(exam) - 1)] if impressions else 1.0
        )
        preds[name] = p
        _add_held_out(held, name, test_t, p, impressions=impressions, seed=seed)
    if "popularity" in preds:
        held["auc_minus_popularity"] = {
            name: [
                round(v, 4) for v in paired_auc_difference(test_t.y, p, preds["popularity"], test_t.session)
            ]
            for name, p in preds.items()
            if name != "popularity"
        }
    return ClickModels(scorers=scorers, examination=exam_fit, report=report)


def _add_held_out(
    held: dict[str, Any], name: str, test: ClickTable, p: np.ndarray, *, impressions: bool, seed: int
) -> None:
    """Record model ``name``'s test metrics in ``held`` (the report's key order is kept)."""
    held["auc"][name] = round(auc(test.y, p), 4)
    lo, hi = grouped_bootstrap_auc(test.y, p, test.session, seed=seed)
    held["auc_ci95"][name] = [round(lo, 4), round(hi, 4)]
    held["log_loss"][name] = round(log_loss(test.y, p), 4)
    if impressions:
        held.setdefault("auc_per_impression", {})[name] = round(grouped_auc(test.y, p, test.impression), 4)
        held.setdefault("reliability", {})[name] = reliability(test.y, p)
        held.setdefault("ece", {})[name] = round(held["reliability"][name]["ece"], 4)
