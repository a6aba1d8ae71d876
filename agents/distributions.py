"""Plackett–Luce distributions over slates (ordered k-subsets of N candidates).

A slate :math:`a = (a_1, …, a_k)` drawn from scores :math:`s` over the valid candidates has

.. math::

    \\log P(a) = \\sum_{j=1}^{k} \\Big( s_{a_j}
        - \\log \\sum_{i \\in V \\setminus \\{a_1..a_{j-1}\\}} e^{s_i} \\Big)

(:math:`V` = valid candidates). Sampling is Gumbel-top-k: add i.i.d. Gumbel noise to the scores
and take the k largest in order — an exact Plackett–Luce sample without duplicates
(Yellott 1977; Kool et al. 2019, "Stochastic Beams and Where to Find Them"). The mode used for
deterministic prediction is the top-k of the scores.

There is no closed-form entropy; :func:`pl_entropy_estimate` returns the chain-rule estimate
:math:`\\sum_j H(\\text{softmax over the remaining candidates at step } j)` along a slate.
"""

from __future__ import annotations

import torch

MASK_VALUE = -1e9
"""Score of masked candidates: large and finite (−inf turns log-softmax gradients into NaN)."""


def masked_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores with invalid candidates (``mask`` false) set to :data:`MASK_VALUE`."""
    return scores.masked_fill(~mask.bool(), MASK_VALUE)


def pl_log_prob(scores: torch.Tensor, slate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact log-probability (B,) of ordered slates (B, k) under Plackett–Luce(scores (B, N))."""
    s = masked_scores(scores, mask)
    slate = slate.long()
    b, k = slate.shape
    taken = torch.zeros_like(s, dtype=torch.bool)
    total = torch.zeros(b, dtype=s.dtype, device=s.device)
    rows = torch.arange(b, device=s.device)
    for j in range(k):
        avail = s.masked_fill(taken, MASK_VALUE)
        total = total + s[rows, slate[:, j]] - torch.logsumexp(avail, dim=1)
        taken = taken.clone()
        taken[rows, slate[:, j]] = True
    return total


def pl_entropy_estimate(scores: torch.Tensor, slate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Chain-rule entropy estimate (B,) along ``slate``: Σ_j entropy of the step-j softmax."""
    s = masked_scores(scores, mask)
    slate = slate.long()
    b, k = slate.shape
    taken = ~mask.bool()
    ent = torch.zeros(b, dtype=s.dtype, device=s.device)
    rows = torch.arange(b, device=s.device)
    for j in range(k):
        logp = torch.log_softmax(s.masked_fill(taken, MASK_VALUE), dim=1)
        p = logp.exp().masked_fill(taken, 0.0)
        ent = ent - (p * logp.masked_fill(taken, 0.0)).sum(1)
        taken = taken.clone()
        taken[rows, slate[:, j]] = True
    return ent


def gumbel_top_k(
    scores: torch.Tensor, mask: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """An exact Plackett–Luce sample of k ordered candidates per row (B, k), never masked ones
    (as long as a row has ≥ k valid candidates)."""
    s = masked_scores(scores, mask)
    u = torch.rand(s.shape, generator=generator, dtype=s.dtype, device=s.device).clamp_(1e-12, 1 - 1e-12)
    g = -torch.log(-torch.log(u))
    return torch.topk(s + g, k, dim=1).indices


def top_k(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The most likely slate: the k best valid candidates in order."""
    return torch.topk(masked_scores(scores, mask), k, dim=1).indices
