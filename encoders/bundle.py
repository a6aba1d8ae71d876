"""A trained encoder as the rest of shopsim uses it: item vectors + state encoder, from disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopsim.artifacts import verify_artifact
from shopsim.data.schema import EventCode
from shopsim.encoders.finetune import pad_histories
from shopsim.encoders.model import TwoTower
from shopsim.errors import ShopsimError


@dataclass
class EncoderBundle:
    """Item vectors (memory-mapped) and the state encoder of a ``shopsim encode`` run."""

    item_ids: np.ndarray
    item_vectors: np.ndarray
    model: TwoTower
    max_history: int

    @classmethod
    def load(cls, directory: Path | str) -> EncoderBundle:
        """Load what ``shopsim encode --out DIR`` wrote, after verifying the folder's manifest.

        ``encoder.pt`` is read with ``torch.load(weights_only=True)``: tensors and plain Python
        values only, so a crafted file cannot run code.

        :raises ShopsimError: one line naming the folder and the rebuild command, if the folder
            is missing, incomplete, changed since it was written, or not a shopsim encoder.
        """
        d = Path(directory)
        rebuild = f"shopsim encode DATA_DIR --out {d}"
        verify_artifact(d, "encoder", rebuild)
        for name in ("item_vectors.npy", "encoder.pt", "item_ids.json"):
            if not (d / name).exists():
                raise ShopsimError(f"{d}: no {name}; rebuild it with `{rebuild}`")
        try:
            blob: dict[str, Any] = torch.load(d / "encoder.pt", weights_only=True, map_location="cpu")
            model = TwoTower(**blob["architecture"])
            model.load_state_dict(blob["state_dict"])
            max_history = int(blob["architecture"]["max_history"])
        except Exception:  # whatever a crafted or foreign file raises: one line, no traceback
            raise ShopsimError(
                f"{d}: file encoder.pt is not a shopsim encoder (or not loadable without running code); "
                f"rebuild it with `{rebuild}`"
            ) from None
        model.eval()
        try:
            item_ids = np.array(json.loads((d / "item_ids.json").read_text()))
            vectors = np.load(d / "item_vectors.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, UnicodeDecodeError, ValueError):
            raise ShopsimError(
                f"{d}: item_ids.json or item_vectors.npy cannot be read; rebuild it with `{rebuild}`"
            ) from None
        if item_ids.ndim != 1 or vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ShopsimError(
                f"{d}: item_vectors.npy {vectors.shape} does not match item_ids.json "
                f"({item_ids.shape[0]:,} ids); rebuild it with `{rebuild}`"
            )
        return cls(item_ids=item_ids, item_vectors=vectors, model=model, max_history=max_history)

    @torch.no_grad()
    def encode_state(self, histories: list[np.ndarray], events: list[np.ndarray]) -> np.ndarray:
        """(B, dim) shopper-state vectors; histories are item indices, oldest first."""
        items = torch.as_tensor(np.array(self.item_vectors))  # copy of the read-only memmap
        idx, evc, mask = pad_histories(histories, events, self.max_history)
        return self.model.state(items[idx], evc, mask).numpy()


@dataclass
class NumpyStateEncoder:
    """The trained :class:`~shopsim.encoders.model.StateEncoder` as numpy (no torch in env steps).

    Same maths as the torch module (tested to 1e-5): attention pooling over the history with
    recency and event embeddings, mixed with the most recent item by a residual GELU MLP.
    An empty history maps to the zero vector.
    """

    recency: np.ndarray
    event: np.ndarray
    attn_w1: np.ndarray
    attn_b1: np.ndarray
    attn_w2: np.ndarray
    attn_b2: np.ndarray
    mix_w1: np.ndarray
    mix_b1: np.ndarray
    mix_w2: np.ndarray
    mix_b2: np.ndarray

    @classmethod
    def from_model(cls, model: TwoTower) -> NumpyStateEncoder:
        s = model.state
        a1, a2 = s.attn[0], s.attn[2]
        m1, m2 = s.mix[0], s.mix[2]
        for layer in (a1, a2, m1, m2):
            assert isinstance(layer, torch.nn.Linear)

        def t(x: Any) -> np.ndarray:
            return np.asarray(x.detach().numpy(), dtype=np.float32).copy()

        return cls(
            recency=t(s.recency.weight),
            event=t(s.event.weight),
            attn_w1=t(a1.weight.T),
            attn_b1=t(a1.bias),
            attn_w2=t(a2.weight.T)[:, 0],
            attn_b2=t(a2.bias),
            mix_w1=t(m1.weight.T),
            mix_b1=t(m1.bias),
            mix_w2=t(m2.weight.T),
            mix_b2=t(m2.bias),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"state_{k}": v for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, z: Any) -> NumpyStateEncoder:
        return cls(**{k: z[f"state_{k}"] for k in cls.__dataclass_fields__})

    @property
    def max_history(self) -> int:
        return int(self.recency.shape[0])

    def __call__(self, vectors: np.ndarray, hist: np.ndarray, hist_ev: np.ndarray) -> np.ndarray:
        """(B, d) states. :param vectors: (I, d) item vectors; :param hist: (B, L) item codes, most
        recent first, -1 padded; :param hist_ev: (B, L) event codes."""
        from scipy.special import erf

        L = min(hist.shape[1], self.max_history)
        hist, hist_ev = hist[:, :L], hist_ev[:, :L]
        mask = hist >= 0
        items = vectors[np.maximum(hist, 0)] * mask[..., None]
        h = items + self.recency[:L][None] + self.event[np.where(mask, hist_ev, EventCode.PAD)]
        logits = np.tanh(h @ self.attn_w1 + self.attn_b1) @ self.attn_w2 + self.attn_b2[0]
        logits = np.where(mask, logits, -1e9)
        logits = logits - logits.max(1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(1, keepdims=True)
        pooled = np.einsum("bl,bld->bd", w, h)
        last = items[:, 0]
        z = np.concatenate([pooled, last], axis=1) @ self.mix_w1 + self.mix_b1
        z = 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))  # exact GELU, as torch's default
        out = last + z @ self.mix_w2 + self.mix_b2
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.where(mask[:, :1], out, 0.0).astype(np.float32)
