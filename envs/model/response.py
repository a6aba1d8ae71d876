"""The shopper's response model: click, purchase and leave probabilities, fitted on logs.

**Click** (position-based model). A shown item ``i`` in slot ``p`` is clicked with

.. math:: P(c_i = 1) = e(p) \\cdot \\sigma(g(\\phi_i) + b)

where :math:`\\phi_i` are the click features (:mod:`shopsim.envs.model.features`), ``g`` a small
MLP on standardised features, :math:`e(p)` the examination probability of slot ``p``
(:math:`e(1) = 1`) and ``b`` an offset. Clicks on a slate are independent given the slate.

* Logs **with impressions** (MIND, OBD, any ``impression`` events): shown-but-not-clicked
  items are the negatives; ``g`` and :math:`e(p)` are fitted jointly by maximum likelihood
  (binary cross-entropy on the product), ``b = 0``.
* Logs **without impressions** (REES46, H&M, UCI): the positive is the next item of the
  session, the negatives are ``negatives`` items sampled in proportion to train popularity.
  Such a fit only ranks; the absolute click level is set afterwards by ``b``, calibrated so
  that the simulator replaying the logged sessions continues them at the logged rate (mean
  clicks per session on the valid split). :math:`e(p)` is then an **assumption**: the DCG
  prior :math:`1/\\log_2(p+1)` (configurable).

**Purchase** given a click: :math:`P(u_i = 1 \\mid c_i = 1) = \\sigma(h(\\psi_i))` with the
purchase features :math:`\\psi`; fitted on clicked items (label: the item was bought later in
that session). Purchase-only logs (H&M, UCI: every logged step *is* a purchase) set it to 1;
logs without purchases (MIND, OBD) to 0.

**Leave** after step ``t``: :math:`P(\\text{leave}) = \\sigma(w_0 + w_1 \\log(1+t) + w_2 \\cdot
\\text{bought} + \\lambda \\cdot [\\text{no click}])`. ``w`` is fitted on logged sessions (label:
the session ended after this step). Logged sessions only contain steps with an interaction, so
the no-click effect :math:`\\lambda` cannot be measured from them: it is a labelled,
configurable assumption (``leave_no_click_logit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class Scorer:
    """A fitted logit function: standardise → (tanh hidden layer) → linear. Pure numpy."""

    mean: np.ndarray
    std: np.ndarray
    w1: np.ndarray
    """(F, H) hidden weights; shape (F, 0) for a linear (logistic) scorer."""
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        if self.w1.shape[1]:
            z = np.tanh(z @ self.w1 + self.b1)
        return z @ self.w2 + self.b2

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}_mean": self.mean,
            f"{prefix}_std": self.std,
            f"{prefix}_w1": self.w1,
            f"{prefix}_b1": self.b1,
            f"{prefix}_w2": self.w2,
            f"{prefix}_b2": np.array([self.b2]),
        }

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray] | np.lib.npyio.NpzFile, prefix: str) -> Scorer:
        return cls(
            mean=z[f"{prefix}_mean"],
            std=z[f"{prefix}_std"],
            w1=z[f"{prefix}_w1"],
            b1=z[f"{prefix}_b1"],
            w2=z[f"{prefix}_w2"],
            b2=float(z[f"{prefix}_b2"][0]),
        )


@dataclass
class FitResult:
    scorer: Scorer
    examination: np.ndarray | None
    """Fitted e(p) for p = 1..P (impression logs), else None."""
    epochs: int
    valid_loss: float


class _Net(nn.Module):
    def __init__(self, n_features: int, hidden: int, n_positions: int) -> None:
        super().__init__()
        self.body: nn.Module = (
            nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            if hidden
            else nn.Linear(n_features, 1)
        )
        # e(1) = 1 is fixed; the others start at σ(3) ≈ 0.95 and are learned
        self.exam = nn.Parameter(torch.full((max(n_positions - 1, 0),), 3.0)) if n_positions > 1 else None

    def log_prob(self, x: torch.Tensor, pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(click), log P(no click)."""
        g = self.body(x).squeeze(-1)
        lp = nn.functional.logsigmoid(g)
        if self.exam is not None and pos is not None:
            beta = torch.cat([torch.full((1,), 30.0), self.exam])
            lp = lp + nn.functional.logsigmoid(beta[pos])
            lq = torch.log1p(-torch.exp(lp).clamp(max=1 - 1e-6))
        else:
            lq = nn.functional.logsigmoid(-g)
        return lp, lq


def fit_scorer(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    hidden: int = 32,
    positions: np.ndarray | None = None,
    n_positions: int = 0,
    seed: int = 0,
    max_epochs: int = 1000,
    patience: int = 40,
    weight_decay: float = 1e-4,
) -> FitResult:
    """Fit a :class:`Scorer` (and e(p) when ``positions`` is given) by binary cross-entropy.

    Early stopping on a held-out 20% of ``groups`` (sessions), chosen with ``seed``; the
    returned weights are the best on that held-out part. Patience is generous because small
    fits take few optimizer steps per epoch and the examination parameters move slowly.

    :param x: (R, F) features; :param y: (R,) 0/1 labels; :param groups: (R,) session ids.
    :param positions: (R,) 0-based slot of each row (impression logs), capped to ``n_positions``.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mean = x.mean(0)
    std = x.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    tr_idx, va_idx = _early_stopping_split(groups, rng)
    data = _Batches(
        z=torch.as_tensor(((x - mean) / std).astype(np.float32)),
        t=torch.as_tensor(y.astype(np.float32)),
        p=torch.as_tensor(positions.astype(np.int64)) if positions is not None else None,
    )
    net = _Net(x.shape[1], hidden, n_positions if positions is not None else 0)
    if net.exam is not None and positions is not None:
        _init_examination(net.exam, y, positions, n_positions)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    best, epochs_run = _train(net, opt, data, tr_idx, va_idx, max_epochs=max_epochs, patience=patience)
    w1, b1, w2, b2 = _weights(net, x.shape[1], hidden)
    exam = None
    if net.exam is not None:
        exam = np.r_[1.0, _sigmoid(net.exam.detach().numpy().astype(np.float64))]
    scorer = Scorer(mean.astype(np.float32), std.astype(np.float32), w1, b1, w2, b2)
    return FitResult(scorer=scorer, examination=exam, epochs=epochs_run, valid_loss=best)


@dataclass
class _Batches:
    """Standardised features, labels and (impression logs) slots of every row, as tensors."""

    z: torch.Tensor
    t: torch.Tensor
    p: torch.Tensor | None

    def loss(self, net: _Net, i: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of rows ``i``."""
        lp, lq = net.log_prob(self.z[i], self.p[i] if self.p is not None else None)
        return -(self.t[i] * lp + (1 - self.t[i]) * lq).mean()


def _early_stopping_split(groups: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices to train on and to early-stop on: 20% of the groups are held out (all rows
    serve both with 4 groups or fewer)."""
    ug = np.unique(groups)
    held = np.isin(groups, rng.choice(ug, size=max(1, len(ug) // 5), replace=False)) if len(ug) > 4 else None
    tr = ~held if held is not None else np.ones(len(groups), bool)
    tr_idx = torch.as_tensor(np.flatnonzero(tr))
    va_idx = torch.as_tensor(np.flatnonzero(held)) if held is not None else tr_idx
    return tr_idx, va_idx


def _init_examination(exam: nn.Parameter, y: np.ndarray, positions: np.ndarray, n_positions: int) -> None:
    """Start e(p) at the logged click rate of slot p relative to slot 1 (clipped), so few
    optimizer steps suffice on small logs."""
    rate = np.array(
        [y[positions == p].mean() if (positions == p).any() else np.nan for p in range(n_positions)]
    )
    ratio = np.clip(np.nan_to_num(rate[1:] / max(rate[0], 1e-9), nan=0.5), 0.05, 0.95)
    with torch.no_grad():
        exam.copy_(torch.as_tensor(np.log(ratio / (1 - ratio)), dtype=torch.float32))


def _train(
    net: _Net,
    opt: torch.optim.Optimizer,
    data: _Batches,
    tr_idx: torch.Tensor,
    va_idx: torch.Tensor,
    *,
    max_epochs: int,
    patience: int,
) -> tuple[float, int]:
    """Mini-batch epochs until the held-out loss has not improved for ``patience`` epochs; loads
    the best weights into ``net`` and returns the best held-out loss and the epochs run."""
    best, best_state, bad, epochs_run = np.inf, None, 0, 0
    batch = 4096
    for epoch in range(1, max_epochs + 1):
        epochs_run = epoch
        net.train()
        perm = tr_idx[torch.randperm(len(tr_idx))]
        for s in range(0, len(perm), batch):
            loss = data.loss(net, perm[s : s + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(data.loss(net, va_idx))
        if v < best - 1e-5:
            best, bad = v, 0
            best_state = {k: w.detach().clone() for k, w in net.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    return best, epochs_run


def _weights(net: _Net, n_features: int, hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(w1, b1, w2, b2) of the :class:`Scorer` for ``net``'s body; a linear body gets an empty
    hidden layer."""
    if hidden:
        seq = net.body
        assert isinstance(seq, nn.Sequential)
        l1, l2 = seq[0], seq[2]
        assert isinstance(l1, nn.Linear)
        assert isinstance(l2, nn.Linear)
        w1, b1 = l1.weight.detach().numpy().T.copy(), l1.bias.detach().numpy().copy()
        return w1, b1, l2.weight.detach().numpy()[0].copy(), float(l2.bias.detach()[0])
    lin = net.body
    assert isinstance(lin, nn.Linear)
    w1, b1 = np.zeros((n_features, 0), np.float32), np.zeros(0, np.float32)
    return w1, b1, lin.weight.detach().numpy()[0].copy(), float(lin.bias.detach()[0])


def dcg_examination(n: int) -> np.ndarray:
    """The DCG examination prior e(p) = 1 / log2(p + 1), p = 1..n (an assumption)."""
    return 1.0 / np.log2(np.arange(2, n + 2))


__all__ = ["FitResult", "Scorer", "dcg_examination", "fit_scorer"]
