"""A learned policy's own view: exact completeness of the split of PPO's score and of SlateQ's
item value and choice logit, the explained score is the one the policy ranks by, and two
policies that show the same item get different splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from shopsim.agents.ppo import SlatePointerPolicy
from shopsim.agents.slateq import SlateQ, SlateQPolicy
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError
from shopsim.evaluation.explain.attribution import model_coalition_values
from shopsim.evaluation.explain.policy_view import (
    PLAYERS,
    candidate_inputs,
    coalition_values,
    input_baseline,
    item_model,
    policy_attributions,
)


def _obs(env: ShopperVecEnv, i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in env.core.observe().items()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def agents(toy_sim: Path) -> tuple[PPO, SlateQ, ShopperVecEnv]:
    env = ShopperVecEnv(toy_sim, 8, slate_size=3, n_candidates=10, seed=0)
    ppo = PPO(SlatePointerPolicy, env, n_steps=32, batch_size=64, n_epochs=2, seed=0)  # type: ignore[arg-type]
    ppo.learn(512)
    dqn = SlateQ(SlateQPolicy, env, seed=0, learning_starts=64, buffer_size=1000, batch_size=32)  # type: ignore[arg-type]
    dqn.learn(512)
    test = ShopperVecEnv(toy_sim, 6, slate_size=3, n_candidates=10, split="test", seed=4)
    test.reset()
    return ppo, dqn, test


def test_splits_add_up_and_explain_the_score_the_policy_ranks_by(
    agents: tuple[PPO, SlateQ, ShopperVecEnv],
) -> None:
    ppo, dqn, env = agents
    base_env = ShopperVecEnv(env.sim, 16, slate_size=3, n_candidates=10, split="train", seed=9)
    base_env.reset()
    starts = [_obs(base_env, i) for i in range(16)]
    obs = _obs(env, 0)
    valid = np.flatnonzero(obs["cand_mask"] > 0.5)[:3]  # 2^18 network evaluations per candidate
    for agent, heads in ((ppo, ("score",)), (dqn, ("item_value", "choice_logit"))):
        baseline = input_baseline(agent, starts)
        for head in heads:
            atts = policy_attributions(agent, obs, valid, baseline, head)
            assert [a.players for a in atts] == [PLAYERS] * len(valid)
            assert max(a.completeness_gap for a in atts) < 1e-9
            t = {
                k: torch.as_tensor(v[None])
                for k, v in obs.items()
                if k in agent.policy.observation_space.spaces
            }
            with torch.no_grad():
                if head == "score":
                    own = agent.policy._encode(t)[0][0].numpy()
                else:
                    net = agent.policy.q_net if head == "item_value" else agent.policy.choice_net
                    own = net(t, agent.policy.candidate_vectors(t))[0][0].numpy()
            np.testing.assert_allclose([a.value for a in atts], own[valid], atol=1e-4)  # float64 vs float32
    p = policy_attributions(ppo, obs, valid[:1], input_baseline(ppo, starts), "score")[0]
    q = policy_attributions(dqn, obs, valid[:1], input_baseline(dqn, starts), "item_value")[0]
    assert not np.allclose(
        p.contributions / np.abs(p.contributions).sum(), q.contributions / np.abs(q.contributions).sum()
    )


def test_a_head_the_policy_does_not_have_is_one_line(agents: tuple[PPO, SlateQ, ShopperVecEnv]) -> None:
    ppo, _, env = agents
    obs = _obs(env, 0)
    with pytest.raises(ShopsimError, match="explain: SlatePointerPolicy has no 'item_value' to explain"):
        policy_attributions(ppo, obs, np.array([0]), np.zeros(1), "item_value")


def test_slateq_value_splits_into_immediate_and_long_term(agents: tuple[PPO, SlateQ, ShopperVecEnv]) -> None:
    from shopsim.envs.model.features import CAND
    from shopsim.envs.rewards import WeightedReward
    from shopsim.evaluation.explain.policy_view import candidate_inputs, item_model, slateq_value_split

    _, dqn, env = agents
    obs = _obs(env, 1)
    valid = np.flatnonzero(obs["cand_mask"] > 0.5)
    q = item_model(dqn, "item_value")(candidate_inputs(dqn, obs)[valid])
    for reward in (WeightedReward(), WeightedReward(click=1.0, purchase=5.0, revenue=0.1)):
        splits = slateq_value_split(dqn, obs, valid, reward)
        for s, qi in zip(splits, q, strict=True):
            assert abs(s.immediate + s.long_term - s.item_value) < 1e-6
            assert abs(s.item_value - qi) < 1e-12
    clicks_only = slateq_value_split(dqn, obs, valid, WeightedReward())
    assert all(s.immediate == 1.0 for s in clicks_only)  # a click is worth its weight, no more
    buy = slateq_value_split(dqn, obs, valid, WeightedReward(click=0.0, purchase=1.0))
    rate = 1 / (1 + np.exp(-obs["cand_feat"][valid, CAND["buy_rate"]].astype(np.float64)))
    np.testing.assert_allclose([s.immediate for s in buy], rate, rtol=1e-12)


@pytest.mark.slow  # ~10 s: every step of three policies, 2^18 network evaluations per attributed item
def test_explain_episode_for_a_ranker_and_both_agents(agents: tuple[PPO, SlateQ, ShopperVecEnv]) -> None:
    import json

    from shopsim.agents.registry import PolicyContext, build_policies
    from shopsim.envs.engine import ShopperConfig
    from shopsim.evaluation.explain.session import explain_episode

    ppo, dqn, env = agents
    base_env = ShopperVecEnv(env.sim, 16, slate_size=3, n_candidates=10, split="train", seed=9)
    base_env.reset()
    starts = [_obs(base_env, i) for i in range(16)]
    pols = {
        "popularity": build_policies(["popularity"], PolicyContext(3))["popularity"],
        "ppo": ppo,
        "dqn": dqn,
    }
    cfg = ShopperConfig(slate_size=3, n_candidates=10, split="test")
    bases = {n: input_baseline(pols[n], starts) for n in ("ppo", "dqn")}
    doc = explain_episode(env.sim, pols, 7, episodes=40, config=cfg, seed=1, batch=20, baselines=bases)
    json.dumps(doc, allow_nan=False)  # JSON-ready
    assert set(doc["policies"]) == {"popularity", "ppo", "dqn"}
    for name, p in doc["policies"].items():
        assert p["steps"], name
        for step in p["steps"]:
            assert len(step["slate"]) == 3
            for item in step["slate"]:
                assert item["shopper"]["completeness_gap"] < 1e-9
                assert ("policy" in item) == (name != "popularity")
                for head in item.get("policy", {}).values():
                    assert head["completeness_gap"] < 1e-9
                if name == "dqn":
                    s = item["value_split"]
                    assert abs(s["immediate"] + s["long_term"] - s["item_value"]) < 1e-6


def test_the_first_layer_shortcut_gives_the_values_of_the_masked_network(
    agents: tuple[PPO, SlateQ, ShopperVecEnv],
) -> None:
    """coalition_values (corners of item × state, feature columns summed) equals the network
    evaluated on all 2^18 masked inputs, for every head."""
    ppo, dqn, env = agents
    obs = _obs(env, 1)
    x = candidate_inputs(ppo, obs)[np.flatnonzero(obs["cand_mask"] > 0.5)[0]]
    rng = np.random.default_rng(0)
    for agent, heads in ((ppo, ("score",)), (dqn, ("item_value", "choice_logit"))):
        rows = candidate_inputs(agent, obs)
        x = rows[np.flatnonzero(obs["cand_mask"] > 0.5)[0]]
        baseline = rows.mean(axis=0) + rng.normal(0, 0.1, rows.shape[1])
        d = int(agent.policy.observation_space["user"].shape[0])
        f = len(PLAYERS) - 2
        groups = [list(range(d)), *([d + j] for j in range(f)), list(range(d + f, 2 * d + f))]
        for head in heads:
            fast = coalition_values(agent, head, x, baseline)
            slow = model_coalition_values(item_model(agent, head), x, baseline, groups)
            assert fast.shape == (1 << len(PLAYERS),)
            # the shortcut runs the layers after the first in float32, as the agent does
            np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5)
