"""Train the item/state encoder of a log and save it as the bundle the rest of shopsim loads.

The schedule of ``shopsim encode``: frozen backbone text vectors of every item (cached in
``out/cache``), the two-tower encoder trained on them (optionally with and without text, keeping
the better on valid), then — for ``finetune="full"``/``"lora"`` — the backbone fine-tuned too,
kept only if it beats the frozen stage on valid Recall@10. :func:`save_encoder` writes
``item_vectors.npy``, ``item_ids.json``, ``encoder.pt`` and ``backbone/``
(read back by :class:`~shopsim.encoders.bundle.EncoderBundle`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopsim import __version__
from shopsim.artifacts import verify_artifact
from shopsim.data import SessionLog
from shopsim.encoders.backbone import load_backbone, locate_backbone, weights_hash
from shopsim.encoders.cache import ENCODER_DATA_FILES, cached, hash_files, hash_texts
from shopsim.encoders.embed import embed_texts
from shopsim.encoders.finetune import EncoderConfig, EncoderTrainer
from shopsim.encoders.text import item_texts
from shopsim.errors import ShopsimError

FROZEN = "two_tower_frozen"
"""Name of the frozen-backbone model (the fine-tuned one is ``two_tower_<finetune>``)."""

BUNDLE_FILES = ("item_vectors.npy", "encoder.pt", "item_ids.json")
"""Files :func:`save_encoder` writes (besides ``backbone/`` when fine-tuned)."""

StageHook = Callable[[str, EncoderTrainer], None]
"""Called with a stage's model name and the trainer right after the stage, before the next one
changes the model (e.g. to evaluate every stage)."""


class FrozenText:
    """Baseline: cosine between the last item's frozen BERT text vector and every item's."""

    def __init__(self, text_vecs: np.ndarray) -> None:
        norms = np.linalg.norm(text_vecs, axis=1, keepdims=True)
        self.v = np.divide(text_vecs, norms, out=np.zeros_like(text_vecs), where=norms > 0)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.v[[h[-1] for h in histories]] @ self.v.T


def frozen_text_vectors(log: SessionLog, cfg: EncoderConfig, cache_dir: Path) -> tuple[np.ndarray, bool, str]:
    """Frozen backbone vectors of every item text, from the cache when possible.

    :return: the (N, H) vectors, whether they came from the cache, and the backbone's hash.
    """
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


def seed_all(seed: int) -> None:
    """Seed torch and numpy's legacy global RNG."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries below us (implicit) read the legacy RNG


@dataclass
class TrainedEncoder:
    """What :func:`train_encoder` produced."""

    trainer: EncoderTrainer
    """The trainer holding the shipped model (frozen or fine-tuned, see ``final``)."""
    text_vecs: np.ndarray
    """Frozen backbone text vectors of every item."""
    text_cache_hit: bool
    text_decision: dict[str, Any]
    """The ``text`` mode, whether text is used and, for ``auto``, both valid Recall@10s."""
    valid_recall: dict[str, float]
    """Best valid Recall@10 of each trained stage (rounded), by model name."""
    final: str
    """Name of the shipped model: ``two_tower_frozen`` or ``two_tower_<finetune>``."""
    timing_s: dict[str, float] = field(default_factory=dict)


def train_encoder(
    log: SessionLog,
    cfg: EncoderConfig,
    out: Path,
    *,
    text: str = "on",
    on_stage: StageHook | None = None,
) -> TrainedEncoder:
    """Train the encoder of ``log`` (see the module docstring) and save it into ``out``.

    :param out: the folder written into: ``out/cache`` (frozen text vectors) and the
        :data:`BUNDLE_FILES`. ``run_encode`` passes the temporary folder of the encoder artifact
        (:func:`shopsim.artifacts.write_artifact`), which becomes ``--out`` once complete.
    :param text: ``on`` (use item text), or ``auto``: with a frozen backbone, train with and
        without text and keep the variant with the better valid Recall@10.
    :param on_stage: called after each stage (see :data:`StageHook`).
    """
    t0 = time.perf_counter()
    text_vecs, text_hit, _ = frozen_text_vectors(log, cfg, out / "cache")
    embedding_s = round(time.perf_counter() - t0, 2)
    backbone = load_backbone(locate_backbone(cfg.backbone)) if cfg.finetune != "none" else None
    t0 = time.perf_counter()
    trainer, text_decision = _fit_frozen_stage(log, cfg, text_vecs, text)
    result = TrainedEncoder(
        trainer=trainer,
        text_vecs=text_vecs,
        text_cache_hit=text_hit,
        text_decision=text_decision,
        valid_recall={FROZEN: round(trainer.best_valid, 4)},
        final=FROZEN,
        timing_s={"frozen_text_embedding": embedding_s, "train_frozen": round(time.perf_counter() - t0, 2)},
    )
    if on_stage is not None:
        on_stage(FROZEN, trainer)
    if backbone is not None:
        _fit_backbone_stage(result, cfg, backbone, on_stage)
    save_encoder(result, cfg, out)
    return result


def _fit_frozen_stage(
    log: SessionLog, cfg: EncoderConfig, text_vecs: np.ndarray, text: str
) -> tuple[EncoderTrainer, dict[str, Any]]:
    """Train the towers on frozen text vectors; with ``text="auto"``, also without text."""
    trainer = EncoderTrainer(log, replace(cfg, finetune="none"), text_vecs)
    trainer.fit_frozen()
    text_decision: dict[str, Any] = {"mode": text, "use_text": cfg.use_text}
    if text == "auto" and cfg.finetune == "none" and cfg.use_text:
        # Follow the evidence: keep text only if it helps on valid (it does not always —
        # short taxonomy texts add little beyond the attributes they spell out).
        seed_all(cfg.seed)
        no_text = EncoderTrainer(log, replace(cfg, finetune="none", use_text=False), text_vecs)
        no_text.fit_frozen()
        text_decision["valid_recall@10"] = {
            "with_text": round(trainer.best_valid, 4),
            "without_text": round(no_text.best_valid, 4),
        }
        if no_text.best_valid > trainer.best_valid:
            trainer = no_text
            text_decision["use_text"] = False
    return trainer, text_decision


def _fit_backbone_stage(
    result: TrainedEncoder, cfg: EncoderConfig, backbone: tuple[Any, Any], on_stage: StageHook | None
) -> None:
    """Fine-tune the backbone after the frozen stage; ship it only if it beats that stage on valid."""
    trainer = result.trainer
    frozen_state = copy.deepcopy(trainer.model.state_dict())
    frozen_text, frozen_valid = trainer.cat.text_vecs, trainer.best_valid
    trainer.cfg = cfg
    trainer.tokenizer, trainer.bert = backbone
    t0 = time.perf_counter()
    trainer.fit_backbone()
    result.timing_s[f"train_{cfg.finetune}"] = round(time.perf_counter() - t0, 2)
    name = f"two_tower_{cfg.finetune}"
    result.valid_recall[name] = round(trainer.best_valid, 4)
    result.final = name
    if on_stage is not None:
        on_stage(name, trainer)
    if trainer.best_valid <= frozen_valid:
        # Fine-tuning did not beat the frozen stage on valid: ship the frozen model.
        trainer.model.load_state_dict(frozen_state)
        trainer.cat.text_vecs = frozen_text
        trainer.bert = None
        result.final = FROZEN


def save_encoder(result: TrainedEncoder, cfg: EncoderConfig, out: Path) -> None:
    """Write the shipped model as :data:`BUNDLE_FILES` (+ ``backbone/`` when fine-tuned) into
    ``out`` (the temporary folder of the encoder artifact). ``encoder.pt`` holds tensors and
    plain Python values only, so it loads with ``torch.load(weights_only=True)``."""
    trainer = result.trainer
    np.save(out / "item_vectors.npy", trainer.item_vectors())
    (out / "item_ids.json").write_text(json.dumps([str(i) for i in trainer.train_task.item_ids]))
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


def encoder_manifest(data_dir: Path, cfg: EncoderConfig, **options: Any) -> dict[str, Any]:
    """What an encoder run's outputs depend on: the data, backbone, configuration and ``options``."""
    return {
        "data": hash_files([data_dir / name for name in ENCODER_DATA_FILES]),
        "backbone": weights_hash(locate_backbone(cfg.backbone)),
        "config": cfg.training_key(),
        **options,
        "shopsim": __version__,
    }


def is_current(out: Path, manifest: dict[str, Any], outputs: list[str]) -> bool:
    """True when ``out`` is a verified encoder folder (:func:`shopsim.artifacts.verify_artifact`:
    every file at its recorded size and hash) made from inputs equal to ``manifest`` and holding
    every file of ``outputs``. A truncated or changed file is never served from the cache."""
    try:
        stored = verify_artifact(out, "encoder", f"shopsim encode DATA_DIR --out {out}")
    except ShopsimError:
        return False
    return stored.get("inputs") == json.loads(json.dumps(manifest, default=str)) and all(
        n in stored["files"] for n in outputs
    )
