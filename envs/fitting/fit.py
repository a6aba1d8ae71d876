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

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from shopsim.artifacts import boundary, locked, tidy, verify_artifact, write_artifact
from shopsim.data import SessionLog
from shopsim.encoders.bundle import EncoderBundle, NumpyStateEncoder
from shopsim.encoders.cache import hash_files
from shopsim.envs.fitting.calibration import calibrate
from shopsim.envs.fitting.click import ClickModels, click_tables, fit_click_models
from shopsim.envs.fitting.click import _contexts as _contexts  # tests import it from here
from shopsim.envs.fitting.fidelity import ReplayResult, compare_sessions, plot_fidelity, replay
from shopsim.envs.fitting.leave import fit_leave
from shopsim.envs.fitting.purchase import PurchaseModel, fit_purchase
from shopsim.envs.model.catalog import Catalog, build_catalog
from shopsim.envs.model.dynamics import measure_dynamics
from shopsim.envs.model.episodes import Episodes, build_episodes, has_impressions
from shopsim.envs.model.features import CLICK_FEATURES
from shopsim.envs.model.response import Scorer, dcg_examination
from shopsim.envs.model.simulator import (
    ARTIFACT_KIND,
    OLD_SIMULATOR_FILES,
    REBUILD,
    SIMULATOR_VERSION,
    SPLITS,
    Simulator,
)
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
    :param click_negatives: where the click model's non-clicks come from. ``impressions``: the
        items the log shows as shown but not clicked (the log must record impressions: formats
        mind, obd, or events with ``impression`` rows), with a fitted examination probability
        per slot; ``sampled``: ``negatives`` items per click sampled ∝ popularity, as on a log
        of interactions only (an impression log is then fitted without its impression rows:
        DCG examination prior, calibrated click offset); ``auto``: impressions when the log
        has them, else sampled.
    :param max_sessions: if set, the valid and test splits are cut to a seeded sample of at most
        this many sessions each before the response models, the calibration and the fidelity
        report use them (large logs: their cost grows with the events, not the catalog). The
        catalog — count tables, popularity and CTR as of a time — still uses every event.
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
    click_negatives: str = "auto"
    max_sessions: int | None = None
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
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ShopsimError("--max-sessions must be at least 1 (or unset: every session)")
        if self.click_negatives not in CLICK_NEGATIVES:
            raise ShopsimError(f"--click-negatives {self.click_negatives}: use {', '.join(CLICK_NEGATIVES)}")


CLICK_NEGATIVES = ("auto", "impressions", "sampled")
"""Values of :attr:`SimulatorConfig.click_negatives`."""


def click_log(log: SessionLog, click_negatives: str, where: Path) -> tuple[SessionLog, bool]:
    """The log the simulator is fitted on and whether it has impressions, for ``click_negatives``
    (see :class:`SimulatorConfig`): ``impressions`` on a log without them is an error; ``sampled``
    drops an impression log's impression rows, so every stage fits it as an interaction log."""
    has = has_impressions(log.events)
    if click_negatives == "impressions" and not has:
        fmt = log.report.get("format", "?")
        raise ShopsimError(
            f"{where}: simulator.click_negatives=impressions, but this {fmt} log records no impressions "
            "(shown items); use click_negatives auto or sampled, or an impression log (mind, obd, events "
            "with impression rows)"
        )
    if click_negatives == "sampled" and has:
        ev = log.events
        kept = ev[ev["event"] != "impression"].reset_index(drop=True)
        return SessionLog(kept, log.items, log.report), False
    return log, has


@dataclass
class FitInputs:
    """What a fit reads: the prepared log and the encoder run, loaded and checked."""

    data_dir: Path
    embeddings: Path
    log: SessionLog
    bundle: EncoderBundle
    key: str
    """Content hash of the log, the encoder output and the config (:func:`reused_fit`)."""
    index: pd.Index
    """Item ids in item-code order."""
    impressions: bool
    """The log records impressions (shown items), not only interactions."""
    all_events: pd.DataFrame | None = None
    """Every event of the log when ``log`` is cut to ``max_sessions`` (the catalog's time index
    and the episodes' histories read all of them); None: ``log.events``."""


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


def _inputs_key(data_dir: Path, embeddings: Path, cfg: SimulatorConfig) -> str:
    """Hash of everything a fit depends on: the prepared log, the encoder output, the config."""
    files = [data_dir / "events.parquet", data_dir / "items.parquet"]
    files += [embeddings / n for n in ("item_vectors.npy", "encoder.pt", "item_ids.json")]
    return hash_files(files) + ":" + json.dumps(asdict(cfg), sort_keys=True)


def load_inputs(data_dir: Path, embeddings: Path, cfg: SimulatorConfig) -> FitInputs:
    """Load the prepared log and the encoder run, check that the encoder was trained on this
    log's items, and key them (with ``cfg``) by content hash."""
    log, impressions = click_log(SessionLog.load(data_dir), cfg.click_negatives, data_dir)
    bundle = EncoderBundle.load(embeddings)
    _check_embeddings(log, bundle, embeddings)
    all_events = None
    if cfg.max_sessions is not None:
        all_events = log.events
        log = cap_sessions(log, cfg.max_sessions, seed=cfg.seed)
    return FitInputs(
        data_dir=data_dir,
        embeddings=embeddings,
        log=log,
        bundle=bundle,
        key=_inputs_key(data_dir, embeddings, cfg),
        index=pd.Index(log.items["item_id"]),
        impressions=impressions,
        all_events=all_events,
    )


def cap_sessions(log: SessionLog, max_sessions: int, *, seed: int = 0) -> SessionLog:
    """``log`` with its valid and test splits cut to a seeded sample of at most ``max_sessions``
    sessions each (train, and the row order, unchanged)."""
    ev = log.events
    rng = np.random.default_rng(seed)
    keep = ev["split"].to_numpy() == "train"
    for split in ("valid", "test"):
        rows = ev["split"].to_numpy() == split
        sids = pd.unique(ev.loc[rows, "session_id"])
        chosen = sids if len(sids) <= max_sessions else rng.choice(sids, max_sessions, replace=False)
        keep |= rows & ev["session_id"].isin(chosen).to_numpy()
    if keep.all():
        return log
    return SessionLog(ev[keep].reset_index(drop=True), log.items, log.report)


def reused_fit(out: Path, key: str) -> tuple[Simulator, dict[str, Any]] | None:
    """The simulator saved in ``out`` and its fidelity report (marked ``reused``), if it was
    fitted from inputs with this ``key`` by this simulator version; else None."""
    tidy(out)  # a reused folder gets the leftovers of a killed earlier write swept too
    try:  # only a complete, intact folder is reused; anything else is refitted
        verify_artifact(out, ARTIFACT_KIND, REBUILD.format(d=out))
        meta = json.loads((out / "simulator.json").read_text())
    except (ShopsimError, OSError, ValueError):
        return None
    if not isinstance(meta, dict) or "fidelity.json" not in os.listdir(out):
        return None
    if meta.get("inputs") != key or meta.get("shopsim_simulator_version") != SIMULATOR_VERSION:
        return None
    cached: dict[str, Any] = json.loads((out / "fidelity.json").read_text())
    cached["reused"] = True
    return Simulator.load(out), cached


def _check_splits(inputs: FitInputs) -> None:
    for split in ("valid", "test"):
        if not (inputs.log.events["split"] == split).any():
            raise ShopsimError(
                f"{inputs.data_dir}: the {split} split has no sessions; prepare the data with a {split} "
                f"fraction, e.g. --split 0.7,0.1,0.2"
            )


def catalog_and_episodes(
    inputs: FitInputs, cfg: SimulatorConfig
) -> tuple[Catalog, NumpyStateEncoder, dict[str, Episodes]]:
    """The catalog (count tables from train, time index from every split), the numpy state
    encoder and the logged episodes of every split."""
    log, bundle, index = inputs.log, inputs.bundle, inputs.index
    events = log.events if inputs.all_events is None else inputs.all_events
    cat = build_catalog(
        log.split("train"),
        log.items,
        np.asarray(bundle.item_vectors),
        neighbours=cfg.neighbours,
        all_events=events,  # popularity/CTR as of a time: every split, earlier events only
    )
    enc = NumpyStateEncoder.from_model(bundle.model)
    t_origin = int(cat.t0[0])
    episodes = {
        s: build_episodes(
            log.split(s), events, index, t0=t_origin, history_len=cfg.history_len, max_history=enc.max_history
        )
        for s in SPLITS
    }
    return cat, enc, episodes


def examination(
    clicks: ClickModels, *, impressions: bool, slate_size: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """e(p) of the simulator and its report: fitted with the click model on impression logs,
    else the DCG prior (an assumption) over at least 20 slots."""
    if impressions:
        assert clicks.examination is not None
        exam = clicks.examination
        return exam, {"kind": "measured", "values": np.round(exam, 4).tolist()}
    exam = dcg_examination(max(slate_size, 20))
    report = {
        "kind": "assumption",
        "prior": "dcg: e(p) = 1/log2(p+1)",
        "values": np.round(exam[:10], 4).tolist(),
    }
    return exam, report


def _simulator(
    inputs: FitInputs,
    cfg: SimulatorConfig,
    parts: tuple[Catalog, NumpyStateEncoder, dict[str, Episodes]],
    *,
    click: Scorer,
    exam: np.ndarray,
    purchase: PurchaseModel,
    leave: Scorer,
) -> Simulator:
    """The fitted simulator, offsets not calibrated yet."""
    cat, enc, episodes = parts
    return Simulator(
        catalog=cat,
        state_encoder=enc,
        click=click,
        examination=exam,
        click_offset=0.0,
        purchase_mode=purchase.mode,
        purchase=purchase.scorer,
        leave=leave,
        leave_no_click_logit=cfg.leave_no_click_logit,
        episodes=episodes,
        meta={
            "data": str(inputs.data_dir),
            "embeddings": str(inputs.embeddings),
            "format": inputs.log.report.get("format"),
            "impressions": inputs.impressions,
            "history_len": cfg.history_len,
            "config": asdict(cfg),
            "click_features": list(CLICK_FEATURES),
            "inputs": inputs.key,
            "catalog": {"items": cat.n_items, "embedding_neighbours": cat.neighbour_index},
        },
    )


def fidelity_report(
    sim: Simulator, inputs: FitInputs, cfg: SimulatorConfig, stages: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], ReplayResult]:
    """Replay the test sessions through ``sim``, compare them with the logged ones, measure the
    long-term dynamics of train and assemble ``fidelity.json`` around the reports of the fit
    ``stages`` (``click``, ``examination``, ``calibration``, ``purchase``, ``leave``, in that
    order), with its summary in ``sim.meta``. Returns the report and the replay (for the plots)."""
    log, impressions = inputs.log, inputs.impressions
    # impression logs replay the whole logged slate; sequence logs the configured page size
    width = int(sim.episodes["test"].logged_slate.shape[1]) or cfg.replay_slate_size
    rep = replay(sim, "test", slate_size=width, n_candidates=max(width, 100), seed=cfg.seed + 1)
    sessions = compare_sessions(rep, sim, "test")
    report: dict[str, Any] = {
        "shopsim_simulator_version": 1,
        "data": str(inputs.data_dir),
        "format": log.report.get("format"),
        "impressions": impressions,
        "splits": {
            "counts_and_encoder": "train",
            "response_model": "+".join(cfg.fit_splits),
            "report": "test",
        },
        **stages,
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
    auc = report["click"]["held_out"]["auc"]
    sim.meta["fidelity_summary"] = {
        "click_auc": auc["simulator"],
        "click_auc_history_only": auc.get("history"),
    }
    return report, rep


def save_fit(out: Path, sim: Simulator, report: dict[str, Any], rep: ReplayResult) -> None:
    """Write the simulator folder, its fidelity plots (listed in the report) and ``fidelity.json``,
    as one verified artifact: written beside ``out`` and swapped in when complete
    (:mod:`shopsim.artifacts`), so a killed refit never leaves a new model beside old files."""
    with write_artifact(out, ARTIFACT_KIND, stage="fit", replaces=OLD_SIMULATOR_FILES) as tmp:
        sim.write_files(tmp)
        boundary("fit:model-written")
        report["plots"] = plot_fidelity(report, rep, sim, "test", tmp / "plots")
        (tmp / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
        boundary("fit:fidelity-written")


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
    # The output folder is locked for the whole fit, so a second writer fails at once, not after
    # minutes of fitting (save_fit's writer takes the same lock again, re-entrantly).
    with locked(out) if out is not None else contextlib.nullcontext():
        return _fit_simulator(data_dir, embeddings, out, config, progress=progress, reuse=reuse)


def _fit_simulator(
    data_dir: Path,
    embeddings: Path,
    out: Path | None,
    config: SimulatorConfig | None,
    *,
    progress: bool,
    reuse: bool,
) -> tuple[Simulator, dict[str, Any]]:
    cfg = config or SimulatorConfig()
    t0 = time.perf_counter()
    inputs = load_inputs(data_dir, embeddings, cfg)
    if reuse and out is not None and (cached := reused_fit(out, inputs.key)) is not None:
        return cached
    _check_splits(inputs)
    log, index, impressions = inputs.log, inputs.index, inputs.impressions
    bar = tqdm(total=7, desc="simulator fit", disable=not progress)
    stage = _stage_bar(bar)
    cat, enc, episodes = parts = catalog_and_episodes(inputs, cfg)
    stage("catalog + episodes")
    tables = click_tables(
        log,
        cat,
        enc,
        index,
        fit_splits=cfg.fit_splits,
        negatives=cfg.negatives,
        max_positions=cfg.max_positions,
        seed=cfg.seed,
        data_dir=data_dir,
    )
    stage("click examples")
    clicks = fit_click_models(
        tables,
        impressions=impressions,
        negatives=cfg.negatives,
        hidden=cfg.hidden,
        max_positions=cfg.max_positions,
        baselines=cfg.baselines,
        seed=cfg.seed,
    )
    stage("click models")
    purchase = fit_purchase(log, cat, enc, index, seed=cfg.seed)
    stage("purchase model")
    leave, leave_report = fit_leave(
        episodes, impressions=impressions, leave_no_click_logit=cfg.leave_no_click_logit, seed=cfg.seed
    )
    stage("leave model")
    exam, exam_report = examination(clicks, impressions=impressions, slate_size=cfg.replay_slate_size)
    sim = _simulator(
        inputs, cfg, parts, click=clicks.scorers["simulator"], exam=exam, purchase=purchase, leave=leave
    )
    calib = calibrate(
        sim, impressions=impressions, enabled=cfg.calibrate, slate_size=cfg.replay_slate_size, seed=cfg.seed
    )
    stage("calibration")
    stages = {
        "click": clicks.report,
        "examination": exam_report,
        "calibration": calib,
        "purchase": purchase.report,
        "leave": leave_report,
    }
    report, rep = fidelity_report(sim, inputs, cfg, stages)
    stage("replay")
    bar.close()
    report["timing_s"] = round(time.perf_counter() - t0, 2)
    if out is not None:
        save_fit(out, sim, report, rep)
    return sim, report


def _stage_bar(bar: tqdm) -> Callable[[str], None]:
    """A callback that marks a fit stage done on the progress bar."""

    def stage(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    return stage
