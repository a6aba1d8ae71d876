"""Explain one evaluation episode: every slate each policy showed, and for every item in it the
shop's evidence, the shopper model's view and (learned agents) the policy's own view.

The JSON-ready result of :func:`explain_episode` is what ``shopsim explain`` prints and the run
report draws; its parts are documented in :mod:`.reasons`, :mod:`.shopper`,
:mod:`.policy_view` and :mod:`.replay`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shopsim.envs.engine import ShopperConfig
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.rewards import WeightedReward
from shopsim.evaluation.explain.policy_view import HEADS, policy_attributions, slateq_value_split
from shopsim.evaluation.explain.reasons import item_reasons, price_bands
from shopsim.evaluation.explain.replay import ReplayedStep, replay_episode
from shopsim.evaluation.explain.shopper import shopper_views


def _agent_kind(policy: Any) -> str | None:
    inner = getattr(policy, "policy", None)
    if inner is None:
        return None
    if hasattr(inner, "q_net"):
        return "dqn"
    if hasattr(inner, "cand_net"):
        return "ppo"
    return None


def _with_ids(reasons: dict[str, Any], item_ids: np.ndarray) -> dict[str, Any]:
    """The reasons with the shop's item ids in place of catalog codes (``code`` keeps the code)."""
    for key in ("nearest_history", "together"):
        for entry in reasons[key]:
            entry["code"] = entry["item"]
            entry["item"] = str(item_ids[entry["item"]])
    return reasons


def greedy_ranking(logits: np.ndarray) -> np.ndarray:
    """Candidate positions in the greedy ranker's order (highest click logit first; ties by
    position, as its top-k slate breaks them); invalid candidates (-inf) left out."""
    valid = np.flatnonzero(np.isfinite(logits))
    return valid[np.argsort(-logits[valid], kind="stable")]


def explain_episode(
    sim: Simulator,
    policies: dict[str, Any],
    episode: int,
    *,
    episodes: int,
    config: ShopperConfig,
    seed: int,
    batch: int = 500,
    reward: WeightedReward | None = None,
    baselines: dict[str, np.ndarray] | None = None,
    top: int = 5,
    replay_fn: Callable[[str, Any], list[ReplayedStep]] | None = None,
    pages: int | None = None,
) -> dict[str, Any]:
    """Every policy's slates in evaluation episode ``episode`` with the reasons for each item.

    :param baselines: per learned agent, the input baseline of its attributions
        (:func:`~.policy_view.input_baseline`); agents without one get no policy view.
    :param top: contributions listed per attribution (largest |contribution| first); the
        completeness gap is reported over all of them.
    :param replay_fn: ``(name, policy) → steps``: how to replay the episode (a run passes its
        own evaluation call); default :func:`~.replay.replay_episode` with these arguments.
    :param pages: explain only each policy's first ``pages`` pages (``pages_shown`` still
        counts all of them); None: every page.
    """
    cat = sim.catalog
    bands = price_bands(cat)
    reward = reward or WeightedReward()
    out: dict[str, Any] = {"episode": episode, "episodes": episodes, "seed": seed, "policies": {}}
    for name, policy in policies.items():
        steps = (
            replay_fn(name, policy)
            if replay_fn is not None
            else replay_episode(
                sim, policy, episode, episodes=episodes, config=config, seed=seed, batch=batch
            )
        )
        kind = _agent_kind(policy)
        rows = []
        for st in steps if pages is None else steps[:pages]:
            views = shopper_views(sim, st.click_features)
            policy_view: dict[str, list[Any]] = {}
            if kind is not None and baselines and name in baselines:
                for head in HEADS[kind]:
                    policy_view[head] = policy_attributions(
                        policy, st.observation, st.positions, baselines[name], head
                    )
            splits = (
                slateq_value_split(policy, st.observation, st.positions, reward) if kind == "dqn" else None
            )
            greedy = greedy_ranking(st.greedy_logits)
            greedy_slate = greedy[: len(st.items)]
            rank = {int(p): r + 1 for r, p in enumerate(greedy)}  # candidate position → greedy rank
            slate = []
            for slot, item in enumerate(st.items.tolist()):
                v = views[slot]
                entry: dict[str, Any] = {
                    "slot": slot,
                    "item": str(cat.item_ids[item]),
                    "code": int(item),
                    "category": int(cat.category[item]),
                    "greedy_rank": rank.get(int(st.positions[slot])),
                    "reasons": _with_ids(
                        item_reasons(cat, st.history, item, bands=bands).as_dict(), cat.item_ids
                    ),
                    "shopper": {
                        "p_click": v.p_click,
                        "logit": v.logit,
                        "baseline_logit": v.baseline_logit,
                        "completeness_gap": v.completeness_gap,
                        "contributions": [c.__dict__ for c in v.contributions[:top]],
                    },
                }
                if policy_view:
                    entry["policy"] = {
                        head: {
                            "value": atts[slot].value,
                            "baseline": atts[slot].base,
                            "completeness_gap": atts[slot].completeness_gap,
                            "contributions": [
                                {"input": p, "contribution": c} for p, c in atts[slot].ranked()[:top]
                            ],
                        }
                        for head, atts in policy_view.items()
                    }
                if splits is not None:
                    entry["value_split"] = splits[slot].__dict__
                slate.append(entry)
            rows.append(
                {
                    "step": st.step,
                    "history": [str(cat.item_ids[i]) for i in st.history if i >= 0],
                    "slate": slate,
                    "greedy": {
                        "slate": [str(cat.item_ids[st.candidates[p]]) for p in greedy_slate],
                        "shared": int(np.isin(st.positions, greedy_slate).sum()),
                        "candidates": len(greedy),
                    },
                }
            )
        out["policies"][name] = {"steps": rows, "pages_shown": len(steps)}
    return out


__all__ = ["explain_episode"]
