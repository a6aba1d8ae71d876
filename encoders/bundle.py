"""A trained encoder as the rest of shopsim uses it: item vectors + state encoder, from disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
        """Load what ``shopsim encode --out DIR`` wrote."""
        d = Path(directory)
        for name in ("item_vectors.npy", "encoder.pt", "item_ids.json"):
            if not (d / name).exists():
                raise ShopsimError(f"{d}: no {name}; create it with `shopsim encode DATA_DIR --out {d}`")
        blob: dict[str, Any] = torch.load(d / "encoder.pt", weights_only=False)
        model = TwoTower(**blob["architecture"])
        model.load_state_dict(blob["state_dict"])
        model.eval()
        return cls(
            item_ids=np.array(json.loads((d / "item_ids.json").read_text())),
            item_vectors=np.load(d / "item_vectors.npy", mmap_mode="r"),
            model=model,
            max_history=int(blob["architecture"]["max_history"]),
        )

    @torch.no_grad()
    def encode_state(self, histories: list[np.ndarray], events: list[np.ndarray]) -> np.ndarray:
        """(B, dim) shopper-state vectors; histories are item indices, oldest first."""
        items = torch.as_tensor(np.array(self.item_vectors))  # copy of the read-only memmap
        idx, evc, mask = pad_histories(histories, events, self.max_history)
        return self.model.state(items[idx], evc, mask).numpy()
