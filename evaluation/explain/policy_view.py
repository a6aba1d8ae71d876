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
from shopsim.evaluation.explain.attribution import (
    Attribution,
    coalitions,
    model_coalition_values,
    shapley_from_values,
)

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


def _head_modules(agent: Any, head: str) -> tuple[Any, Any, int]:
    """(body, output layer, d) of the agent's per-candidate ``head``."""
    policy = _policy(agent)
    if head == "score" and hasattr(policy, "cand_net"):
        body, out = policy.cand_net, policy.score_head
    elif head == "item_value" and hasattr(policy, "q_net"):
        body, out = policy.q_net.body, policy.q_net.head
    elif head == "choice_logit" and hasattr(policy, "choice_net"):
        body, out = policy.choice_net.body, policy.choice_net.head
    else:
        raise ShopsimError(f"explain: {type(policy).__name__} has no {head!r} to explain")
    return body, out, int(policy.observation_space["user"].shape[0])


def item_model(agent: Any, head: str) -> Callable[[np.ndarray], np.ndarray]:
    """The agent's per-candidate ``head`` as a function of :func:`candidate_inputs` rows."""
    body, out, d = _head_modules(agent, head)
    # float64 copies: the coalition values are summed over 2ⁿ terms; the agent is untouched
    body64, out64 = copy.deepcopy(body).double(), copy.deepcopy(out).double()

    def model(rows: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(rows, dtype=torch.float64)
        cand, feat, user = z[:, :d], z[:, d:-d], z[:, -d:]
        with torch.no_grad():
            y = out64(body64(torch.cat([cand, feat, user, cand * user], dim=-1))).squeeze(-1)
        return y.numpy()

    return model


def coalition_values(agent: Any, head: str, x: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """(2ⁿ,) the ``head`` on every coalition of :data:`PLAYERS` at the input row ``x`` (the
    others at ``baseline``), in :func:`~.attribution.coalitions` order: what
    ``shapley(item_model(agent, head), …)`` evaluates, through the network's affine first layer.

    The first layer reads ``[item, features, state, item ⊙ state]``: with the item vector and
    the state each on or off (four corners) its pre-activation is the corner's plus the sum of
    the coalition's feature columns, so only the layers after it see 2ⁿ rows."""
    body, out, d = _head_modules(agent, head)
    first = body[0] if isinstance(body, torch.nn.Sequential) and len(body) else None
    if not isinstance(first, torch.nn.Linear):  # no affine first layer: evaluate the coalitions
        groups = _groups(d)
        return np.asarray(model_coalition_values(item_model(agent, head), x, baseline, groups, chunk=1 << 15))
    f = len(CAND_FEATURES)
    w = first.weight.detach().double().numpy()
    bias = first.bias.detach().double().numpy() if first.bias is not None else np.zeros(w.shape[0])
    x, baseline = np.asarray(x, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    corners = np.empty((4, w.shape[0]))
    for a in (0, 1):  # item vector on?
        for b in (0, 1):  # shopper state on?
            cand = (x if a else baseline)[:d]
            user = (x if b else baseline)[d + f :]
            z = np.concatenate([cand, baseline[d : d + f], user, cand * user])
            corners[2 * a + b] = w @ z + bias
    steps = w[:, d : d + f] * (x[d : d + f] - baseline[d : d + f])  # (H, f) each feature switched on
    # Coalition s holds the item vector as bit 0, feature j as bit 1 + j and the state as bit
    # f + 1: s = item + 2·(feature subset) + 2^(f+1)·state, so the 2ⁿ pre-activations are the
    # 2^f feature sums broadcast against the four corners, laid out (state, subset, item, H).
    subsets = coalitions(f).astype(np.float32) @ steps.T.astype(np.float32)  # (2^f, H)
    quad = corners.reshape(2, 2, -1).transpose(1, 0, 2).astype(np.float32)  # [state, item]
    pre = torch.from_numpy(subsets)[None, :, None, :] + torch.from_numpy(quad)[:, None, :, :]
    # The layers after the first run in float32, as the agent's own network does (2.5× faster
    # than float64 on 2¹⁸ rows); completeness does not depend on it: the Shapley sums are
    # taken in float64 over these same values, so they add up to value − base to rounding.
    with torch.no_grad():
        y = out(body[1:](pre.reshape(-1, pre.shape[-1]))).squeeze(-1)
    return np.asarray(y.numpy(), dtype=np.float64)


def _groups(d: int) -> list[list[int]]:
    f = len(CAND_FEATURES)
    return [list(range(d)), *([d + j] for j in range(f)), list(range(d + f, 2 * d + f))]


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
    x = candidate_inputs(agent, obs)[np.asarray(candidates)]
    values = np.stack([coalition_values(agent, head, row, baseline) for row in x])
    return shapley_from_values(values, PLAYERS)


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
