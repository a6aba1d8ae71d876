"""Fit a simulator from a prepared log and an encoder run: ``shopsim simulator fit``.

Who sees which split (split by session start time, so every feature uses earlier data only):

* **train** — the encoder (``shopsim encode``) and the catalog's count tables (popularity,
  CTR, purchase rate, transitions, co-occurrences);
* **valid** — the response model (click, purchase, leave) and the click offset calibration:
  fitting on sessions the encoder and the count tables never saw keeps the model from
  trusting features that are optimistic on their own training data;
* **test** — the fidelity report only.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from shopsim.data import SessionLog
from shopsim.encoders.bundle import EncoderBundle, NumpyStateEncoder
from shopsim.encoders.cache import hash_files
from shopsim.envs.fitting.fidelity import (
    auc,
    compare_sessions,
    grouped_auc,
    grouped_bootstrap_auc,
    log_loss,
    paired_auc_difference,
    plot_fidelity,
    reliability,
    replay,
)
from shopsim.envs.model.catalog import Catalog, build_catalog
from shopsim.envs.model.dynamics import measure_dynamics
from shopsim.envs.model.episodes import (
    ClickExamples,
    build_episodes,
    click_examples,
    has_impressions,
    leave_examples,
    purchase_examples,
)
from shopsim.envs.model.features import (
    CLICK_FEATURES,
    ENCODER_FEATURES,
    INTENT_FEATURES,
    POPULARITY_FEATURES,
    PURCHASE_FEATURES,
    Context,
    click_features,
    purchase_features,
)
from shopsim.envs.model.response import Scorer, _sigmoid, dcg_examination, fit_scorer
from shopsim.envs.model.simulator import SIMULATOR_VERSION, SPLITS, PurchaseMode, Simulator
from shopsim.errors import ShopsimError


@dataclass
class SimulatorConfig:
    """Settings of ``shopsim simulator fit``.

    :param negatives: sampled negatives per positive (logs without impressions).
    :param hidden: hidden units of the click model (0 = logistic regression).
    :param history_len: logged items that form an episode's history (sequence logs).
    :param neighbours: neighbours kept per item in the catalog tables.
    :param max_positions: slots with their own examination probability (impression logs).
    :param leave_no_click_logit: ASSUMPTION — added to the leave logit after a step without
        a click; logs only record steps with an interaction, so this cannot be measured.
    :param calibrate: set the click offset so replayed valid sessions have the logged mean
        number of clicks (logs without impressions).
    :param replay_slate_size: slate size of the replayed logging behaviour.
    :param baselines: also fit the popularity-only, metadata-only and history-only click
        models the fidelity report compares against (off: faster, for tests).
    :param fit_splits: splits the click model is fitted on (default valid: the encoder and the
        count tables never saw it). Popularity and CTR are computed as of each event's time
        from earlier events, so adding ``train`` leaks nothing through them, but the encoder
        score and the transition counts are optimistic on train rows.
    :param seed: drives negative sampling, model fitting and replays.
    """

    negatives: int = 20
    hidden: int = 32
    history_len: int = 1
    neighbours: int = 50
    max_positions: int = 20
    leave_no_click_logit: float = 1.0
    calibrate: bool = True
    replay_slate_size: int = 10
    baselines: bool = True
    fit_splits: tuple[str, ...] = ("valid",)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negatives < 1:
            raise ShopsimError("--negatives must be at least 1")
        if self.history_len < 1:
            raise ShopsimError("--history-len must be at least 1")
        bad = [s for s in self.fit_splits if s not in ("train", "valid")]
        if bad or not self.fit_splits:
            raise ShopsimError(
                f"--fit-splits {','.join(self.fit_splits)}: use train and/or valid (test is held out)"
            )
        if self.hidden < 0:
            raise ShopsimError("--hidden must be 0 (logistic) or a positive number of units")


def _check_embeddings(log: SessionLog, bundle: EncoderBundle, emb_dir: Path) -> None:
    ids = log.items["item_id"].astype(str).to_numpy()
    got = bundle.item_ids.astype(str)
    if len(got) != len(ids) or not np.array_equal(got, ids):
        n_common = len(np.intersect1d(got, ids))
        raise ShopsimError(
            f"{emb_dir}: embeddings do not match the data ({len(got):,} items, {n_common:,} shared with the "
            f"data's {len(ids):,}); re-run `shopsim encode DATA_DIR --out {emb_dir}` on this data"
        )
    dim = bundle.item_vectors.shape[1]
    if bundle.model.state.recency.weight.shape[1] != dim:
        raise ShopsimError(
            f"{emb_dir}: item vectors have {dim} dims but the state encoder "
            f"{bundle.model.state.recency.weight.shape[1]}; re-run `shopsim encode`"
        )


def _contexts(
    cat: Catalog,
    enc: NumpyStateEncoder,
    hist: np.ndarray,
    hist_ev: np.ndarray,
    intent: np.ndarray,
    intent_ev: np.ndarray,
    time: np.ndarray,
) -> Context:
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


def _inputs_key(data_dir: Path, embeddings: Path, cfg: SimulatorConfig) -> str:
    """Hash of everything a fit depends on: the prepared log, the encoder output, the config."""
    files = [data_dir / "events.parquet", data_dir / "items.parquet"]
    files += [embeddings / n for n in ("item_vectors.npy", "encoder.pt", "item_ids.json")]
    return hash_files(files) + ":" + json.dumps(asdict(cfg), sort_keys=True)


def fit_simulator(
    data_dir: Path,
    embeddings: Path,
    out: Path | None,
    config: SimulatorConfig | None = None,
    *,
    progress: bool = True,
    reuse: bool = False,
) -> tuple[Simulator, dict[str, Any]]:
    """Fit, calibrate, check and (if ``out``) save a simulator. Returns it and its fidelity report.

    :param reuse: if ``out`` already holds a simulator fitted from the same inputs (same log,
        encoder output and configuration, by content hash), load it instead of refitting.
    """
    cfg = config or SimulatorConfig()
    t0 = time.perf_counter()
    log = SessionLog.load(data_dir)
    bundle = EncoderBundle.load(embeddings)
    _check_embeddings(log, bundle, embeddings)
    inputs = _inputs_key(data_dir, embeddings, cfg)
    if reuse and out is not None and (out / "fidelity.json").exists() and (out / "simulator.json").exists():
        meta = json.loads((out / "simulator.json").read_text())
        if meta.get("inputs") == inputs and meta.get("shopsim_simulator_version") == SIMULATOR_VERSION:
            cached: dict[str, Any] = json.loads((out / "fidelity.json").read_text())
            cached["reused"] = True
            return Simulator.load(out), cached
    events = log.events
    for split in ("valid", "test"):
        if not (events["split"] == split).any():
            raise ShopsimError(
                f"{data_dir}: the {split} split has no sessions; prepare the data with a {split} fraction, "
                f"e.g. --split 0.7,0.1,0.2"
            )
    index = pd.Index(log.items["item_id"])
    impressions = has_impressions(events)
    bar = tqdm(total=7, desc="simulator fit", disable=not progress)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    cat = build_catalog(
        log.split("train"),
        log.items,
        np.asarray(bundle.item_vectors),
        neighbours=cfg.neighbours,
        all_events=events,  # popularity/CTR as of a time: every split, earlier events only
    )
    enc = NumpyStateEncoder.from_model(bundle.model)
    max_hist = enc.max_history
    t_origin = int(cat.t0[0])
    episodes = {
        s: build_episodes(
            log.split(s), events, index, t0=int(cat.t0[0]), history_len=cfg.history_len, max_history=max_hist
        )
        for s in SPLITS
    }
    stage("catalog + episodes")
    rng = np.random.default_rng(cfg.seed)
    ex_fit = click_examples(
        events[events["split"].isin(cfg.fit_splits)],
        events,
        cat,
        index,
        negatives=cfg.negatives,
        max_history=max_hist,
        rng=rng,
    )
    ex_test = click_examples(
        log.split("test"), events, cat, index, negatives=cfg.negatives, max_history=max_hist, rng=rng
    )
    fit_t = click_table(cat, enc, ex_fit, cfg.max_positions)
    test_t = click_table(cat, enc, ex_test, cfg.max_positions)
    if fit_t.y.sum() == 0 or test_t.y.sum() == 0:
        raise ShopsimError(
            f"{data_dir}: no clicks or next items in the valid/test split to fit the click model on; "
            f"prepare the data with larger valid/test fractions (--split)"
        )
    stage("click examples")
    n_pos = min(cfg.max_positions, ex_fit.items.shape[1]) if impressions else 0
    click_report: dict[str, Any] = {
        "negatives": "impressions (shown, not clicked)"
        if impressions
        else f"{cfg.negatives} sampled ∝ popularity",
        "fit_rows": len(fit_t.y),
        "fit_positives": int(fit_t.y.sum()),
        "test_rows": len(test_t.y),
        "test_positives": int(test_t.y.sum()),
        "features": {k: v for k, v in CLICK_MODELS.items()},
        "held_out": {"auc": {}, "auc_ci95": {}, "log_loss": {}},
    }
    held = click_report["held_out"]
    scorers: dict[str, Scorer] = {}
    preds: dict[str, np.ndarray] = {}
    exam_fit: np.ndarray | None = None
    for name, feats in CLICK_MODELS.items():
        if not cfg.baselines and name != "simulator":
            continue
        m = _feature_mask(feats)
        res = fit_scorer(
            fit_t.x[:, m],
            fit_t.y,
            fit_t.session,
            hidden=cfg.hidden,
            positions=fit_t.position if impressions else None,
            n_positions=n_pos,
            seed=cfg.seed,
        )
        scorers[name] = _masked_scorer(res.scorer, m)
        exam = res.examination if res.examination is not None else np.ones(1)
        if name == "simulator":
            exam_fit = res.examination
        p = _sigmoid(scorers[name].logit(test_t.x)) * (
            exam[np.minimum(test_t.position, len(exam) - 1)] if impressions else 1.0
        )
        preds[name] = p
        held["auc"][name] = round(auc(test_t.y, p), 4)
        lo, hi = grouped_bootstrap_auc(test_t.y, p, test_t.session, seed=cfg.seed)
        held["auc_ci95"][name] = [round(lo, 4), round(hi, 4)]
        held["log_loss"][name] = round(log_loss(test_t.y, p), 4)
        if impressions:
            held.setdefault("auc_per_impression", {})[name] = round(
                grouped_auc(test_t.y, p, test_t.impression), 4
            )
            held.setdefault("reliability", {})[name] = reliability(test_t.y, p)
            held.setdefault("ece", {})[name] = round(held["reliability"][name]["ece"], 4)
    if "popularity" in preds:
        held["auc_minus_popularity"] = {
            name: [
                round(v, 4) for v in paired_auc_difference(test_t.y, p, preds["popularity"], test_t.session)
            ]
            for name, p in preds.items()
            if name != "popularity"
        }
    stage("click models")

    # purchases
    ev_types = set(events["event"].unique())
    purchase_mode: PurchaseMode
    purchase_report: dict[str, Any]
    purchase_scorer: Scorer | None = None
    if "purchase" not in ev_types:
        purchase_mode, purchase_report = "never", {"mode": "never", "why": "the log has no purchases"}
    elif not (ev_types & {"view", "click", "cart"}):
        purchase_mode = "always"
        purchase_report = {
            "mode": "always",
            "why": "purchase-only log: every logged step is a purchase, so a click is one",
        }
    else:
        purchase_mode = "model"
        pf = purchase_examples(log.split("valid"), index, t0=t_origin, max_history=max_hist)
        pt = purchase_examples(log.split("test"), index, t0=t_origin, max_history=max_hist)
        fit_split = "valid"
        if pf.labels.sum() < 20:  # too few purchases in valid: fit on train + valid instead
            pf = purchase_examples(
                events[events["split"] != "test"], index, t0=t_origin, max_history=max_hist
            )
            fit_split = "train+valid (valid has < 20 purchases; buy rates then include the row's own session)"
        xf = _purchase_x(cat, enc, pf)
        xt = _purchase_x(cat, enc, pt)
        res = fit_scorer(xf, pf.labels.astype(float), pf.session, hidden=0, seed=cfg.seed)
        purchase_scorer = res.scorer
        pbase = fit_scorer(xf[:, :1], pf.labels.astype(float), pf.session, hidden=0, seed=cfg.seed).scorer
        p_model = _sigmoid(purchase_scorer.logit(xt))
        p_base = _sigmoid(pbase.logit(xt[:, :1]))
        purchase_report = {
            "mode": "model",
            "fit_split": fit_split,
            "features": list(PURCHASE_FEATURES),
            "fit_rows": len(pf.labels),
            "fit_positives": int(pf.labels.sum()),
            "test_rows": len(pt.labels),
            "test_positives": int(pt.labels.sum()),
            "held_out": {
                "auc": {
                    "item_purchase_rate": round(auc(pt.labels, p_base), 4),
                    "model": round(auc(pt.labels, p_model), 4),
                },
                "log_loss": {
                    "item_purchase_rate": round(log_loss(pt.labels, p_base), 4),
                    "model": round(log_loss(pt.labels, p_model), 4),
                },
            },
        }
        if pt.labels.sum():
            lo, hi = grouped_bootstrap_auc(pt.labels, p_model, pt.session, seed=cfg.seed)
            purchase_report["held_out"]["auc_ci95"] = {"model": [round(lo, 4), round(hi, 4)]}
    stage("purchase model")

    lx, ly, lg = leave_examples(episodes["valid"], sequence=not impressions)
    if len(ly) == 0:
        lx, ly, lg = leave_examples(episodes["train"], sequence=not impressions)
    leave_res = fit_scorer(lx, ly.astype(float), lg, hidden=0, seed=cfg.seed)
    leave_report = {
        "features": ["log1p(step)", "bought this step"],
        "fit_rows": len(ly),
        "weights": {
            "bias": round(leave_res.scorer.b2, 4),
            "w": np.round(leave_res.scorer.w2 / leave_res.scorer.std, 4).tolist(),
        },
        "leave_no_click_logit": {
            "value": cfg.leave_no_click_logit,
            "kind": "assumption",
            "why": "logs only record steps with an interaction; the effect of a slate without a click "
            "cannot be measured",
        },
    }
    stage("leave model")

    if impressions:
        assert exam_fit is not None
        examination = exam_fit
        exam_report = {"kind": "measured", "values": np.round(examination, 4).tolist()}
    else:
        examination = dcg_examination(max(cfg.replay_slate_size, 20))
        exam_report = {
            "kind": "assumption",
            "prior": "dcg: e(p) = 1/log2(p+1)",
            "values": np.round(examination[:10], 4).tolist(),
        }
    sim = Simulator(
        catalog=cat,
        state_encoder=enc,
        click=scorers["simulator"],
        examination=examination,
        click_offset=0.0,
        purchase_mode=purchase_mode,
        purchase=purchase_scorer,
        leave=leave_res.scorer,
        leave_no_click_logit=cfg.leave_no_click_logit,
        episodes=episodes,
        meta={
            "data": str(data_dir),
            "embeddings": str(embeddings),
            "format": log.report.get("format"),
            "impressions": impressions,
            "history_len": cfg.history_len,
            "config": asdict(cfg),
            "click_features": list(CLICK_FEATURES),
            "inputs": inputs,
        },
    )
    calib: dict[str, Any] = {
        "kind": "none (impression log: absolute click rates are measured)",
        "click_offset": 0.0,
    }
    if not impressions and cfg.calibrate:
        target = float(episodes["valid"].real_clicks.mean())
        b, got = _calibrate(sim, target, cfg)
        sim.click_offset = b
        calib = {
            "kind": "calibrated",
            "why": "sampled negatives fix the ranking, not the level: the offset b makes replayed "
            "valid sessions have the logged mean clicks per session",
            "click_offset": round(b, 4),
            "valid_real_clicks_per_session": round(target, 4),
            "valid_sim_clicks_per_session": round(got, 4),
        }
    if purchase_mode == "model" and cfg.calibrate:
        split = "valid" if episodes["valid"].real_purchases.sum() >= 10 else "train"
        target = float(episodes[split].real_purchases.mean())
        pb, got = _calibrate(sim, target, cfg, what="purchases", split=split)
        sim.purchase_offset = pb
        calib["purchase_offset"] = round(pb, 4)
        calib[f"{split}_real_purchases_per_session"] = round(target, 4)
        calib[f"{split}_sim_purchases_per_session"] = round(got, 4)
    stage("calibration")
    # impression logs replay the whole logged slate; sequence logs the configured page size
    width = int(episodes["test"].logged_slate.shape[1]) or cfg.replay_slate_size
    rep = replay(sim, "test", slate_size=width, n_candidates=max(width, 100), seed=cfg.seed + 1)
    sessions = compare_sessions(rep, sim, "test")
    report: dict[str, Any] = {
        "shopsim_simulator_version": 1,
        "data": str(data_dir),
        "format": log.report.get("format"),
        "impressions": impressions,
        "splits": {
            "counts_and_encoder": "train",
            "response_model": "+".join(cfg.fit_splits),
            "report": "test",
        },
        "click": click_report,
        "examination": exam_report,
        "calibration": calib,
        "purchase": purchase_report,
        "leave": leave_report,
        "replay": {
            "policy": "logged first slate"
            if impressions
            else "logged next item in slot 1 + retrieval candidates",
            "sessions": len(sim.episodes["test"]),
            **sessions,
        },
    }
    report["dynamics"] = {
        "what": "long-term dynamics measured on the train split (see shopsim.envs.model.dynamics)",
        **measure_dynamics(log.split("train"), log.items),
    }
    stage("replay")
    bar.close()
    report["timing_s"] = round(time.perf_counter() - t0, 2)
    sim.meta["fidelity_summary"] = {
        "click_auc": held["auc"]["simulator"],
        "click_auc_history_only": held["auc"].get("history"),
    }
    if out is not None:
        sim.save(out)
        report["plots"] = plot_fidelity(report, rep, sim, "test", out / "plots")
        (out / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    return sim, report


def _purchase_x(cat: Catalog, enc: NumpyStateEncoder, ex: Any) -> np.ndarray:
    ctx = _contexts(cat, enc, ex.hist, ex.hist_ev, ex.intent, ex.intent_ev, ex.time)
    if len(ex.items) == 0:
        return np.zeros((0, len(PURCHASE_FEATURES)), np.float32)
    return purchase_features(cat, ctx, ex.items[:, None])[:, 0]


def _calibrate(
    sim: Simulator, target: float, cfg: SimulatorConfig, *, what: str = "clicks", split: str = "valid"
) -> tuple[float, float]:
    """Bisection on the click (or purchase) offset so replayed sessions of ``split`` average
    ``target`` clicks (purchases) per session."""
    lo, hi = -8.0, 8.0
    best = (0.0, float("nan"))
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        kw = {"click_offset": mid} if what == "clicks" else {"purchase_offset": mid}
        res = replay(sim, split, slate_size=cfg.replay_slate_size, seed=cfg.seed, **kw)  # type: ignore[arg-type]
        got = float((res.clicks if what == "clicks" else res.purchases).mean())
        best = (mid, got)
        if got < target:
            lo = mid
        else:
            hi = mid
    return best


def fidelity_markdown(report: dict[str, Any]) -> str:
    """The fidelity report as a short Markdown summary (what the CLI prints)."""
    held = report["click"]["held_out"]
    lines = [
        f"click model on held-out test events ({report['click']['test_positives']:,} clicks / "
        f"{report['click']['test_rows']:,} rows; negatives: {report['click']['negatives']})",
        "",
        "| model | AUC [95% CI] | AUC − popularity (paired 95% CI) | log-loss |"
        + (" per-impression AUC | ECE |" if "ece" in held else ""),
        "|---|---|---|---|" + ("---|---|" if "ece" in held else ""),
    ]
    diff = held.get("auc_minus_popularity", {})
    for name in held["auc"]:
        lo, hi = held["auc_ci95"][name]
        d = diff.get(name)
        vs = f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" if d else "—"
        row = (
            f"| {name} | {held['auc'][name]:.3f} [{lo:.3f}, {hi:.3f}] | {vs} | {held['log_loss'][name]:.4f} |"
        )
        if "ece" in held:
            row += f" {held['auc_per_impression'][name]:.3f} | {held['ece'][name]:.4f} |"
        lines.append(row)
    pur = report["purchase"]
    if pur["mode"] == "model":
        a = pur["held_out"]["auc"]
        lines += [
            "",
            f"purchase model: AUC {a['model']:.3f} vs item purchase rate {a['item_purchase_rate']:.3f} "
            f"({pur['test_positives']} test purchases; fitted on {pur['fit_split'].split(' ')[0]})",
        ]
    else:
        lines += ["", f"purchases: {pur['mode']} — {pur['why']}"]
    rp = report["replay"]
    lines += ["", f"replayed {rp['sessions']:,} test sessions ({rp['policy']}): simulated vs real"]
    for name in ("steps", "clicks", "purchases"):
        r = rp[name]
        lines.append(
            f"  {name:9s} per session: sim {r['sim_mean']:.3f} vs real {r['real_mean']:.3f} "
            f"(KS {r['ks']:.3f}, Wasserstein {r['wasserstein']:.3f})"
        )
    if "category_mix" in rp:
        lines.append(f"  category mix: total variation {rp['category_mix']['total_variation']:.3f}")
    cal = report["calibration"]
    lines.append(f"  click offset: {cal['click_offset']} ({cal['kind'].split(' ')[0]})")
    dyn = report.get("dynamics", {})
    if "leave_hazard_by_step" in dyn:
        hz = dyn["leave_hazard_by_step"]
        c = dyn["continuation"]
        rv = dyn["purchase_by_repeat_views"]
        lines.append(
            "dynamics in the train logs: leave hazard step 1 "
            f"{hz['1']['rate']:.2f} → step 5 {hz['5']['rate']:.2f}; continuation after a purchase "
            f"{c['after_purchase']['rate']:.2f} vs {c['after_other']['rate']:.2f}; "
            "purchase rate by earlier views of the item"
            f" {rv['0']['rate']:.3f} / {rv['1']['rate']:.3f} / {rv['2+']['rate']:.3f}; "
            f"same-category next step ×{dyn['same_category_next']['stickiness']} popularity"
        )
    if "ctr_by_category_history" in dyn:
        cb = dyn["ctr_by_category_history"]
        lines.append(
            "dynamics: CTR by the user's earlier clicks in the item's category "
            + ", ".join(f"{k}: {v['rate']:.3f} (n {v['n']})" for k, v in cb.items())
        )
    if "basket_lift" in dyn:
        bl = dyn["basket_lift"]
        lines.append(
            f"dynamics: {bl['pairs_bought_together_twice']:,} item pairs bought together ≥ 2 times, "
            f"median lift {bl['median_lift']} (one purchase raises another's odds)"
        )
    return "\n".join(lines)
