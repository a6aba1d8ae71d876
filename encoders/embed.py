"""Text → vector with the backbone: length-sorted batches, dynamic padding, mean pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of token vectors over the attention mask (MiniLM's sentence pooling)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def encode_batch(tokenizer: Any, model: Any, texts: Sequence[str], max_length: int) -> torch.Tensor:
    """Mean-pooled backbone output for one batch (gradients flow if enabled)."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return mean_pool(out.last_hidden_state, enc["attention_mask"])


def embed_texts(
    tokenizer: Any,
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 64,
    progress: bool = True,
    desc: str = "embedding",
) -> np.ndarray:
    """Embed ``texts`` (float32, N × hidden). Empty texts get a zero vector.

    Texts are deduplicated and sorted by length so each batch pads to its own longest text.
    """
    texts = [t if isinstance(t, str) else "" for t in texts]
    uniq = sorted({t for t in texts if t.strip()})
    lengths = [len(tokenizer.tokenize(t)[:max_length]) for t in uniq]
    order = np.argsort(lengths, kind="stable")
    dim = int(model.config.hidden_size)
    vecs = np.zeros((len(uniq), dim), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(uniq), batch_size), desc=desc, unit="batch", disable=not progress, leave=False
        ):
            idx = order[start : start + batch_size]
            vecs[idx] = encode_batch(tokenizer, model, [uniq[i] for i in idx], max_length).numpy()
    model.train(was_training)
    lookup = {t: i for i, t in enumerate(uniq)}
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        j = lookup.get(t)
        if j is not None:
            out[i] = vecs[j]
    return out
