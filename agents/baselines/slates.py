"""Baseline slate policies, each a :class:`~shopsim.agents.policy.SlatePolicy`.

Observation-only policies rank the candidates with what the agent sees:

* ``random`` — uniformly random valid candidates (stochastic; exact slate probabilities);
* ``popularity`` — popularity as of the shopper's time (``cand_feat`` column ``pop``);
* ``cooccurrence`` — association rules from the last item: candidates with support ≥ 1
  (co-occurred in a train session) ranked by lift = confidence / P(candidate), i.e.
  log count − log popularity; the others after them by popularity;
* ``bert_two_tower`` — the encoder's state vector against each candidate vector (cosine).

Simulator-bound policies read the engine's state: they are
:class:`~shopsim.agents.policy.EngineBoundPolicy` (the evaluator calls ``bind`` with the
:class:`~shopsim.envs.engine.ShopperBatch` being evaluated):

* ``itemknn``, ``als``, ``bpr`` (and any next-item scorer of :mod:`shopsim.agents.baselines.next_item`,
  fitted on the train split): score the candidates from the shopper's history
  (:class:`HistoryScorerSlate`; the ``implicit`` library's models, not hand-written);

* ``click_model_greedy`` — ranks by the fitted click model with the hidden-intent features
  zeroed: the myopic optimum given what a shop could know (including the what-if dynamics'
  click terms when they are switched on, so it stays the myopic optimum of the world it plays);
* ``click_model_oracle`` — the same with the hidden intent: the simulator's true myopic
  optimum, an upper reference no deployable policy can use;
* ``non_myopic_rule`` — greedy minus a penalty on likely purchases (which end sessions): a
  hand-written test of whether postponing purchases pays on a click reward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shopsim.agents.policy import EngineBoundPolicy, ScoringPolicy, batched, random_valid_slates
from shopsim.envs.model.features import CAND_FEATURES, CLICK_FEATURES, INTENT_FEATURES
from shopsim.envs.model.response import _sigmoid

if TYPE_CHECKING:
    from shopsim.envs.engine import ShopperBatch

POP, COOC, CTR = (CAND_FEATURES.index(f) for f in ("pop", "cooc", "ctr"))


class RandomSlate:
    """Uniformly random slates of distinct valid candidates."""

    name = "random"
    kind = "heuristic"

    def __init__(self, slate_size: int, seed: int = 0) -> None:
        self.slate_size = slate_size
        self.rng = np.random.default_rng(seed)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        obs, single = batched(observation)
        slate = random_valid_slates(obs["cand_mask"], self.slate_size, self.rng)
        return (slate[0] if single else slate), state

    def slate_log_prob(self, observation: dict[str, np.ndarray], slate: np.ndarray) -> np.ndarray:
        """log P(slate) = −log(n (n−1) … (n−k+1)) with n valid candidates."""
        obs, _ = batched(observation)
        n = obs["cand_mask"].sum(1).astype(float)
        k = self.slate_size
        return -np.sum([np.log(n - j) for j in range(k)], axis=0)


class PopularitySlate(ScoringPolicy):
    name = "popularity"
    kind = "heuristic"

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return obs["cand_feat"][..., POP]


class CtrSlate(ScoringPolicy):
    """Rank by the candidates' impression click-through rate as of the shopper's time
    (``cand_feat`` column ``ctr``, smoothed towards the log's mean CTR). Only meaningful on
    logs that record impressions: without them every item has the same (prior) CTR."""

    name = "ctr"
    kind = "heuristic"

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return obs["cand_feat"][..., CTR]


class CooccurrenceSlate(ScoringPolicy):
    name = "cooccurrence"
    kind = "cf"

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        count = np.expm1(obs["cand_feat"][..., COOC])
        pop = obs["cand_feat"][..., POP]
        lift = np.log(np.maximum(count, 1e-12)) - pop
        return np.where(count >= 1, 1e6 + lift, pop)  # rules first (by lift), then popularity


class TwoTowerSlate(ScoringPolicy):
    name = "bert_two_tower"
    kind = "supervised"

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.einsum("bnd,bd->bn", obs["cand"], obs["user"])


def click_model_logits(core: ShopperBatch, *, use_intent: bool = False) -> np.ndarray:
    """(B, N) the fitted click model's logit of every candidate of every shopper of ``core``
    (hidden intent zeroed unless ``use_intent``), plus the what-if dynamics' click terms: what
    ``click_model_greedy`` (``click_model_oracle``) ranks by."""
    phi = core.cand_phi.copy()
    if not use_intent:
        phi[..., [CLICK_FEATURES.index(f) for f in INTENT_FEATURES]] = 0.0
    g = core.sim.click.logit(phi.reshape(-1, phi.shape[-1])).reshape(core.cand.shape)
    return g + core.whatif_logit(core.cand)  # zero unless what-if dynamics are on


class ClickModelGreedy(EngineBoundPolicy):
    """Ranks candidates by the simulator's fitted click model (see the module docstring)."""

    kind = "heuristic"

    def __init__(self, slate_size: int, *, use_intent: bool = False) -> None:
        super().__init__(slate_size)
        self.use_intent = use_intent
        self.name = "click_model_oracle" if use_intent else "click_model_greedy"

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        g = click_model_logits(self.bound_engine(), use_intent=self.use_intent)
        if g.shape[0] != obs["cand_mask"].shape[0]:
            raise RuntimeError(f"{self.name}: observation batch does not match the bound simulator")
        return g


class HistoryScorerSlate(EngineBoundPolicy):
    """A next-item scorer (``scorer(histories) -> (B, catalog)``) ranking the candidates from
    the bound shoppers' histories (oldest first, at most ``max_history`` items)."""

    def __init__(
        self, slate_size: int, scorer: object, *, name: str, kind: str = "cf", max_history: int = 20
    ) -> None:
        super().__init__(slate_size)
        self.scorer = scorer
        self.name = name
        self.kind = kind
        self.max_history = max_history

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        core = self.bound_engine()
        hist = core.hist[:, : self.max_history]
        histories = [h[h >= 0][::-1] for h in hist]
        out = np.full(core.cand.shape, -np.inf)
        has = np.array([len(h) > 0 for h in histories])
        if has.any():
            full = np.asarray(self.scorer([h for h in histories if len(h)]))  # type: ignore[operator]
            cand = core.cand[has]
            out[has] = np.take_along_axis(full, np.maximum(cand, 0), axis=1)
        # unscorable candidates (cold items, empty history) fall back to popularity, below all scored
        pop = obs["cand_feat"][..., POP].astype(np.float64)
        fallback = -1e12 + pop
        return np.where(np.isfinite(out), out, fallback)


class NonMyopicRule(ClickModelGreedy):
    """Greedy on clicks, minus a penalty on candidates likely to be *bought*: in REES46 a
    purchase usually ends the session (continuation 0.19 vs 0.66, measured), so a click
    reward could gain from postponing purchases. Score = click logit − ``penalty`` · P(buy |
    click). A hand-written non-myopic rule: if it cannot beat greedy, the logs leave little
    headroom for RL on that reward."""

    def __init__(self, slate_size: int, *, penalty: float = 5.0) -> None:
        super().__init__(slate_size)
        self.penalty = penalty
        self.name = "non_myopic_rule"

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        g = super().scores(obs)
        core = self.bound_engine()
        sim = core.sim
        if sim.purchase_mode != "model" or sim.purchase is None:
            return g
        from shopsim.envs.model.features import purchase_features

        psi = purchase_features(core.cat, core.context(), core.cand)
        p_buy = _sigmoid(sim.purchase.logit(psi.reshape(-1, psi.shape[-1])) + sim.purchase_offset)
        return g - self.penalty * p_buy.reshape(g.shape)
