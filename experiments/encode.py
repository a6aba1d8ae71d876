"""``shopsim encode``: embed items, train the two-tower encoder, evaluate it against baselines.

Writes to ``--out``: ``item_vectors.npy`` (N × dim, catalog order of items.parquet),
``item_ids.json``, ``encoder.pt`` (towers), ``backbone/`` (LoRA adapter or full weights when
fine-tuned), ``eval.json`` (held-out next-item metrics with 95% intervals), ``manifest.json``
and ``cache/`` (frozen text vectors). A second run with unchanged inputs and configuration is
served from the cache.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopsim import __version__
from shopsim.agents.baselines.next_item import ALS, AttributeMatch, CoOccurrence, Popularity
from shopsim.data import SessionLog
from shopsim.data.next_item import NextItemTask, evaluate_scorer
from shopsim.encoders.backbone import load_backbone, locate_backbone, weights_hash
from shopsim.encoders.cache import cached, hash_files, hash_texts
from shopsim.encoders.embed import embed_texts
from shopsim.encoders.finetune import EncoderConfig, EncoderTrainer
from shopsim.encoders.text import item_texts
from shopsim.evaluation.next_item import paired_difference_ci, summarize

ABLATIONS: dict[str, dict[str, Any]] = {
    "text+attributes+id": {},
    "attributes+id (no text)": {"use_text": False},
    "text+id (no attributes)": {"use_attributes": False},
    "text+attributes (no id)": {"use_ids": False},
    "text only": {"use_attributes": False, "use_ids": False},
    "text+attributes+id, augmentation 0.5": {"augment": 0.5},
}
"""Frozen-backbone variants of the ablation table (the fine-tuning modes are added to it)."""


class FrozenText:
    """Baseline: cosine between the last item's frozen BERT text vector and every item's."""

    def __init__(self, text_vecs: np.ndarray) -> None:
        norms = np.linalg.norm(text_vecs, axis=1, keepdims=True)
        self.v = np.divide(text_vecs, norms, out=np.zeros_like(text_vecs), where=norms > 0)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.v[[h[-1] for h in histories]] @ self.v.T


def frozen_text_vectors(log: SessionLog, cfg: EncoderConfig, cache_dir: Path) -> tuple[np.ndarray, bool, str]:
    """Frozen backbone vectors of every item text, from the cache when possible."""
    texts = item_texts(log.items, log.report.get("format", "events")).tolist()
    path = locate_backbone(cfg.backbone)
    wh = weights_hash(path)
    manifest = {
        "kind": "frozen_text",
        "backbone": wh,
        "text_hash": hash_texts(texts),
        "max_length": cfg.max_length,
        "pooling": "mean",
    }

    def build() -> np.ndarray:
        if not any(t.strip() for t in texts):
            return np.zeros((len(texts), 384), dtype=np.float32)
        tok, bert = load_backbone(path)
        return embed_texts(
            tok, bert, texts, max_length=cfg.max_length, progress=cfg.progress, desc="embedding item texts"
        )

    vecs, hit = cached(cache_dir, "frozen_text", manifest, build)
    return np.asarray(vecs), hit, wh


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries below us (implicit) read the legacy RNG


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
    out.mkdir(parents=True, exist_ok=True)
    fmt = log.report.get("format", "events")
    path = locate_backbone(cfg.backbone)
    manifest = {
        "data": hash_files([data_dir / "events.parquet", data_dir / "items.parquet"]),
        "backbone": weights_hash(path),
        "config": cfg.training_key(),
        "ablation": ablation,
        "n_boot": n_boot,
        "text": text,
        "shopsim": __version__,
    }
    outputs = [out / n for n in ("eval.json", "item_vectors.npy", "encoder.pt", "item_ids.json")]
    mpath = out / "manifest.json"
    if (
        mpath.exists()
        and all(p.exists() for p in outputs)
        and json.loads(mpath.read_text()) == json.loads(json.dumps(manifest, default=str))
    ):
        stored: dict[str, Any] = json.loads((out / "eval.json").read_text())
        stored["served_from_cache"] = True
        stored["timing_s"]["total"] = round(time.perf_counter() - t_start, 2)
        return stored
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    text_vecs, text_hit, _ = frozen_text_vectors(log, cfg, out / "cache")
    timing["frozen_text_embedding"] = round(time.perf_counter() - t0, 2)

    task = NextItemTask.from_log(log, "test", max_history=cfg.max_history)
    per_target: dict[str, dict[str, np.ndarray]] = {}
    kinds: dict[str, str] = {}
    _seed_all(cfg.seed)
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

    backbone = load_backbone(path) if cfg.finetune != "none" else None
    t0 = time.perf_counter()
    trainer = EncoderTrainer(log, replace(cfg, finetune="none"), text_vecs)
    trainer.fit_frozen()
    text_decision: dict[str, Any] = {"mode": text, "use_text": cfg.use_text}
    if text == "auto" and cfg.finetune == "none" and cfg.use_text:
        # Follow the evidence: keep text only if it helps on valid (it does not always —
        # short taxonomy texts add little beyond the attributes they spell out).
        _seed_all(cfg.seed)
        no_text = EncoderTrainer(log, replace(cfg, finetune="none", use_text=False), text_vecs)
        no_text.fit_frozen()
        text_decision["valid_recall@10"] = {
            "with_text": round(trainer.best_valid, 4),
            "without_text": round(no_text.best_valid, 4),
        }
        if no_text.best_valid > trainer.best_valid:
            trainer = no_text
            text_decision["use_text"] = False
    timing["train_frozen"] = round(time.perf_counter() - t0, 2)
    per_target["two_tower_frozen"] = evaluate_scorer(task, trainer.scorer(task))
    valid_r10 = {"two_tower_frozen": round(trainer.best_valid, 4)}
    kinds["two_tower_frozen"] = "supervised"
    final = "two_tower_frozen"
    if cfg.finetune != "none":
        assert backbone is not None
        frozen_snapshot = (
            copy.deepcopy(trainer.model.state_dict()),
            trainer.cat.text_vecs,
            trainer.best_valid,
        )
        trainer.cfg = cfg
        trainer.tokenizer, trainer.bert = backbone
        t0 = time.perf_counter()
        trainer.fit_backbone()
        timing[f"train_{cfg.finetune}"] = round(time.perf_counter() - t0, 2)
        final = f"two_tower_{cfg.finetune}"
        per_target[final] = evaluate_scorer(task, trainer.scorer(task))
        kinds[final] = "supervised"
        valid_r10[final] = round(trainer.best_valid, 4)
        if trainer.best_valid <= frozen_snapshot[2]:
            # Fine-tuning did not beat the frozen stage on valid: ship the frozen model.
            trainer.model.load_state_dict(frozen_snapshot[0])
            trainer.cat.text_vecs = frozen_snapshot[1]
            trainer.bert = None
            final = "two_tower_frozen"

    sessions = task.session_of_target
    report: dict[str, Any] = {
        "dataset": str(data_dir),
        "format": fmt,
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
        "items_with_text": int(trainer.cat.has_text.sum()),
        "final_model": final,
        "text_decision": text_decision,
        "final_model_rule": (
            "the fine-tuned model is shipped only if it beats the frozen stage on valid Recall@10"
        ),
        "valid_recall@10": valid_r10,
        "models": {
            name: {"kind": kinds[name], **summarize(task, m, n_boot=n_boot, seed=cfg.seed)}
            for name, m in per_target.items()
        },
        "comparisons": {},
        "config": cfg.training_key(),
        "training_history": trainer.history,
        "frozen_text_cache_hit": text_hit,
    }
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
                seed=cfg.seed,
            )
            block[subset] = {
                "recall@10_diff": round(d, 4),
                "ci95": [round(lo, 4), round(hi, 4)],
                "significant": bool(lo > 0 or hi < 0),
            }
        report["comparisons"][f"{final} - {name}"] = block

    if ablation:
        t0 = time.perf_counter()
        report["ablation"] = _ablation(log, cfg, text_vecs, task, per_target, final, n_boot)
        timing["ablation"] = round(time.perf_counter() - t0, 2)

    # --------------------------------------------------------------- write outputs
    np.save(out / "item_vectors.npy", trainer.item_vectors())
    (out / "item_ids.json").write_text(json.dumps([str(i) for i in task.item_ids]))
    torch.save(
        {
            "architecture": trainer.architecture,
            "state_dict": trainer.model.state_dict(),
            "config": cfg.training_key(),
            "attributes": trainer.cat.attr_names,
        },
        out / "encoder.pt",
    )
    if trainer.bert is not None and cfg.finetune != "none":
        trainer.bert.save_pretrained(str(out / "backbone"))  # LoRA: the adapter only
        if trainer.tokenizer is not None:
            trainer.tokenizer.save_pretrained(str(out / "backbone"))
    timing["total"] = round(time.perf_counter() - t_start, 2)
    report["timing_s"] = timing
    report["served_from_cache"] = False
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    if ablation:
        (out / "ablation.md").write_text(ablation_markdown(report))
    mpath.write_text(json.dumps(manifest, indent=2, default=str))
    return report


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
            _seed_all(cfg.seed)
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
