"""Exact Shapley attributions: completeness, the textbook axioms, agreement with brute force,
and faithfulness on the fitted shopper model (masking the top-attributed click features moves
the click probability more than masking random ones)."""

from __future__ import annotations

import itertools
from math import factorial
from pathlib import Path

import numpy as np
import pytest

from shopsim.errors import ShopsimError
from shopsim.evaluation.explain.attribution import shapley


def _brute_force(f, x: np.ndarray, b: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Shapley by the permutation definition (n! orderings), the oracle for small n."""
    n = len(x)
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        z = b.copy()
        prev = f(z[None])[0]
        for i in order:
            z[i] = x[i]
            cur = f(z[None])[0]
            phi[i] += cur - prev
            prev = cur
    return phi / factorial(n)


def _net(seed: int, n: int, h: int = 4):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    w1, b1, w2 = rng.normal(size=(n, h)), rng.normal(size=h), rng.normal(size=h)
    return lambda z: np.tanh(z @ w1 + b1) @ w2 + 0.3 * z[:, 0] * z[:, -1]


def test_linear_model_gets_weight_times_distance_from_baseline() -> None:
    w = np.array([2.0, -1.0, 0.0, 0.5])
    x, b = np.array([[1.0, 2.0, 3.0, -4.0]]), np.array([0.5, 0.5, 0.5, 0.5])
    (a,) = shapley(lambda z: z @ w + 7.0, x, b, list("abcd"))
    np.testing.assert_allclose(a.contributions, w * (x[0] - b), atol=1e-12)
    assert a.contributions[2] == 0.0  # a feature the model does not read
    assert a.completeness_gap < 1e-12
    assert [n for n, _ in a.ranked()] == ["d", "b", "a", "c"]  # by |contribution|: 2.25, 1.5, 1, 0


def test_equals_the_permutation_definition_on_a_nonlinear_model() -> None:
    rng = np.random.default_rng(1)
    f = _net(0, 5)
    x, b = rng.normal(size=(3, 5)), rng.normal(size=5)
    for row, a in zip(x, shapley(f, x, b, list("abcde")), strict=True):
        np.testing.assert_allclose(a.contributions, _brute_force(f, row, b), atol=1e-10)
        assert a.completeness_gap < 1e-10
        assert abs(a.value - f(row[None])[0]) < 1e-12
        assert abs(a.base - f(b[None])[0]) < 1e-12


def test_symmetric_inputs_get_equal_credit_and_groups_add_up() -> None:
    f = lambda z: np.tanh(z[:, 0] + z[:, 1]) * z[:, 2]  # noqa: E731
    x, b = np.array([[1.0, 1.0, 2.0]]), np.zeros(3)
    (a,) = shapley(f, x, b, ["p", "q", "r"])
    assert abs(a.contributions[0] - a.contributions[1]) < 1e-12
    (g,) = shapley(f, x, b, ["pq", "r"], groups=[[0, 1], [2]])
    assert g.completeness_gap < 1e-12
    assert abs(g.contributions.sum() - a.contributions.sum()) < 1e-12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline": np.zeros(2)}, "attribution: baseline has 2 inputs, the rows 3"),
        ({"names": ["a", "b"]}, "attribution: 2 names for 3 players"),
        ({"groups": [[0], [0], [2]]}, "attribution: every input must belong to exactly one group"),
    ],
)
def test_bad_arguments_are_one_line(kwargs: dict, message: str) -> None:
    args = {"baseline": np.zeros(3), "names": ["a", "b", "c"], "groups": None} | kwargs
    with pytest.raises(ShopsimError) as exc:
        shapley(lambda z: z.sum(1), np.ones((1, 3)), args["baseline"], args["names"], args["groups"])
    assert str(exc.value) == message


def test_more_than_twenty_players_is_refused() -> None:
    with pytest.raises(ShopsimError, match="21 players; exact Shapley takes at most 20"):
        shapley(lambda z: z.sum(1), np.ones((1, 21)), np.zeros(21), [str(i) for i in range(21)])


def test_deletion_top_attributed_click_features_move_the_click_probability_most(toy_sim: Path) -> None:
    """Faithfulness on the fitted click model of the toy shop: on 150 real candidate rows,
    resetting the 3 features with the largest |φ| to the baseline (the train mean the scorer
    standardises with) changes P(click) more than resetting 3 random features."""
    from shopsim.envs.model.features import CLICK_FEATURES
    from shopsim.envs.vec_env import ShopperVecEnv
    from shopsim.evaluation.explain.attribution import shapley_from_values
    from shopsim.evaluation.explain.shopper import click_coalition_logits

    env = ShopperVecEnv(toy_sim, 30, slate_size=3, n_candidates=10, split="test", seed=3)
    env.reset()
    ok = env.core.cand >= 0
    rows = env.core.cand_phi[ok][:150]
    scorer = env.sim.click
    base = scorer.mean.astype(np.float64)
    # the product's route (shopper_views): coalition logits through the first layer
    atts = shapley_from_values(
        np.stack([click_coalition_logits(scorer, r, base) for r in rows]), CLICK_FEATURES
    )
    assert max(a.completeness_gap for a in atts) < 1e-9
    rng = np.random.default_rng(0)
    p = lambda z: 1 / (1 + np.exp(-scorer.logit(z)))  # noqa: E731
    top_moves, random_moves = [], []
    for row, a in zip(rows, atts, strict=True):
        top = np.argsort(-np.abs(a.contributions))[:3]
        rand = rng.choice(len(CLICK_FEATURES), 3, replace=False)
        for idx, into in ((top, top_moves), (rand, random_moves)):
            z = row.copy()
            z[idx] = base[idx]
            into.append(abs(p(z[None])[0] - p(row[None])[0]))
    assert len(top_moves) == 150
    assert np.mean(top_moves) > 2 * np.mean(random_moves)
    assert np.mean(np.array(top_moves) >= np.array(random_moves)) > 0.8  # item by item, too


def test_shopper_view_adds_up_and_labels_the_hidden_intent(toy_sim: Path) -> None:
    from shopsim.envs.model.features import CLICK_FEATURES, INTENT_FEATURES
    from shopsim.envs.vec_env import ShopperVecEnv
    from shopsim.evaluation.explain.shopper import shopper_views

    env = ShopperVecEnv(toy_sim, 4, slate_size=3, n_candidates=10, split="test", seed=1)
    env.reset()
    phi = env.core.cand_phi[0][env.core.cand[0] >= 0]
    views = shopper_views(env.sim, phi)
    g = env.sim.click.logit(phi)
    for v, row, gi in zip(views, phi, g, strict=True):
        assert abs(v.logit - gi) < 1e-5  # the engine computes in float32, the attribution in float64
        assert abs(sum(c.contribution for c in v.contributions) - (v.logit - v.baseline_logit)) < 1e-9
        assert abs(v.p_click - 1 / (1 + np.exp(-(v.logit + env.sim.click_offset)))) < 1e-12
        assert sorted(c.feature for c in v.contributions) == sorted(CLICK_FEATURES)
        assert {c.feature for c in v.contributions if c.simulator_only} == set(INTENT_FEATURES)
        assert all(c.value == row[CLICK_FEATURES.index(c.feature)] for c in v.contributions)


def test_the_click_scorers_first_layer_shortcut_gives_the_masked_logits(toy_sim: Path) -> None:
    """click_coalition_logits equals the scorer evaluated on all 2^F masked feature rows, for
    the fitted (tanh) scorer and for a linear one."""
    import dataclasses

    from shopsim.envs.model.simulator import Simulator
    from shopsim.evaluation.explain.attribution import model_coalition_values
    from shopsim.evaluation.explain.shopper import click_coalition_logits

    scorer = Simulator.load(toy_sim).click
    rng = np.random.default_rng(3)
    linear = dataclasses.replace(
        scorer, w1=np.zeros((scorer.w1.shape[0], 0)), b1=np.zeros(0), w2=rng.normal(size=scorer.w1.shape[0])
    )
    for model in (scorer, linear):
        x = scorer.mean + rng.normal(size=scorer.mean.shape) * scorer.std
        base = scorer.mean + rng.normal(size=scorer.mean.shape) * 0.1 * scorer.std
        fast = click_coalition_logits(model, x, base)
        # tanh in float32 in the shortcut (exact for the linear scorer)
        np.testing.assert_allclose(fast, model_coalition_values(model.logit, x, base), rtol=0, atol=1e-5)
