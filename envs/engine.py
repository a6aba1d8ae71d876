"""The simulation engine: B shoppers stepped at once with numpy.

:class:`~shopsim.envs.env.ShopperEnv` runs it with B = 1 and
:class:`~shopsim.envs.vec_env.ShopperVecEnv` with B = n_envs, so both are the same simulator.

One step for each shopper:

1. the slate's items are resolved (duplicate or masked slots become empty, see
   :meth:`ShopperBatch.slate_items`; a candidate index outside 0..N-1 is an error);
2. each shown item is clicked with e(p)·σ(g(φ)+b) (:mod:`shopsim.envs.model.response`);
3. each click becomes a purchase with the purchase model (items already bought: never again);
4. clicks and purchases enter the history (most recent first) — a purchase with the purchase
   code, a click with the log's own interaction code (``Simulator.click_code``: view for
   REES46, click for impression logs such as MIND, so the state encoder sees the event types
   it was trained on) —, leave the hidden intent, and the state vector is recomputed;
5. the shopper leaves with the leave model; the episode is truncated at ``max_steps``;
6. shoppers who clicked get new candidates for the next step (O(N), never O(catalog)); after
   a step without a click the history is unchanged and so is the candidate list.

An episode's first page depends only on its logged session: its exploration items come from
a seed derived from the session's index, so it is computed once and cached (resets are most
of the work otherwise: logged sessions are short).

**What-if dynamics** (``ShopperConfig.fatigue``, ``exposure_intent``; both 0 by default) are
*assumptions*, not measurements: the REES46 logs show the opposite of fatigue (shoppers stay in
a category, ×11.5 stickiness, see ``fidelity.json`` → ``dynamics``). They add to the click logit
of a shown item i of category c

.. math::

    g_i \\mathrel{+}= \\text{exposure\\_intent} \\cdot \\log(1 + n_i)
        - \\text{fatigue} \\cdot \\log(1 + m_c)

with :math:`n_i` / :math:`m_c` the times item i / an item of category c was shown earlier in the
episode. They exist to ask "if shoppers tired of repeated categories, or warmed to items they
had seen, would RL beat the myopic ranker?" (see ``benchmarks/agent_results``), never to make
RL look good on the logged data. The agent observes both counts (``cand_feat`` columns
``item_shown``, ``cat_shown``), so the what-if worlds are learnable.

Candidates mix retrieval sources with quotas (``candidate_mix``): embedding neighbours of the
last item, its train transitions, its train co-occurrences, the most popular items, and
uniformly random exploration; duplicates, the last item and bought items are removed and the
list is topped up with random items. If the catalog cannot fill N, the rest is masked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from shopsim.data.schema import EventCode
from shopsim.envs.kernels import count_in_prefix, first_valid
from shopsim.envs.model.features import (
    CAND,
    CAND_FEATURES,
    CLICK_FEATURES,
    Context,
    candidate_features,
    click_features,
    history_price,
    purchase_features,
)
from shopsim.envs.model.response import _sigmoid
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import StepEvents
from shopsim.errors import ShopsimError

SOURCES = ("embedding", "transition", "cooccurrence", "popular", "explore")
"""Candidate retrieval sources; a candidate's source code is its position here + 1 (0 = none)."""
EXPLORE = SOURCES.index("explore") + 1
"""Source code of uniformly random (exploration and top-up) candidates."""
START_SEED = 20261123
"""Seeds the exploration items of an episode's first page (with the episode's index)."""
START_BLOCK = 65_536
"""Sessions whose start states are computed together (bounded memory on large logs)."""
START_CACHE_SIZE = 50_000
"""Logged sessions whose first page is cached (the first this many of the split): bounded
memory, ~14 KB per cached session at N = 100."""


class StartPages:
    """The first-page candidates of the split's first ``size`` logged sessions, each computed
    once (see :meth:`ShopperBatch._start_candidates`); shareable between engines of the same
    simulator, split and shop settings."""

    def __init__(self, size: int, n: int, n_phi: int, n_feat: int) -> None:
        self.size = size
        self.have = np.zeros(size, bool)
        # np.zeros: pages of sessions never started are never touched, so never resident
        self.cand = np.zeros((size, n), np.int64)
        self.src = np.zeros((size, n), np.int64)
        self.phi = np.zeros((size, n, n_phi), np.float32)
        self.feat = np.zeros((size, n, n_feat), np.float32)

    def store(self, e: int, cand: np.ndarray, src: np.ndarray, phi: np.ndarray, feat: np.ndarray) -> None:
        self.cand[e], self.src[e], self.phi[e], self.feat[e] = cand, src, phi, feat
        self.have[e] = True


@dataclass
class ShopperConfig:
    """Settings of a simulated shop page.

    :param slate_size: k, items shown per step.
    :param n_candidates: N, candidates the agent chooses from each step.
    :param max_steps: steps before the episode is truncated.
    :param split: logged sessions the shoppers start from (``train``, ``valid``, ``test``).
    :param candidate_mix: share of N drawn from each source in :data:`SOURCES` order.
    :param bought_capacity: purchases remembered per episode (never recommended again).
    :param fatigue: WHAT-IF ASSUMPTION (default 0 = off): click-logit penalty per log(1 + times
        the item's category was shown earlier in the episode). Not measured from the logs.
    :param exposure_intent: WHAT-IF ASSUMPTION (default 0 = off): click-logit bonus per
        log(1 + times the item itself was shown earlier in the episode). Not measured.
    """

    slate_size: int = 10
    n_candidates: int = 100
    max_steps: int = 20
    split: str = "train"
    candidate_mix: tuple[float, float, float, float, float] = (0.3, 0.2, 0.2, 0.2, 0.1)
    bought_capacity: int = 64
    fatigue: float = 0.0
    exposure_intent: float = 0.0

    def with_overrides(self, **overrides: Any) -> ShopperConfig:
        """A copy with the named settings replaced: how the envs turn their keyword arguments
        into a config (``ShopperEnv(sim, slate_size=5)`` = ``ShopperEnv(sim, ShopperConfig(slate_size=5))``).

        :raises ShopsimError: a name that is not a setting.
        """
        names = [f.name for f in fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ShopsimError(
                f"unknown shop setting(s) {', '.join(unknown)}; the settings are {', '.join(names)}"
            )
        return replace(self, **overrides)

    def validate(self, sim: Simulator) -> None:
        if not (np.isfinite(self.fatigue) and self.fatigue >= 0):
            raise ShopsimError(f"fatigue={self.fatigue}: must be a finite number ≥ 0 (0 switches it off)")
        if not (np.isfinite(self.exposure_intent) and self.exposure_intent >= 0):
            raise ShopsimError(
                f"exposure_intent={self.exposure_intent}: must be a finite number ≥ 0 (0 switches it off)"
            )
        if self.split not in sim.episodes:
            raise ShopsimError(f"split {self.split!r}: not in this simulator; use {', '.join(sim.episodes)}")
        if len(sim.episodes[self.split]) == 0:
            raise ShopsimError(
                f"split {self.split!r} has no sessions in this simulator; choose another split "
                f"or prepare the data with a larger {self.split} fraction (--split)"
            )
        if self.slate_size < 1 or self.n_candidates < 1 or self.max_steps < 1:
            raise ShopsimError("slate_size, n_candidates and max_steps must be positive integers")
        if self.slate_size > self.n_candidates:
            raise ShopsimError(
                f"slate_size {self.slate_size} > n_candidates {self.n_candidates}: a slate cannot "
                f"show more items than there are candidates; lower slate_size or raise n_candidates"
            )
        if self.slate_size > sim.catalog.n_items - 1:
            raise ShopsimError(
                f"slate_size {self.slate_size}: the catalog has only {sim.catalog.n_items} items, too few to "
                f"fill a slate (the last viewed item is never a candidate); lower slate_size"
            )
        if (
            len(self.candidate_mix) != len(SOURCES)
            or min(self.candidate_mix) < 0
            or sum(self.candidate_mix) <= 0
        ):
            raise ShopsimError(
                f"candidate_mix: expected {len(SOURCES)} non-negative shares ({', '.join(SOURCES)})"
            )


def _push_front(
    new: np.ndarray, new_b: np.ndarray, old: np.ndarray, old_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise: the valid (≥ 0) entries of ``new`` then those of ``old``, -1 padded to old's
    width; ``new_b``/``old_b`` are carried along (e.g. event codes)."""
    arr = np.concatenate([new, old], axis=1)
    arr_b = np.concatenate([new_b, old_b], axis=1)
    valid = arr >= 0
    rank = np.cumsum(valid, axis=1) - 1
    keep = valid & (rank < old.shape[1])
    out = np.full(old.shape, -1, old.dtype)
    out_b = np.zeros(old_b.shape, old_b.dtype)
    r, cidx = np.nonzero(keep)
    out[r, rank[r, cidx]] = arr[r, cidx]
    out_b[r, rank[r, cidx]] = arr_b[r, cidx]
    return out, out_b


class SessionStarts:
    """What the start of an episode depends on: for every logged session of the split, its
    state vector and price level, and (cached on first use) its first page of candidates.

    Computed once per simulator and shop settings, and shareable between engines of the same
    ones (``ShopperBatch(sim, n, config, starts=other.starts)``): the evaluator plays every
    policy from one of them instead of recomputing the starts for each policy and batch.
    """

    def __init__(self, sim: Simulator, config: ShopperConfig) -> None:
        self.sim, self.config = sim, config
        episodes = sim.episodes[config.split]
        cat, n = sim.catalog, len(episodes)
        # in blocks of sessions: the encoder's intermediates are O(sessions × history × d)
        # (15 GB for a million sessions at once); one block below START_BLOCK sessions
        self.state = np.concatenate(
            [
                sim.state_encoder(
                    cat.vectors, episodes.hist[s : s + START_BLOCK], episodes.hist_ev[s : s + START_BLOCK]
                )
                for s in range(0, max(n, 1), START_BLOCK)
            ]
        )[:n]
        self.price = history_price(cat, episodes.hist)
        size = min(len(episodes), START_CACHE_SIZE)
        self.pages = StartPages(size, config.n_candidates, len(CLICK_FEATURES), len(CAND_FEATURES))


class ShopperBatch:
    """B simulated shoppers. All randomness comes from the ``rng`` passed to each call.

    :param starts: the episode starts of another engine of the same simulator and settings
        (:class:`SessionStarts`), shared instead of recomputed.
    """

    def __init__(
        self, sim: Simulator, n: int, config: ShopperConfig, starts: SessionStarts | None = None
    ) -> None:
        config.validate(sim)
        self.sim, self.n, self.cfg = sim, n, config
        self.cat = sim.catalog
        self.click_code = sim.click_code
        """Event code of a simulated click in the history (the log's own: view, or click for
        impression logs); purchases enter with the purchase code."""
        self.episodes = sim.episodes[config.split]
        ep = self.episodes
        L, M = ep.hist.shape[1], ep.intent.shape[1]
        self.hist = np.full((n, L), -1, np.int64)
        self.hist_ev = np.zeros((n, L), np.int64)
        self.intent = np.full((n, M), -1, np.int64)
        self.intent_ev = np.zeros((n, M), np.int64)
        self.bought = np.full((n, config.bought_capacity), -1, np.int64)
        self.touched_cats = np.zeros((n, 64), np.int64)  # ring of categories touched this session
        self.state = np.zeros((n, self.cat.dim), np.float32)
        self.time = np.zeros(n, np.int64)
        self.price_mean = np.zeros(n)
        self.price_known = np.zeros(n, bool)
        self.step_count = np.zeros(n, np.int64)
        self.episode_index = np.zeros(n, np.int64)
        self.cand = np.full((n, config.n_candidates), -1, np.int64)
        self.cand_src = np.zeros((n, config.n_candidates), np.int64)
        self.cand_feat = np.zeros((n, config.n_candidates, len(CAND_FEATURES)), np.float32)
        self.cand_phi = np.zeros((n, config.n_candidates, len(CLICK_FEATURES)), np.float32)
        """Click features of every candidate, computed once per draw; a slate's are gathered."""
        self.stats = np.zeros((n, 4))  # clicks, purchases, revenue, return
        # exposure counts of this episode (observed by the agent; used by the what-if dynamics):
        # per category in cat_seen, per item counted in shown_log (the episode's shown items;
        # O(k · max_steps) per shopper, never O(catalog))
        self.cat_seen = np.zeros((n, int(self.cat.category.max()) + 1), np.uint16)
        self.shown_log = np.full((n, config.max_steps * config.slate_size), -1, np.int64)
        exam = sim.examination
        k = config.slate_size
        self.exam = np.r_[exam, np.full(max(0, k - len(exam)), exam[-1])][:k].astype(np.float64)
        mix = np.asarray(config.candidate_mix, dtype=np.float64)
        q = np.floor(mix / mix.sum() * config.n_candidates).astype(int)
        self.quota = q
        self.earlier = np.triu(np.ones((k, k), bool), 1)  # earlier[j, i]: slot j before slot i
        cat = self.cat
        # the history-driven part of every candidate pool, per last item (row I: no history)
        pop = np.full(q[3], -1, np.int64)
        pop[: min(q[3], len(cat.top_popular))] = cat.top_popular[: q[3]]
        static = np.concatenate(
            [cat.emb_idx[:, : q[0]], cat.trans_idx[:, : q[1]], cat.cooc_idx[:, : q[2]]], axis=1
        ).astype(np.int64)
        static = np.concatenate([static, np.full((1, static.shape[1]), -1, np.int64)])
        self.item_pool = np.concatenate([static, np.broadcast_to(pop, (len(static), q[3]))], axis=1)
        self.n_random = int(q[4]) + config.n_candidates // 2 + 8  # exploration, then a top-up
        self.pool_src = np.concatenate(
            [np.full(min(q[i], cat.emb_idx.shape[1]) if i < 3 else q[i], i + 1) for i in range(4)]
            + [np.full(self.n_random, EXPLORE)]
        )
        # episode starts are fixed: their state vectors are computed once
        if starts is None:
            starts = SessionStarts(sim, config)
        elif starts.sim is not sim or starts.config != config:
            raise ValueError("ShopperBatch: the shared starts belong to another simulator or shop settings")
        self.starts = starts
        self.start_state, self.start_price = starts.state, starts.price
        self._start_cache = starts.pages
        self._mark = np.zeros(self.cat.n_items, np.uint8)  # scratch of kernels.first_valid

    # --- context -------------------------------------------------------------------------
    def context(self, rows: np.ndarray | slice = slice(None)) -> Context:
        return Context(
            self.hist[rows],
            self.hist_ev[rows],
            self.state[rows],
            self.intent[rows],
            self.intent_ev[rows],
            self.time[rows],
            (self.price_mean[rows], self.price_known[rows]),
        )

    def _update_state(self, rows: np.ndarray) -> None:
        """Recompute what depends on the history: the state vector and its price level."""
        if len(rows):
            self.state[rows] = self.sim.state_encoder(self.cat.vectors, self.hist[rows], self.hist_ev[rows])
            self.price_mean[rows], self.price_known[rows] = history_price(self.cat, self.hist[rows])

    # --- reset ---------------------------------------------------------------------------
    def reset_rows(
        self, rows: np.ndarray, rng: np.random.Generator, episodes: np.ndarray | None = None
    ) -> None:
        """Start new shoppers in ``rows`` from random (or the given) logged sessions."""
        if len(rows) == 0:
            return
        ep = self.episodes
        pick = rng.integers(0, len(ep), len(rows)) if episodes is None else np.asarray(episodes)
        self.episode_index[rows] = pick
        self.time[rows] = ep.time[pick]
        self.hist[rows] = ep.hist[pick]
        self.hist_ev[rows] = ep.hist_ev[pick]
        self.intent[rows] = ep.intent[pick]
        self.intent_ev[rows] = ep.intent_ev[pick]
        self.bought[rows] = -1
        # purchases in the history count as bought: they are never recommended again
        hb = np.where(ep.hist_ev[pick] == EventCode.PURCHASE, ep.hist[pick], -1)
        w = min(hb.shape[1], self.bought.shape[1])
        self.bought[rows, :w] = hb[:, :w]
        hc = np.where(ep.hist[pick] >= 0, self.cat.category[np.maximum(ep.hist[pick], 0)], 0)
        self.touched_cats[rows] = 0
        w = min(hc.shape[1], self.touched_cats.shape[1])
        self.touched_cats[rows, :w] = hc[:, :w]
        self.step_count[rows] = 0
        self.stats[rows] = 0.0
        self.shown_log[rows] = -1
        self.cat_seen[rows] = 0
        self.state[rows] = self.start_state[pick]
        self.price_mean[rows], self.price_known[rows] = self.start_price[0][pick], self.start_price[1][pick]
        self._start_candidates(rows, pick)

    def _start_candidates(self, rows: np.ndarray, pick: np.ndarray) -> None:
        """First-page candidates of each episode. They depend on the logged session only (its
        exploration items come from the session's own seed), so each is drawn once and cached."""
        pages = self._start_cache
        cached = pick < pages.size
        cached[cached] = pages.have[pick[cached]]
        todo_r, todo_e = rows[~cached], pick[~cached]
        # the same session twice in one batch: drawn once (the rows' states are equal)
        todo_e, first = np.unique(todo_e, return_index=True)
        todo_r = todo_r[first]
        if len(todo_r):
            # one batched draw, each row from its own session's generator: the same numbers as
            # one draw per row (a log with more sessions than the cache resets uncached rows
            # every step)
            self.draw_candidates(todo_r, [np.random.default_rng([START_SEED, e]) for e in todo_e.tolist()])
            for r, e in zip(todo_r.tolist(), todo_e.tolist(), strict=True):
                if e < pages.size:
                    pages.store(e, self.cand[r], self.cand_src[r], self.cand_phi[r], self.cand_feat[r])
        hit = pick < pages.size
        hit[hit] = pages.have[pick[hit]]
        if len(todo_r):  # uncached duplicates of a session drawn above copy its row
            dup = ~cached & ~hit & ~np.isin(rows, todo_r)
            if dup.any():
                src = todo_r[np.searchsorted(todo_e, pick[dup])]
                d = rows[dup]
                self.cand[d], self.cand_src[d], self.cand_phi[d], self.cand_feat[d] = (
                    self.cand[src],
                    self.cand_src[src],
                    self.cand_phi[src],
                    self.cand_feat[src],
                )
        if hit.any():
            r, e = rows[hit], pick[hit]
            self.cand[r], self.cand_src[r], self.cand_phi[r], self.cand_feat[r] = (
                pages.cand[e],
                pages.src[e],
                pages.phi[e],
                pages.feat[e],
            )

    def precompute_start_pages(self) -> None:
        """Fill the first-page cache for every logged session of the split (up to
        :data:`START_CACHE_SIZE`), so that resets never compute candidates — the state long
        training runs reach. Uses shopper row 0 as scratch: call it before resetting."""
        row = np.array([0])
        for e in np.flatnonzero(~self._start_cache.have).tolist():
            self.reset_rows(row, np.random.default_rng(0), np.array([e]))

    # --- candidates ----------------------------------------------------------------------
    def draw_candidates(self, rows: np.ndarray, rng: np.random.Generator | list[np.random.Generator]) -> None:
        """Draw the N candidates of shoppers ``rows`` from their current history (random items
        from ``rng``, or from ``rng[i]`` for row ``rows[i]`` when given one generator per row).

        The pool of each row is the precomputed retrieval list of its last item (embedding
        neighbours, transitions, co-occurrences by quota, then the most popular items) followed
        by uniformly random items from ``rng``; the first N pool items that are not repeats,
        not the last item and not already bought become the candidates, in pool order, with
        their source codes (:data:`SOURCES`). A row left short (overlapping sources) is topped
        up with unused random items; a catalog too small to fill N leaves the rest masked
        (-1). Writes ``cand``, ``cand_src``, their click features ``cand_phi`` and the
        agent-visible ``cand_feat`` (exposure columns zero until :meth:`refresh_exposure`).
        """
        if len(rows) == 0:
            return
        cat, n_items, N = self.cat, self.cat.n_items, self.cfg.n_candidates
        b = len(rows)
        last = self.hist[rows, 0]
        if isinstance(rng, list):  # one generator per row
            explore = np.stack([g.integers(0, n_items, self.n_random) for g in rng])
        else:
            explore = rng.integers(0, n_items, (b, self.n_random))
        pool = np.concatenate([self.item_pool[last], explore], axis=1)
        cand, csrc = first_valid(pool, self.pool_src, last, self.bought[rows], N, self._mark)
        n_bought = (self.bought[rows] >= 0).sum(1)
        short = np.flatnonzero(
            (cand >= 0).sum(1) < np.minimum(N, np.maximum(n_items - 1 - n_bought, self.cfg.slate_size))
        )
        for r in short:  # rare: overlapping sources left holes; top up with unused random items
            have = int((cand[r] >= 0).sum())
            want = min(N, n_items - 1 - int((self.bought[rows[r]] >= 0).sum()))
            exclude = np.r_[cand[r, :have], self.bought[rows[r]], last[r]]
            if want < self.cfg.slate_size:  # tiny catalog: bought items return (never bought twice)
                want = min(N, n_items - 1)
                exclude = np.r_[cand[r, :have], last[r]]
            row_rng = rng[r] if isinstance(rng, list) else rng
            while have < want:
                extra = row_rng.integers(0, n_items, 2 * N)
                extra = extra[~np.isin(extra, exclude)]
                extra = pd.unique(extra)[: want - have]
                cand[r, have : have + len(extra)] = extra
                csrc[r, have : have + len(extra)] = EXPLORE
                exclude = np.r_[exclude, extra]
                have += len(extra)
        self.cand[rows] = cand
        self.cand_src[rows] = csrc
        phi = click_features(cat, self.context(rows), cand)
        self.cand_phi[rows] = phi
        self.cand_feat[rows] = candidate_features(cat, phi, cand, csrc)

    def observe(self, rows: np.ndarray | slice = slice(None), mode: str = "vectors") -> dict[str, np.ndarray]:
        """The observation of shoppers ``rows`` (:mod:`shopsim.envs.env`): ``vectors`` mode with
        the candidate vectors, ``indices`` mode without (the item codes only)."""
        cand = self.cand[rows]
        mask = cand >= 0
        obs = {"user": self.state[rows].copy()}
        if mode == "vectors":
            obs["cand"] = np.take(self.cat.vectors0, cand, axis=0)  # take: ~1.6x faster than fancy indexing
        obs["cand_item"] = np.where(mask, cand, self.cat.n_items)
        obs["cand_feat"] = self.cand_feat[rows].copy()
        obs["cand_mask"] = mask.astype(np.int8)
        return obs

    def episode_summary(self, row: int) -> dict[str, float | int]:
        """What ``info["shopper"]`` reports when shopper ``row``'s episode ends."""
        s = self.stats[row]
        return {
            "clicks": int(s[0]),
            "purchases": int(s[1]),
            "revenue": float(s[2]),
            "return": float(s[3]),
            "steps": int(self.step_count[row]),
        }

    # --- step ----------------------------------------------------------------------------
    def check_actions(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` as an int64 (B, k) array of candidate indices.

        :raises ShopsimError: an index outside 0..N-1 (the action space is
            ``MultiDiscrete([N] * k)``; like Gymnasium's own envs, an action outside it is an
            error, never clamped). Masked and repeated indices are valid: see :meth:`slate_items`.
        """
        a = np.asarray(actions, dtype=np.int64)
        n = self.cfg.n_candidates
        bad = (a < 0) | (a >= n)
        if bad.any():
            raise ShopsimError(
                f"action: candidate index {int(a[bad][0])} is out of range; every slot must be a "
                f"candidate index in 0..{n - 1} (n_candidates={n})"
            )
        return a

    def slate_items(self, actions: np.ndarray) -> np.ndarray:
        """Candidate indices (B, k) → item codes (B, k), -1 for empty slots.

        Rule: a slot is empty when its index points at a masked candidate or repeats an item
        already placed in an earlier slot of the same slate (the first occurrence wins).

        :raises ShopsimError: an index outside 0..N-1 (:meth:`check_actions`).
        """
        a = self.check_actions(actions)
        items = self.cand[np.arange(len(a))[:, None], a]
        dup = ((items[:, :, None] == items[:, None, :]) & self.earlier).any(1)
        return np.where(dup | (items < 0), -1, items)

    def step_slate(
        self, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[StepEvents, np.ndarray, np.ndarray]:
        """Show the slate of candidate indices ``actions`` (B, k); see :meth:`slate_items`.

        :raises ShopsimError: an index outside 0..N-1 (:meth:`check_actions`).
        """
        a = np.asarray(actions, dtype=np.int64)
        items = self.slate_items(a)  # checks the range
        phi = self.cand_phi[np.arange(len(a))[:, None], a]  # empty slots: masked later by `shown`
        return self._step(items, phi, rng)

    def step(self, items: np.ndarray, rng: np.random.Generator) -> tuple[StepEvents, np.ndarray, np.ndarray]:
        """Show ``items`` (B, k item codes, -1 = empty; any items, not only candidates).

        :return: (events, terminated, truncated); terminated = the shopper left.
        """
        return self._step(items, click_features(self.cat, self.context(), items), rng)

    def _step(
        self, items: np.ndarray, phi: np.ndarray, rng: np.random.Generator
    ) -> tuple[StepEvents, np.ndarray, np.ndarray]:
        """One step of every shopper (steps 2–6 of the module docstring).

        :param items: (B, k) shown item codes in slot order, -1 = empty slot.
        :param phi: (B, k, F) their click features (rows of empty slots are ignored).
        :param rng: one (B, 2k + 1) uniform draw gives the click, purchase and leave uniforms;
            shoppers who clicked then draw their next candidates from it.
        :return: (events, left, truncated).
        """
        cat = self.cat
        b, k = items.shape
        shown = items >= 0
        it = np.maximum(items, 0)
        icat = np.where(shown, cat.category[it], 0)
        u = rng.random((b, 2 * k + 1))  # one draw per step: click, purchase and leave uniforms
        clicked, purchased = self._respond(items, phi, icat, u[:, : 2 * k])
        touched = ((icat[:, :, None] == self.touched_cats[:, None, :]) & (icat[:, :, None] > 0)).any(2)
        in_basket = (items[:, :, None] == np.where(self.intent >= 0, self.intent, -2)[:, None, :]).any(
            2
        ) & shown
        self._record_exposure(items, icat, shown)
        self.step_count += 1
        n_click = clicked.sum(1)
        n_buy = purchased.sum(1)
        self._enter_history(items, icat, clicked, purchased)

        leave_x = np.empty((b, 2))
        leave_x[:, 0] = np.log1p(self.step_count)
        leave_x[:, 1] = n_buy > 0
        l_logit = self.sim.leave.logit(leave_x) + self.sim.leave_no_click_logit * (n_click == 0)
        left = u[:, 2 * k] < _sigmoid(l_logit)
        truncated = ~left & (self.step_count >= self.cfg.max_steps)
        price = np.where(shown, cat.price[it], 0.0)
        events = StepEvents(
            items=items,
            shown=shown,
            clicked=clicked,
            purchased=purchased,
            price=price,
            category=icat,
            new_category=~touched & shown,
            in_basket=in_basket,
            popularity=np.where(shown, cat.popularity[it], 0.0),
            left=left,
            step=self.step_count.copy(),
        )
        self.stats[:, 0] += n_click
        self.stats[:, 1] += n_buy
        self.stats[:, 2] += (purchased * price).sum(1)
        # retrieval depends on the history: only shoppers whose history changed get new candidates
        self.draw_candidates(np.flatnonzero(~left & ~truncated & (n_click > 0)), rng)
        self.refresh_exposure()
        return events, left, truncated

    def _respond(
        self, items: np.ndarray, phi: np.ndarray, icat: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(clicked, purchased), both (B, k), of the shown ``items`` (steps 2–3): ``u`` (B, 2k)
        holds the click uniforms then the purchase uniforms."""
        sim = self.sim
        b, k = items.shape
        shown = items >= 0
        g = sim.click.logit(phi.reshape(-1, phi.shape[-1])).reshape(b, k)
        if self.cfg.fatigue or self.cfg.exposure_intent:
            g = g + self.whatif_logit(items, icat)
        p_click = self.exam[None, :k] * _sigmoid(g + sim.click_offset) * shown
        clicked = u[:, :k] < p_click
        already = (items[:, :, None] == self.bought[:, None, :]).any(2) & shown
        if sim.purchase_mode == "always":
            p_buy = np.ones((b, k))
        elif sim.purchase_mode == "model" and sim.purchase is not None and clicked.any():
            rows = np.flatnonzero(clicked.any(1))  # purchase features only where something was clicked
            psi = purchase_features(self.cat, self.context(rows), items[rows])
            p_buy = np.zeros((b, k))
            p_buy[rows] = _sigmoid(sim.purchase.logit(psi).reshape(len(rows), k) + sim.purchase_offset)
        else:
            p_buy = np.zeros((b, k))
        purchased = clicked & ~already & (u[:, k : 2 * k] < p_buy)
        # a purchase-only log: an item already bought cannot be "clicked" (bought) again
        if sim.purchase_mode == "always":
            clicked &= ~already
        return clicked, purchased

    def _enter_history(
        self, items: np.ndarray, icat: np.ndarray, clicked: np.ndarray, purchased: np.ndarray
    ) -> None:
        """Step 4: clicked items enter the history at the front (most recent first: the last
        clicked slot first) with the purchase code or the log's own interaction code
        (:attr:`~shopsim.envs.model.simulator.Simulator.click_code`), leave the hidden intent,
        join the touched categories and (if bought) the bought items; the state is recomputed."""
        changed = np.flatnonzero(clicked.sum(1) > 0)
        if len(changed):
            c = clicked[changed][:, ::-1]
            new = np.where(c, items[changed][:, ::-1], -1)
            codes = np.where(purchased[changed][:, ::-1], int(EventCode.PURCHASE), self.click_code)
            self.hist[changed], self.hist_ev[changed] = _push_front(
                new, codes, self.hist[changed], self.hist_ev[changed]
            )
            ncat = np.where(c, icat[changed][:, ::-1], -1)
            self.touched_cats[changed] = _push_front(
                ncat, ncat, self.touched_cats[changed], self.touched_cats[changed]
            )[0]
            hit = (self.intent[changed][:, :, None] == np.where(c, new, -2)[:, None, :]).any(2)
            self.intent[changed] = np.where(hit, -1, self.intent[changed])
            bought_new = np.where(purchased[changed][:, ::-1], items[changed][:, ::-1], -1)
            self.bought[changed] = _push_front(
                bought_new, bought_new, self.bought[changed], self.bought[changed]
            )[0]
        self._update_state(changed)

    # --- exposure (observed) and the what-if dynamics ---------------------------------------
    def whatif_logit(self, items: np.ndarray, icat: np.ndarray | None = None) -> np.ndarray:
        """(B, m) what-if click-logit terms for items (B, m) (-1 = none; see the module docstring)."""
        rows = np.arange(len(items))[:, None]
        it = np.maximum(items, 0)
        if icat is None:
            icat = self.cat.category[it]
        out = np.zeros(items.shape)
        if self.cfg.exposure_intent:
            out += self.cfg.exposure_intent * np.log1p(self.item_counts(items).astype(np.float64))
        if self.cfg.fatigue:
            out -= self.cfg.fatigue * np.log1p(self.cat_seen[rows, icat].astype(np.float64))
        return np.where(items >= 0, out, 0.0)

    def _record_exposure(self, items: np.ndarray, icat: np.ndarray, shown: np.ndarray) -> None:
        k = items.shape[1]
        r, c = np.nonzero(shown)
        np.add.at(self.cat_seen, (r, icat[r, c]), 1)
        pos = np.minimum(self.step_count, self.cfg.max_steps - 1)[:, None] * k + np.arange(k)
        self.shown_log[np.arange(len(items))[:, None], pos] = items

    def item_counts(self, items: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(B, m) times each of ``items`` (B, m; -1 = none) was shown earlier in the episode of
        shoppers ``rows``, at most 255 (the counts are observed as log1p ≤ 5.55)."""
        log = self.shown_log[rows]
        filled = np.minimum(self.step_count[rows], self.cfg.max_steps) * self.cfg.slate_size
        return np.minimum(count_in_prefix(log, filled, np.ascontiguousarray(items, np.int64)), 255)

    def refresh_exposure(self, rows: np.ndarray | slice = slice(None)) -> None:
        """Write the exposure counts of the current candidates into ``cand_feat``."""
        cand = self.cand[rows]
        rr = np.arange(len(cand))[:, None]
        it = np.maximum(cand, 0)
        valid = cand >= 0
        f = self.cand_feat[rows]
        f[..., CAND["item_shown"]] = np.where(
            valid, np.log1p(self.item_counts(cand, rows).astype(np.float32)), 0.0
        )
        f[..., CAND["cat_shown"]] = np.where(
            valid, np.log1p(self.cat_seen[rows][rr, self.cat.category[it]].astype(np.float32)), 0.0
        )
        self.cand_feat[rows] = f
