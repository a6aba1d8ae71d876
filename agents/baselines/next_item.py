"""Non-RL recommenders that every shopsim policy is compared against.

Each is a *next-item scorer*: ``fit`` on the train split of a :class:`SessionLog`, then
``__call__(histories)`` returns a (batch × catalog) score matrix. Items a model cannot score
(ID models on items never seen in training) get ``-inf``; ties are charged their exact
expected rank by the evaluator, so no model profits from catalog order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from shopsim.data import SessionLog
from shopsim.data.sequences import session_sequences


def train_sequences(log: SessionLog) -> list[np.ndarray]:
    """Item-index sequences of the train sessions (catalog order of items.parquet)."""
    index = pd.Index(log.items["item_id"])
    return list(session_sequences(log.split("train"), index).values())


@dataclass
class Popularity:
    """Rank by number of train interactions (the floor every model must clear)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, log: SessionLog) -> Popularity:
        n = len(log.items)
        self.counts = np.zeros(n)
        for seq in train_sequences(log):
            np.add.at(self.counts, seq, 1.0)
        return self

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


@dataclass
class CoOccurrence:
    """Transitions + session co-occurrence + popularity, from the train sessions.

    score(i) = Σ_j w_j · (T[h_j, i] + ½ C[h_j, i]) + 10⁻³ · pop(i), where ``h_j`` is the j-th
    most recent history item, ``w_j = 0.5^j``, ``T`` counts "a then b" transitions and ``C``
    counts co-occurrence in a session. Popularity only breaks ties among items with no signal.
    """

    max_history: int = 5
    trans: sp.csr_matrix | None = None
    cooc: sp.csr_matrix | None = None
    pop: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, log: SessionLog) -> CoOccurrence:
        n = len(log.items)
        rows: list[int] = []
        cols: list[int] = []
        crow: list[int] = []
        ccol: list[int] = []
        self.pop = np.zeros(n)
        for seq in train_sequences(log):
            np.add.at(self.pop, seq, 1.0)
            rows.extend(seq[:-1])
            cols.extend(seq[1:])
            u = np.unique(seq)
            if len(u) > 1:
                a, b = np.meshgrid(u, u)
                m = a != b
                crow.extend(a[m])
                ccol.extend(b[m])
        self.trans = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        self.cooc = sp.csr_matrix((np.ones(len(crow)), (crow, ccol)), shape=(n, n))
        self.pop = self.pop / max(self.pop.max(), 1.0)
        return self

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        assert self.trans is not None
        assert self.cooc is not None
        n = self.trans.shape[0]
        w_rows: list[int] = []
        w_cols: list[int] = []
        w_vals: list[float] = []
        for b, h in enumerate(histories):
            recent = h[::-1][: self.max_history]
            for j, item in enumerate(recent):
                w_rows.append(b)
                w_cols.append(item)
                w_vals.append(0.5**j)
        weights = sp.csr_matrix((w_vals, (w_rows, w_cols)), shape=(len(histories), n))
        scores = (weights @ (self.trans + 0.5 * self.cooc)).toarray()
        return scores + 1e-3 * self.pop[None, :]


@dataclass
class ALS:
    """Implicit-feedback matrix factorisation (``implicit`` ALS) on train session × item.

    A history is folded in as a new "session" (``recalculate_user``); items without train
    interactions cannot be scored (``-inf``). ID-only: no text, no attributes.
    """

    factors: int = 64
    iterations: int = 20
    regularization: float = 0.05
    alpha: float = 10.0
    seed: int = 0
    model: object | None = None
    known: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def fit(self, log: SessionLog) -> ALS:
        from implicit.als import AlternatingLeastSquares

        mat = _session_item_matrix(log)
        mat.data = 1.0 + self.alpha * mat.data
        # implicit parallelises itself; a threaded BLAS underneath only oversubscribes the cores
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                iterations=self.iterations,
                regularization=self.regularization,
                random_state=self.seed,
                num_threads=1,  # deterministic for a fixed seed
            )
            model.fit(mat, show_progress=False)
        self.model = model
        self.known = np.asarray(mat.sum(axis=0)).ravel() > 0
        return self

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        assert self.model is not None
        n = len(self.known)
        user_items = _history_matrix(histories, n, 1.0 + self.alpha)
        with threadpool_limits(1, "blas"):
            ids, scores = self.model.recommend(  # type: ignore[attr-defined]
                np.arange(len(histories)),
                user_items,
                N=n,
                recalculate_user=True,
                filter_already_liked_items=False,
            )
        out = np.full((len(histories), n), -np.inf)
        np.put_along_axis(out, ids, scores, axis=1)
        out[:, ~self.known] = -np.inf
        return out


@dataclass
class AttributeMatch:
    """Score items by the attributes they share with the last history item.

    score(i) = Σ_a 2^(A−a) · [attr_a(i) = attr_a(last)], attributes ordered most specific first
    (see :data:`shopsim.encoders.text.ATTRIBUTE_COLUMNS`), price band last. Missing values
    never match. No text, no IDs — and many ties, charged at their expected rank.
    """

    attrs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), int))

    def fit(self, log: SessionLog) -> AttributeMatch:
        from shopsim.encoders.text import item_attributes

        self.attrs = item_attributes(log.items, log.report.get("format", "events")).to_numpy()
        return self

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        a = self.attrs
        n_attr = a.shape[1]
        weights = 2.0 ** np.arange(n_attr - 1, -1, -1)
        last = a[[h[-1] for h in histories]]  # (B, A)
        match = (a[None, :, :] == last[:, None, :]) & (last[:, None, :] > 0)
        return (match * weights).sum(axis=2)


def _history_matrix(histories: list[np.ndarray], n_items: int, value: float) -> sp.csr_matrix:
    """One row per history, ``value`` per interaction (repeats summed)."""
    rows = np.concatenate([np.full(len(h), i) for i, h in enumerate(histories)])
    cols = np.concatenate(histories)
    mat = sp.csr_matrix(
        (np.full(len(rows), value, np.float32), (rows, cols)), shape=(len(histories), n_items)
    )
    mat.sum_duplicates()
    return mat


def _session_item_matrix(log: SessionLog) -> sp.csr_matrix:
    """Train session × item counts."""
    return _history_matrix(train_sequences(log), len(log.items), 1.0)


@dataclass
class BPR:
    """Bayesian personalised ranking (``implicit`` BPR) on train session × item; a history is
    folded in as the mean of its items' factors (BPR has no closed-form user refit)."""

    factors: int = 64
    iterations: int = 100
    learning_rate: float = 0.05
    regularization: float = 0.01
    seed: int = 0
    item_factors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    known: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def fit(self, log: SessionLog) -> BPR:
        from implicit.bpr import BayesianPersonalizedRanking

        mat = _session_item_matrix(log)
        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=self.factors,
                iterations=self.iterations,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                random_state=self.seed,
                num_threads=1,  # deterministic for a fixed seed
            )
            model.fit(mat, show_progress=False)
        self.item_factors = np.asarray(model.item_factors)
        self.known = np.asarray(mat.sum(axis=0)).ravel() > 0
        return self

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        users = np.stack([self.item_factors[h].mean(0) for h in histories])
        out = users @ self.item_factors.T
        out[:, ~self.known] = -np.inf
        return out


@dataclass
class ItemKNN:
    """Item-to-item cosine neighbours (``implicit`` CosineRecommender, K neighbours) on train
    session × item; a history scores an item by its summed similarity to the history's items."""

    neighbours: int = 50
    model: object | None = None
    n_items: int = 0

    def fit(self, log: SessionLog) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        mat = _session_item_matrix(log)
        model = CosineRecommender(K=self.neighbours, num_threads=1)
        with warnings.catch_warnings():  # implicit transposes to COO internally and warns about it
            warnings.simplefilter("ignore")
            model.fit(mat, show_progress=False)
        self.model, self.n_items = model, mat.shape[1]
        return self

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        assert self.model is not None
        user_items = _history_matrix(histories, self.n_items, 1.0)
        sim = self.model.similarity  # type: ignore[attr-defined]
        return np.asarray((user_items @ sim).todense(), dtype=np.float64)
