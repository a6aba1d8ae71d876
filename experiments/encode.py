"""``shopsim encode``: embed items, train the two-tower encoder, evaluate it against baselines.

Writes to ``--out``: ``item_vectors.npy`` (N × dim, catalog order of items.parquet),
``item_ids.json``, ``encoder.pt`` (towers), ``backbone/`` (LoRA adapter or full weights when
fine-tuned), ``eval.json`` (held-out next-item metrics with 95% intervals), ``manifest.json``
and ``cache/`` (frozen text vectors). A second run with unchanged inputs and configuration is
served from the cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.agents.baselines.next_item import ALS, AttributeMatch, CoOccurrence, Popularity
from shopsim.artifacts import boundary, tidy, write_artifact
from shopsim.data import SessionLog
from shopsim.data.next_item import NextItemTask, evaluate_scorer
from shopsim.encoders.finetune import EncoderConfig, EncoderTrainer
from shopsim.encoders.train import (
    BUNDLE_FILES,
    FrozenText,
    TrainedEncoder,
    encoder_manifest,
    is_current,
    seed_all,
    train_encoder,
)
from shopsim.evaluation.next_item import summarize
from shopsim.stats import paired_difference_ci

ABLATIONS: dict[str, dict[str, Any]] = {
    "text+attributes+id": {},
    "attributes+id (no text)": {"use_text": False},
    "text+id (no attributes)": {"use_attributes": False},
    "text+attributes (no id)": {"use_ids": False},
    "text only": {"use_attributes": False, "use_ids": False},
    "text+attributes+id, augmentation 0.5": {"augment": 0.5},
}
"""Frozen-backbone variants of the ablation table (the fine-tuning modes are added to it)."""


def run_encode(
    data_dir: Path | str,
    out: Path | str,
    cfg: EncoderConfig,
    *,
    ablation: bool = False,
    n_boot: int = 1000,
    text: str = "on",
) -> dict[str, Any]:
    """Run ``shopsim encode``; return the eval report (also written to ``out/eval.json``).

    :param text: ``on`` (use item text), or ``auto``: with a frozen backbone, train with and
        without text and keep the variant with the better valid Recall@10.
    """
    t_start = time.perf_counter()
    data_dir, out = Path(data_dir), Path(out)
    log = SessionLog.load(data_dir)
    manifest = encoder_manifest(data_dir, cfg, ablation=ablation, n_boot=n_boot, text=text)
    tidy(out)  # a reused folder gets the leftovers of a killed earlier write swept too
    if is_current(out, manifest, ["eval.json", *BUNDLE_FILES]):
        stored: dict[str, Any] = json.loads((out / "eval.json").read_text())
        stored["served_from_cache"] = True
        stored["timing_s"]["total"] = round(time.perf_counter() - t_start, 2)
        return stored
    # Written into a temporary folder beside --out, swapped in when complete (shopsim.artifacts);
    # the frozen text vectors of the previous folder are carried over as a cache.
    with write_artifact(
        out, "encoder", stage="encode", replaces=_OLD_ENCODER_FILES, inputs=manifest, carry=("cache",)
    ) as tmp:
        boundary("encode:cache-carried")
        report = _encode_into(tmp, data_dir, log, cfg, ablation=ablation, n_boot=n_boot, text=text)
        report["timing_s"]["total"] = round(time.perf_counter() - t_start, 2)
        (tmp / "eval.json").write_text(json.dumps(report, indent=2))
        if ablation:
            (tmp / "ablation.md").write_text(ablation_markdown(report))
        boundary("encode:eval-written")
    return report


_OLD_ENCODER_FILES = (
    *("item_vectors.npy", "item_ids.json", "encoder.pt", "eval.json", "ablation.md"),
    *("manifest.json", "cache", "backbone"),
)
"""What ``encode`` wrote into its folder before folders had verified manifests (replaceable)."""


def _encode_into(
    tmp: Path, data_dir: Path, log: SessionLog, cfg: EncoderConfig, *, ablation: bool, n_boot: int, text: str
) -> dict[str, Any]:
    """Train, evaluate and save the bundle into ``tmp``; return the eval report (total time unset)."""
    task = NextItemTask.from_log(log, "test", max_history=cfg.max_history)
    per_target: dict[str, dict[str, np.ndarray]] = {}

    def evaluate_stage(name: str, trainer: EncoderTrainer) -> None:
        per_target[name] = evaluate_scorer(task, trainer.scorer(task))

    trained = train_encoder(log, cfg, tmp, text=text, on_stage=evaluate_stage)
    boundary("encode:bundle-written")
    # The baselines do not depend on the encoder's training (both seed their own RNGs), so they
    # run after it; the report lists them first.
    baseline_metrics, kinds, baseline_timing = _evaluate_baselines(log, cfg, task, trained.text_vecs)
    per_target = baseline_metrics | per_target
    kinds |= dict.fromkeys(trained.valid_recall, "supervised")
    embedding_s, *training_s = trained.timing_s.items()
    timing = dict([embedding_s, *baseline_timing.items(), *training_s])
    report = _report(data_dir, log, cfg, task, trained, per_target, kinds, n_boot)
    if ablation:
        t0 = time.perf_counter()
        report["ablation"] = _ablation(log, cfg, trained.text_vecs, task, per_target, trained.final, n_boot)
        timing["ablation"] = round(time.perf_counter() - t0, 2)
    report["timing_s"] = timing
    report["served_from_cache"] = False
    return report


def _evaluate_baselines(
    log: SessionLog, cfg: EncoderConfig, task: NextItemTask, text_vecs: np.ndarray
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str], dict[str, float]]:
    """Per-target test metrics, kind and fitting time of every next-item baseline."""
    per_target: dict[str, dict[str, np.ndarray]] = {}
    kinds: dict[str, str] = {}
    timing: dict[str, float] = {}
    seed_all(cfg.seed)
    baselines: dict[str, tuple[str, Any]] = {
        "popularity": ("heuristic", Popularity()),
        "cooccurrence": ("cf", CoOccurrence()),
        "als": ("cf", ALS(seed=cfg.seed)),
        "attribute_match": ("heuristic", AttributeMatch()),
    }
    for name, (kind, model) in baselines.items():
        t0 = time.perf_counter()
        per_target[name] = evaluate_scorer(task, model.fit(log))
        kinds[name] = kind
        timing[name] = round(time.perf_counter() - t0, 2)
    per_target["frozen_text"] = evaluate_scorer(task, FrozenText(text_vecs))
    kinds["frozen_text"] = "supervised"
    return per_target, kinds, timing


def _report(
    data_dir: Path,
    log: SessionLog,
    cfg: EncoderConfig,
    task: NextItemTask,
    trained: TrainedEncoder,
    per_target: dict[str, dict[str, np.ndarray]],
    kinds: dict[str, str],
    n_boot: int,
) -> dict[str, Any]:
    """The eval report: protocol, every model's test metrics and the shipped model's comparisons."""
    return {
        "dataset": str(data_dir),
        "format": log.report.get("format", "events"),
        "protocol": {
            "split": "test",
            "candidates": "full catalog",
            "n_items": len(task.item_ids),
            "targets": len(task),
            "cold_targets": int(task.cold.sum()),
            "ties": "exact expected rank",
            "ci": f"95% session bootstrap, {n_boot} resamples",
            "last_item_excluded": True,
        },
        "items_with_text": int(trained.trainer.cat.has_text.sum()),
        "final_model": trained.final,
        "text_decision": trained.text_decision,
        "final_model_rule": (
            "the fine-tuned model is shipped only if it beats the frozen stage on valid Recall@10"
        ),
        "valid_recall@10": trained.valid_recall,
        "models": {
            name: {"kind": kinds[name], **summarize(task, m, n_boot=n_boot, seed=cfg.seed)}
            for name, m in per_target.items()
        },
        "comparisons": _comparisons(task, per_target, trained.final, n_boot, cfg.seed),
        "config": cfg.training_key(),
        "training_history": trained.trainer.history,
        "frozen_text_cache_hit": trained.text_cache_hit,
    }


def _comparisons(
    task: NextItemTask, per_target: dict[str, dict[str, np.ndarray]], final: str, n_boot: int, seed: int
) -> dict[str, Any]:
    """Paired-bootstrap Recall@10 difference of the shipped model over each baseline (overall, cold)."""
    sessions = task.session_of_target
    comparisons: dict[str, Any] = {}
    for name in per_target:
        if name == final or name.startswith("two_tower"):
            continue
        block = {}
        for subset, mask in (("overall", np.ones(len(task), bool)), ("cold", task.cold)):
            d, lo, hi = paired_difference_ci(
                per_target[final]["recall@10"][mask],
                per_target[name]["recall@10"][mask],
                sessions[mask],
                n_boot=n_boot,
                seed=seed,
            )
            block[subset] = {
                "recall@10_diff": round(d, 4),
                "ci95": [round(lo, 4), round(hi, 4)],
                "significant": bool(lo > 0 or hi < 0),
            }
        comparisons[f"{final} - {name}"] = block
    return comparisons


def _ablation(
    log: SessionLog,
    cfg: EncoderConfig,
    text_vecs: np.ndarray,
    task: NextItemTask,
    per_target: dict[str, dict[str, np.ndarray]],
    final: str,
    n_boot: int,
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    reference = per_target["two_tower_frozen"]["recall@10"]
    for name, overrides in ABLATIONS.items():
        if name == "text+attributes+id":
            metrics = per_target["two_tower_frozen"]
            valid = None
        else:
            seed_all(cfg.seed)
            tr = EncoderTrainer(log, replace(cfg, finetune="none", progress=False, **overrides), text_vecs)
            tr.fit_frozen()
            metrics = evaluate_scorer(task, tr.scorer(task))
            valid = tr.best_valid
        rows[name] = _ablation_row(task, metrics, reference, n_boot, cfg.seed, valid)
    if cfg.finetune != "none":
        rows[f"text+attributes+id, fine-tuned {cfg.finetune}"] = _ablation_row(
            task, per_target[f"two_tower_{cfg.finetune}"], reference, n_boot, cfg.seed, None
        )
    return rows


def _ablation_row(
    task: NextItemTask,
    metrics: dict[str, np.ndarray],
    reference: np.ndarray,
    n_boot: int,
    seed: int,
    valid: float | None,
) -> dict[str, Any]:
    s = summarize(task, metrics, n_boot=n_boot, seed=seed)
    d, lo, hi = paired_difference_ci(
        metrics["recall@10"], reference, task.session_of_target, n_boot=n_boot, seed=seed
    )
    return {
        "recall@10": s["overall"]["recall@10"],
        "cold_recall@10": s["cold"]["recall@10"],
        "ndcg@10": s["overall"]["ndcg@10"],
        "diff_vs_full_frozen": {"value": round(d, 4), "ci95": [round(lo, 4), round(hi, 4)]},
        "valid_recall@10": None if valid is None else round(valid, 4),
    }


def ablation_markdown(report: dict[str, Any]) -> str:
    """The ablation table as Markdown."""
    lines = [
        f"# Encoder ablation — {report['dataset']} (test, {report['protocol']['targets']} targets, "
        f"{report['protocol']['cold_targets']} cold)",
        "",
        "| variant | R@10 [95% CI] | cold R@10 [95% CI] | NDCG@10 | Δ R@10 vs text+attributes+id [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for name, row in report.get("ablation", {}).items():
        r, c, d = row["recall@10"], row["cold_recall@10"], row["diff_vs_full_frozen"]
        lines.append(
            f"| {name} | {r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | "
            f"{c['value']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}] | {row['ndcg@10']['value']:.3f} | "
            f"{d['value']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |"
        )
    return "\n".join(lines) + "\n"


def eval_markdown(report: dict[str, Any]) -> str:
    """A short table of every model's test metrics (what ``shopsim encode`` prints)."""
    p = report["protocol"]
    lines = [
        f"next-item, test split: {p['targets']} targets ({p['cold_targets']} cold), "
        f"{p['n_items']} candidates (full catalog); 95% session-bootstrap CIs",
        f"{'model':<20} {'R@10':>22} {'NDCG@10':>8} {'MRR':>7} {'cold R@10':>22}",
    ]
    td = report.get("text_decision", {})
    if "valid_recall@10" in td:
        v = td["valid_recall@10"]
        lines.insert(
            1,
            f"item text: {'kept' if td['use_text'] else 'dropped'} (valid R@10 with "
            f"{v['with_text']:.3f}, without {v['without_text']:.3f})",
        )
    for name, m in report["models"].items():
        o, c = m["overall"], m["cold"]
        r, cr = o["recall@10"], c["recall@10"]
        lines.append(
            f"{name:<20} {r['value']:.3f} [{r['ci95'][0]:.3f},{r['ci95'][1]:.3f}] "
            f"{o['ndcg@10']['value']:>8.3f} {o['mrr']['value']:>7.3f} "
            f"{cr['value']:.3f} [{cr['ci95'][0]:.3f},{cr['ci95'][1]:.3f}]"
        )
    return "\n".join(lines)
