"""The two towers: items (BERT text + attributes + ID) and shopper state (history → vector).

Both output L2-normalised vectors of width ``dim`` (≈64): the item vectors are the candidate
features the environment and policies see, the state vector is the shopper's observation.
Scores are cosine similarities divided by a temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shopsim.data.schema import EventCode


class ItemTower(nn.Module):
    """item vector = proj(text) + Σ attribute embeddings + ID embedding → LayerNorm → Linear.

    :param text_dim: width of the backbone's text vectors (384 for MiniLM); 0 disables text.
    :param attr_cardinalities: number of distinct values per attribute (code 0 = missing).
    :param n_ids: number of items with an ID embedding (train items); code 0 = no ID (cold).
    :param dim: output width.
    """

    def __init__(
        self, text_dim: int, attr_cardinalities: list[int], n_ids: int, dim: int, n_price: int = 0
    ) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, dim) if text_dim else None
        self.price_proj = nn.Linear(n_price, dim, bias=False) if n_price else None
        self.attr_emb = nn.ModuleList(nn.Embedding(c + 1, dim, padding_idx=0) for c in attr_cardinalities)
        self.id_emb = nn.Embedding(n_ids + 1, dim, padding_idx=0) if n_ids else None
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.dim = dim
        for emb in self.attr_emb:
            assert isinstance(emb, nn.Embedding)
            nn.init.normal_(emb.weight, std=0.1)
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.1)

    def forward(
        self,
        text: torch.Tensor | None,
        attrs: torch.Tensor,
        ids: torch.Tensor,
        price: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:param text: (n, text_dim) or None; :param attrs: (n, A) codes; :param ids: (n,)
        codes; :param price: (n, n_price) radial features of log price (zeros when unknown)."""
        h = torch.zeros(attrs.shape[0], self.dim)
        if self.text_proj is not None and text is not None:
            h = h + self.text_proj(text)
        if self.price_proj is not None and price is not None:
            h = h + self.price_proj(price)
        for a, emb in enumerate(self.attr_emb):
            h = h + emb(attrs[:, a])
        if self.id_emb is not None:
            h = h + self.id_emb(ids)
        return F.normalize(self.out(h), dim=-1)


class StateEncoder(nn.Module):
    """Shopper state = f(history item vectors, event types, recency) → one vector.

    Attention pooling over the history (recency and event-type embeddings added to each item
    vector), mixed with the most recent item through a residual MLP.
    History tensors are laid out most recent first, padded at the end.
    """

    def __init__(self, dim: int, max_history: int, n_event_types: int = len(EventCode) - 1) -> None:
        super().__init__()
        self.max_history = max_history
        self.recency = nn.Embedding(max_history, dim)
        self.event = nn.Embedding(n_event_types + 1, dim, padding_idx=int(EventCode.PAD))
        self.attn = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.mix = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        nn.init.normal_(self.recency.weight, std=0.02)
        nn.init.normal_(self.event.weight, std=0.02)

    def forward(self, items: torch.Tensor, events: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:param items: (B, L, d); :param events: (B, L) codes; :param mask: (B, L) bool."""
        pos = torch.arange(items.shape[1])
        h = items + self.recency(pos)[None] + self.event(events)
        logits = self.attn(h).squeeze(-1).masked_fill(~mask, -1e9)
        pooled = (torch.softmax(logits, dim=1).unsqueeze(-1) * h).sum(1)
        last = items[:, 0]
        return F.normalize(last + self.mix(torch.cat([pooled, last], dim=-1)), dim=-1)


class TwoTower(nn.Module):
    """Item tower + state encoder + temperature: what ``shopsim encode`` trains."""

    def __init__(
        self,
        text_dim: int,
        attr_cardinalities: list[int],
        n_ids: int,
        dim: int,
        max_history: int,
        temperature: float,
        n_price: int = 0,
    ) -> None:
        super().__init__()
        self.items = ItemTower(text_dim, attr_cardinalities, n_ids, dim, n_price)
        self.state = StateEncoder(dim, max_history)
        self.temperature = temperature
