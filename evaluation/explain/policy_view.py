"""A learned policy's own view of a candidate: its score for the item, split over its inputs.

For SlateQ also :func:`slateq_value_split`: the item value Q̄(s, i) as the immediate reward of a
click on it plus the long-term rest (they sum to Q̄ exactly).

PPO's pointer policy scores candidate *i* from ``[item vector, agent-visible features, shopper
state, item vector ⊙ state]`` of that candidate alone (:class:`~shopsim.agents.ppo.SlatePointerPolicy`),
and SlateQ's item value Q̄(s, i) and choice logit g(s, i) likewise
(:class:`~shopsim.agents.slateq.SlateQPolicy`). The score is split exactly
(:func:`~shopsim.evaluation.explain.attribution.shapley`) over 18 players: the item's vector
(one group of d inputs), each of the 16 named candidate features
(:data:`~shopsim.envs.model.features.CAND_FEATURES`) and the shopper state (one group), against
a baseline input — the mean of the same inputs over the valid candidates of train-split
session starts (:func:`input_baseline`). Contributions sum to score − baseline score, so two
policies that show the same item for different reasons give different splits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shopsim.envs.model.features import CAND, CAND_FEATURES
from shopsim.envs.rewards import WeightedReward
from shopsim.errors import ShopsimError
from shopsim.evaluation.explain.attribution import Attribution, shapley

PLAYERS: tuple[str, ...] = ("item vector", *CAND_FEATURES, "shopper state")
"""The players of a policy attribution, in column order of :func:`candidate_inputs`."""

HEADS = {"ppo": ("score",), "dqn": ("item_value", "choice_logit")}
"""What can be explained per learned agent: PPO's Plackett–Luce score; SlateQ's item value
Q̄(s, i) and its choice model's logit g(s, i)."""


def _policy(agent: Any) -> Any:
    return getattr(agent, "policy", agent)


def candidate_inputs(agent: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 2d + f) per-candidate inputs of one (unbatched) observation: item vector, candidate
    features, shopper state — what the agent's item network reads (the ⊙ term is rebuilt)."""
    policy = _policy(agent)
    batch = {
        k: torch.as_tensor(np.asarray(v)[None])
        for k, v in obs.items()
        if k in policy.observation_space.spaces
    }
    with torch.no_grad():
        cand = policy.candidate_vectors(batch)[0].double().numpy()
    feat = np.asarray(obs["cand_feat"], dtype=np.float64)
    user = np.broadcast_to(np.asarray(obs["user"], dtype=np.float64), (cand.shape[0], cand.shape[1]))
    return np.concatenate([cand, feat, user], axis=1)


def item_model(agent: Any, head: str) -> Callable[[np.ndarray], np.ndarray]:
    """The agent's per-candidate ``head`` as a function of :func:`candidate_inputs` rows."""
    policy = _policy(agent)
    if head == "score" and hasattr(policy, "cand_net"):
        body, out = policy.cand_net, policy.score_head
    elif head == "item_value" and hasattr(policy, "q_net"):
        body, out = policy.q_net.body, policy.q_net.head
    elif head == "choice_logit" and hasattr(policy, "choice_net"):
        body, out = policy.choice_net.body, policy.choice_net.head
    else:
        raise ShopsimError(f"explain: {type(policy).__name__} has no {head!r} to explain")
    d = int(policy.observation_space["user"].shape[0])
    # float64 copies: completeness to rounding needs more than float32; the agent is untouched
    body64, out64 = copy.deepcopy(body).double(), copy.deepcopy(out).double()

    def model(rows: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(rows, dtype=torch.float64)
        cand, feat, user = z[:, :d], z[:, d:-d], z[:, -d:]
        with torch.no_grad():
            y = out64(body64(torch.cat([cand, feat, user, cand * user], dim=-1))).squeeze(-1)
        return y.numpy()

    return model


def input_baseline(agent: Any, observations: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Mean per-candidate input over the valid candidates of ``observations`` (train-split
    session starts): the reference point of every policy attribution."""
    rows = [candidate_inputs(agent, o)[np.asarray(o["cand_mask"]) > 0.5] for o in observations]
    if not rows or not sum(len(r) for r in rows):
        raise ShopsimError("explain: no valid candidates to take the policy baseline from")
    return np.concatenate(rows).mean(axis=0)


def policy_attributions(
    agent: Any, obs: dict[str, np.ndarray], candidates: np.ndarray, baseline: np.ndarray, head: str
) -> list[Attribution]:
    """Exact attribution of ``head`` for the ``candidates`` (positions in the observation)."""
    policy = _policy(agent)
    d = int(policy.observation_space["user"].shape[0])
    f = len(CAND_FEATURES)
    groups = [list(range(d)), *([d + j] for j in range(f)), list(range(d + f, 2 * d + f))]
    x = candidate_inputs(agent, obs)[np.asarray(candidates)]
    return shapley(item_model(agent, head), x, baseline, PLAYERS, groups, chunk=1 << 15)


@dataclass(frozen=True)
class ValueSplit:
    """SlateQ's value of a candidate if it is clicked, split in two (they sum to ``item_value``)."""

    item_value: float
    """Q̄(s, i), the agent's own estimate (float64 evaluation of its network)."""
    immediate: float
    """The expected reward of the click itself: the reward's click weight, plus its purchase
    and revenue weights times the item's train purchase-per-click rate (and price), plus the
    novelty term — read from the agent-visible ``buy_rate``, ``log_price`` and ``pop``."""
    long_term: float
    """item_value − immediate: what the agent expects from the rest of the session (and the
    reward terms not priced above: cross-category and basket purchases)."""


def slateq_value_split(
    agent: Any, obs: dict[str, np.ndarray], candidates: np.ndarray, reward: WeightedReward
) -> list[ValueSplit]:
    """Immediate vs long-term value of each of ``candidates`` for a SlateQ agent under ``reward``."""
    q = item_model(agent, "item_value")(candidate_inputs(agent, obs)[np.asarray(candidates)])
    feat = np.asarray(obs["cand_feat"], dtype=np.float64)[np.asarray(candidates)]
    p_buy = 1.0 / (1.0 + np.exp(-feat[:, CAND["buy_rate"]]))
    price = np.expm1(feat[:, CAND["log_price"]])
    immediate = (
        reward.click
        + (reward.purchase + reward.revenue * price) * p_buy
        - reward.novelty * feat[:, CAND["pop"]]  # novelty pays −log popularity per click
    )
    return [ValueSplit(float(v), float(i), float(v - i)) for v, i in zip(q, immediate, strict=True)]


__all__ = [
    "HEADS",
    "PLAYERS",
    "ValueSplit",
    "candidate_inputs",
    "input_baseline",
    "item_model",
    "policy_attributions",
    "slateq_value_split",
]
