"""ShopperEnv / ShopperVecEnv contracts: checkers, determinism, invariants, bad input."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import shopsim.envs  # noqa: F401  (registers shopsim/Shopper-v0)
from shopsim.data.schema import EventCode
from shopsim.envs.engine import ShopperBatch, ShopperConfig
from shopsim.envs.env import ShopperEnv
from shopsim.envs.model.episodes import Episodes
from shopsim.envs.model.simulator import Simulator
from shopsim.envs.vec_env import ShopperVecEnv
from shopsim.errors import ShopsimError


@pytest.mark.parametrize("observation", ["vectors", "indices"])
@pytest.mark.parametrize("which", [pytest.param("rees46_sim", marks=pytest.mark.slow), "toy_sim", "mind_sim"])
def test_both_env_checkers_pass(which: str, observation: str, request: pytest.FixtureRequest) -> None:
    sim_dir = request.getfixturevalue(which)
    env = gym.make("shopsim/Shopper-v0", simulator=sim_dir, observation=observation)
    assert env.spec is not None
    assert env.spec.id == "shopsim/Shopper-v0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finite, documented bounds: no advisory left
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=False)
        # SB3's extra advice (warn=True) is only to flatten the (N, d) candidate matrices for its
        # default MLP policies; shopsim's agents score candidates with their own networks
        warnings.filterwarnings("ignore", r"Your observation cand(_feat)? has an unconventional shape")
        sb3_check_env(env.unwrapped, warn=True)


def _rollout(env: ShopperEnv, seed: int, steps: int) -> list[Any]:
    trace: list[Any] = []
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace.append((obs, info))
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        trace.append((obs, r, term, trunc, info))
        if term or trunc:
            trace.append(env.reset())
    return trace


def _equal(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=False))
        )
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


@pytest.mark.slow
def test_seeded_rollout_repeats_bit_for_bit(rees46_sim: Path) -> None:
    a = _rollout(ShopperEnv(rees46_sim), seed=11, steps=300)
    b = _rollout(ShopperEnv(rees46_sim), seed=11, steps=300)
    c = _rollout(ShopperEnv(rees46_sim), seed=12, steps=300)
    assert _equal(a, b)
    assert not _equal(a, c)


@pytest.mark.slow
def test_vec_env_seeded_determinism(rees46_sim: Path) -> None:
    def run(seed: int) -> list[np.ndarray]:
        v = ShopperVecEnv(rees46_sim, 8)
        v.seed(seed)
        first = v.reset()
        assert isinstance(first, dict)
        out = [first["user"]]
        rng = np.random.default_rng(0)
        for _ in range(30):
            obs, rew, done, _ = v.step(rng.integers(0, 100, (8, 10)))
            assert isinstance(obs, dict)
            out += [obs["cand_feat"], rew, done]
        return out

    assert _equal(run(3), run(3))
    assert not _equal(run(3), run(4))


def test_loaded_simulator_equals_saved(toy_sim: Path, tmp_path: Path) -> None:
    sim = Simulator.load(toy_sim)
    sim.save(tmp_path / "copy")
    a = _rollout(ShopperEnv(toy_sim), seed=5, steps=100)
    b = _rollout(ShopperEnv(tmp_path / "copy"), seed=5, steps=100)
    assert _equal(a, b)


ENV_KW: dict = {"max_steps": 8, "reward": {"click": 1.0, "purchase": 2.0, "revenue": 0.01}}


@pytest.fixture(scope="module")
def rees_env(rees46_sim: Path) -> ShopperEnv:
    return ShopperEnv(rees46_sim, **ENV_KW)


@pytest.fixture(scope="module")
def toy_env(toy_sim: Path) -> ShopperEnv:
    return ShopperEnv(toy_sim, **ENV_KW)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.lists(st.integers(0, 99), min_size=10, max_size=10), min_size=1, max_size=25),
)
@pytest.mark.parametrize("which", [pytest.param("rees_env", marks=pytest.mark.slow), "toy_env"])
def test_any_action_keeps_the_env_consistent(
    which: str, request: pytest.FixtureRequest, seed: int, actions: list[list[int]]
) -> None:
    env = request.getfixturevalue(which)
    obs, _ = env.reset(seed=seed)
    bought: set[int] = set()
    for steps, a in enumerate(actions, start=1):
        mask = obs["cand_mask"].astype(bool)
        assert mask.sum() >= env.config.slate_size  # always enough valid candidates
        assert np.all(obs["cand"][~mask] == 0)
        assert np.all(obs["cand_feat"][~mask] == 0)
        cand = env.core.cand[0].copy()
        assert len(set(cand[mask].tolist())) == mask.sum()  # candidates are distinct
        assert not (set(cand[mask].tolist()) & bought)  # bought items are never offered again
        obs, r, term, trunc, info = env.step(np.array(a))
        ev = info["events"]
        assert np.isfinite(float(r))
        assert len(set(ev["items"])) == len(ev["items"])  # no item shown twice in a slate
        assert all(cand[a[p - 1]] == i for p, i in zip(ev["positions"], ev["items"], strict=False))
        assert all(
            c or not u for c, u in zip(ev["clicked"], ev["purchased"], strict=False)
        )  # buying needs a click
        new = {i for i, u in zip(ev["items"], ev["purchased"], strict=False) if u}
        assert not (new & bought)  # nothing bought twice
        bought |= new
        assert obs in env.observation_space
        if term or trunc:
            assert steps <= env.config.max_steps
            assert info["shopper"]["steps"] == steps
            break
        assert steps < env.config.max_steps


def test_duplicate_and_masked_slots_are_shown_empty(toy_sim: Path) -> None:
    env = ShopperEnv(toy_sim, n_candidates=40, slate_size=4)  # 32 items: some candidates are masked
    obs, _ = env.reset(seed=0)
    masked = np.flatnonzero(obs["cand_mask"] == 0)
    assert len(masked) > 0
    _, _, _, _, info = env.step(np.array([3, 3, masked[0], 5]))
    assert info["events"]["positions"] == [1, 4]


@pytest.mark.parametrize("which", [pytest.param("rees_env", marks=pytest.mark.slow), "toy_env"])
@pytest.mark.parametrize("bad", [100, -1])
def test_out_of_range_action_is_an_error_not_clamped(
    which: str, bad: int, request: pytest.FixtureRequest
) -> None:
    env = request.getfixturevalue(which)
    env.reset(seed=0)
    action = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, bad])
    assert action not in env.action_space
    with pytest.raises(ShopsimError) as exc:
        env.step(action)
    assert str(exc.value) == (
        f"action: candidate index {bad} is out of range; every slot must be a candidate index "
        "in 0..99 (n_candidates=100)"
    )


def test_vec_env_out_of_range_action_is_an_error(toy_sim: Path) -> None:
    v = ShopperVecEnv(toy_sim, 2, slate_size=3, n_candidates=20, seed=0)
    v.reset()
    with pytest.raises(ShopsimError, match="candidate index 20 is out of range"):
        v.step(np.array([[0, 1, 2], [0, 1, 20]]))


def test_env_from_a_config_equals_env_from_keywords(toy_sim: Path) -> None:
    kw: dict[str, Any] = {"slate_size": 4, "n_candidates": 30, "max_steps": 6, "split": "test"}
    cfg = ShopperConfig(**kw)
    by_kw = ShopperEnv(toy_sim, **kw)
    by_cfg = ShopperEnv(toy_sim, cfg)
    mixed = ShopperEnv(toy_sim, ShopperConfig(slate_size=4, n_candidates=30), max_steps=6, split="test")
    assert by_kw.config == by_cfg.config == mixed.config == cfg
    assert by_kw.observation_space == by_cfg.observation_space
    assert by_kw.action_space == by_cfg.action_space
    a = _rollout(by_kw, seed=3, steps=40)
    assert _equal(a, _rollout(by_cfg, seed=3, steps=40))
    assert _equal(a, _rollout(mixed, seed=3, steps=40))
    made = gym.make("shopsim/Shopper-v0", simulator=toy_sim, **kw)
    assert _equal(a, _rollout(made.unwrapped, seed=3, steps=40))  # type: ignore[arg-type]

    def vec(v: ShopperVecEnv) -> list[np.ndarray]:
        obs = v.reset()
        assert isinstance(obs, dict)
        out = [obs["cand_feat"]]
        for t in range(10):
            obs, rew, done, _ = v.step(np.tile(np.arange(t, t + 4), (5, 1)))
            assert isinstance(obs, dict)
            out += [obs["cand_feat"], rew, done]
        return out

    assert _equal(vec(ShopperVecEnv(toy_sim, 5, seed=2, **kw)), vec(ShopperVecEnv(toy_sim, 5, cfg, seed=2)))


@pytest.mark.slow
def test_view_logs_keep_the_view_code(rees46_sim: Path, toy_sim: Path) -> None:
    assert Simulator.load(rees46_sim).click_code == EventCode.VIEW
    assert Simulator.load(toy_sim).click_code == EventCode.VIEW


def test_simulated_click_enters_the_history_with_the_logs_interaction_code(mind_sim: Path) -> None:
    """Impression log (MIND): histories are clicks, so a simulated click enters with the click
    code (before: the view code, an event type the state encoder never saw there)."""
    sim = Simulator.load(mind_sim)
    assert sim.click_code == EventCode.CLICK
    core = ShopperBatch(sim, 400, ShopperConfig(slate_size=3, n_candidates=10, max_steps=5))
    rng = np.random.default_rng(0)
    core.reset_rows(np.arange(400), rng)
    ev, _, _ = core.step_slate(np.tile(np.arange(3), (400, 1)), rng)
    rows = np.flatnonzero(ev.clicked.any(1) & ~ev.purchased.any(1))
    assert len(rows) > 0
    last_clicked = np.array([ev.items[r][ev.clicked[r]][-1] for r in rows])
    assert np.array_equal(core.hist[rows, 0], last_clicked)
    assert set(core.hist_ev[rows, 0].tolist()) == {int(EventCode.CLICK)}


def test_custom_reward_callable_changes_nothing_else(toy_sim: Path) -> None:
    base = _rollout(ShopperEnv(toy_sim), seed=2, steps=60)
    custom = _rollout(ShopperEnv(toy_sim, reward=lambda ev: 7.0 * ev.clicked.sum(1)), seed=2, steps=60)
    for x, y in zip(base, custom, strict=False):
        if len(x) == 5:  # step tuples: same observations and events, reward scaled
            assert _equal(x[0], y[0])
            assert _equal(x[4]["events"], y[4]["events"])
            assert y[1] == pytest.approx(7.0 * x[1])


@pytest.mark.slow  # 1,500 episodes each way (~17 s)
def test_vec_env_matches_single_env_statistically(toy_sim: Path) -> None:
    """Same policy (the first k candidates), same metrics within sampling error."""
    n_ep = 1500
    env = ShopperEnv(toy_sim, split="test")
    ret_s, clk_s = [], []
    env.reset(seed=0)
    first_k = np.arange(10)
    for _ in range(n_ep):
        done, total = False, 0.0
        while not done:
            _, r, term, trunc, info = env.step(first_k)
            total += float(r)
            done = term or trunc
        ret_s.append(total)
        clk_s.append(info["shopper"]["clicks"])
        env.reset()
    v = ShopperVecEnv(toy_sim, 64, split="test", seed=1)
    v.reset()
    ret_v: list[float] = []
    while len(ret_v) < n_ep:
        _, _, dones, infos = v.step(np.tile(first_k, (64, 1)))
        ret_v += [i["shopper"]["return"] for i, d in zip(infos, dones, strict=False) if d]
    a, b = np.array(ret_s), np.array(ret_v[:n_ep])
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    assert np.mean(clk_s) == pytest.approx(a.mean())  # default reward = clicks


# --- bad input: one clear error each ------------------------------------------------------


def _mutated(src: Path, dst: Path, edit: Callable[[Path], None]) -> Path:
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def _set_version(d: Path) -> None:
    meta = json.loads((d / "simulator.json").read_text())
    meta["shopsim_simulator_version"] = 0
    (d / "simulator.json").write_text(json.dumps(meta))


BAD_ENV_CASES = [
    ("not a folder", lambda d: None, {"simulator": "MISSING"}, "not a simulator folder (no simulator.json)"),
    ("old version", _set_version, {}, "simulator folder version 0, this shopsim reads version 1; refit it"),
    (
        "no model",
        lambda d: (d / "model.npz").unlink(),
        {},
        "no model.npz; refit it with `shopsim simulator fit`",
    ),
    (
        "slate > candidates",
        lambda d: None,
        {"slate_size": 12, "n_candidates": 10},
        "slate_size 12 > n_candidates 10",
    ),
    (
        "slate > catalog",
        lambda d: None,
        {"slate_size": 40, "n_candidates": 50},
        "the catalog has only 32 items",
    ),
    ("unknown split", lambda d: None, {"split": "holdout"}, "split 'holdout': not in this simulator"),
    ("bad reward term", lambda d: None, {"reward": {"clicks": 1.0}}, "reward: unknown term(s) clicks"),
    (
        "bad candidate mix",
        lambda d: None,
        {"candidate_mix": (1.0, -1.0, 0, 0, 0)},
        "candidate_mix: expected 5",
    ),
    ("negative fatigue", lambda d: None, {"fatigue": -1.0}, "fatigue=-1.0: must be a finite number ≥ 0"),
    (
        "unknown setting",
        lambda d: None,
        {"slate": 5},
        "unknown shop setting(s) slate; the settings are slate_size, n_candidates",
    ),
    (
        "nan exposure intent",
        lambda d: None,
        {"exposure_intent": float("nan")},
        "exposure_intent=nan: must be a finite number ≥ 0",
    ),
    (
        "unknown observation mode",
        lambda d: None,
        {"observation": "ids"},
        "observation='ids': unknown mode; use one of vectors, indices",
    ),
]


@pytest.mark.parametrize(
    ("name", "edit", "kwargs", "message"), BAD_ENV_CASES, ids=[c[0] for c in BAD_ENV_CASES]
)
def test_bad_env_input_gives_one_clear_error(
    toy_sim: Path, tmp_path: Path, name: str, edit: Callable[[Path], None], kwargs: dict, message: str
) -> None:
    d = _mutated(toy_sim, tmp_path / "sim", edit)
    kw = dict(kwargs)
    sim = kw.pop("simulator", d)
    if sim == "MISSING":
        sim = tmp_path / "nowhere"
    with pytest.raises(ShopsimError) as exc:
        ShopperEnv(sim, **kw)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_split_without_sessions_is_a_clear_error(toy_sim: Path) -> None:
    sim = Simulator.load(toy_sim)
    e = sim.episodes["test"]
    sim.episodes["test"] = Episodes(**{f: getattr(e, f)[:0] for f in e.__dataclass_fields__})
    with pytest.raises(ShopsimError, match="split 'test' has no sessions in this simulator"):
        ShopperEnv(sim, split="test")


def test_basket_flags_mark_items_of_the_logged_intent(toy_sim: Path) -> None:
    """Bundle mode: `in_basket` marks shown items that belong to the real session's rest."""
    env = ShopperEnv(toy_sim, split="test", slate_size=5, n_candidates=20)
    checked = 0
    for episode in range(40):
        env.reset(seed=episode, options={"episode": episode})
        intent = set(env.core.intent[0][env.core.intent[0] >= 0].tolist())
        cand = env.core.cand[0]
        slate = np.r_[np.flatnonzero(np.isin(cand, list(intent)))[:2], np.arange(20)]
        slate = np.array(list(dict.fromkeys(slate.tolist()))[:5])
        _, _, _, _, info = env.step(slate)
        ev = info["events"]
        assert ev["in_basket"] == [i in intent for i in ev["items"]]
        checked += sum(ev["in_basket"])
    assert checked > 0


# --- exposure counts and the what-if dynamics -----------------------------------------------


def test_exposure_counts_are_observed_and_cleared_on_reset(toy_sim: Path) -> None:
    from shopsim.envs.engine import ShopperBatch, ShopperConfig
    from shopsim.envs.model.features import CAND_FEATURES

    sim = Simulator.load(toy_sim)
    core = ShopperBatch(sim, 6, ShopperConfig(slate_size=3, n_candidates=20, max_steps=8))
    rng = np.random.default_rng(0)
    core.reset_rows(np.arange(6), rng)
    seen: list[dict[int, int]] = [{} for _ in range(6)]
    cats: list[dict[int, int]] = [{} for _ in range(6)]
    for _ in range(4):
        items = core.slate_items(np.tile(np.arange(3), (6, 1)))
        core.step_slate(np.tile(np.arange(3), (6, 1)), rng)
        for b in range(6):
            for i in items[b][items[b] >= 0].tolist():
                seen[b][i] = seen[b].get(i, 0) + 1
                c = int(sim.catalog.category[i])
                cats[b][c] = cats[b].get(c, 0) + 1
    obs = core.observe()
    every_item = np.tile(np.arange(sim.catalog.n_items), (6, 1))
    counts = core.item_counts(every_item)
    for b in range(6):
        assert {int(i): int(n) for i, n in enumerate(counts[b]) if n} == seen[b]
        assert {int(c): int(n) for c, n in enumerate(core.cat_seen[b]) if n} == cats[b]
        for j, item in enumerate(core.cand[b]):
            if item < 0:
                continue
            f = obs["cand_feat"][b, j]
            assert f[CAND_FEATURES.index("item_shown")] == pytest.approx(np.log1p(seen[b].get(int(item), 0)))
            c = int(sim.catalog.category[item])
            assert f[CAND_FEATURES.index("cat_shown")] == pytest.approx(np.log1p(cats[b].get(c, 0)))
    core.reset_rows(np.array([1, 4]), rng)
    counts = core.item_counts(every_item)
    assert counts[[1, 4]].sum() == 0
    assert core.cat_seen[[1, 4]].sum() == 0
    assert counts[0].sum() == sum(seen[0].values())  # other shoppers keep theirs


def test_whatif_dynamics_act_on_the_click_logit_as_documented(toy_sim: Path) -> None:
    from shopsim.envs.engine import ShopperBatch, ShopperConfig

    sim = Simulator.load(toy_sim)
    items = np.tile(np.array([[3, 7, 11]]), (4000, 1))
    clicks = {}
    for name, kw in (("off", {}), ("fatigue", {"fatigue": 1.5}), ("exposure", {"exposure_intent": 1.5})):
        cfg = ShopperConfig(slate_size=3, n_candidates=20, max_steps=6, **kw)  # type: ignore[arg-type]
        core = ShopperBatch(sim, len(items), cfg)
        rng = np.random.default_rng(1)
        core.reset_rows(np.arange(len(items)), rng, np.zeros(len(items), np.int64))
        core.step(items, rng)  # first showing: no what-if term yet
        n = core.item_counts(items[:1], np.array([0]))[0].astype(float)
        m = core.cat_seen[0, sim.catalog.category[items[0]]].astype(float)
        expected = kw.get("exposure_intent", 0) * np.log1p(n) - kw.get("fatigue", 0) * np.log1p(m)
        np.testing.assert_allclose(core.whatif_logit(items[:1])[0], expected)
        ev, _, _ = core.step(items, rng)  # second showing: the terms apply
        clicks[name] = ev.clicked.sum()
    # same uniforms in all three worlds: the click counts move in the documented direction
    assert clicks["fatigue"] < clicks["off"] < clicks["exposure"]


def _vec_trace(sim: Path, observation: str, seed: int, steps: int) -> list[Any]:
    v = ShopperVecEnv(sim, 16, seed=seed, observation=observation)
    rng = np.random.default_rng(seed)
    out: list[Any] = [v.reset()]
    for _ in range(steps):
        obs, rew, done, infos = v.step(rng.integers(0, v.config.n_candidates, (16, v.config.slate_size)))
        out.append((obs, rew, done, [i.get("terminal_observation") for i in infos]))
    return out


@pytest.mark.parametrize("which", [pytest.param("rees46_sim", marks=pytest.mark.slow), "toy_sim", "mind_sim"])
def test_both_observation_modes_give_the_same_rollout(which: str, request: pytest.FixtureRequest) -> None:
    """The ``indices`` mode is the ``vectors`` mode without ``cand``, and ``cand`` is exactly
    ``item_vectors[cand_item]``: same seed and actions → the same rewards, dones and
    observations (terminal observations included)."""
    sim = request.getfixturevalue(which)
    table = ShopperVecEnv(sim, 1).item_vectors
    vec, idx = _vec_trace(sim, "vectors", 5, 60), _vec_trace(sim, "indices", 5, 60)

    def strip(obs: Any) -> Any:
        if isinstance(obs, dict) and "cand" in obs:
            assert np.array_equal(obs["cand"], table[obs["cand_item"]])
            assert np.array_equal(obs["cand_item"] == len(table) - 1, obs["cand_mask"] == 0)
            return {k: v for k, v in obs.items() if k != "cand"}
        if isinstance(obs, (list, tuple)):
            return type(obs)(strip(o) for o in obs)
        return obs

    assert _equal(strip(vec), idx)
    assert not table.flags.writeable


def test_first_pages_beyond_the_cache_equal_cached_ones_and_one_reset_per_row(
    rees46_sim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log with more sessions than the first-page cache draws the uncached pages in one batch,
    each from its session's own generator: the pages equal the cached ones and those of one
    reset per row, also when one session starts in several rows of the batch."""
    import shopsim.envs.engine as engine

    sim = Simulator.load(rees46_sim)
    cfg = ShopperConfig(slate_size=3, n_candidates=20)
    pick = np.array([3, 3, 5, 7, 3, 5, 11, 2])
    rows = np.arange(len(pick))

    def pages(core: ShopperBatch) -> list[np.ndarray]:
        return [core.cand.copy(), core.cand_src.copy(), core.cand_phi.copy(), core.cand_feat.copy()]

    cached = ShopperBatch(sim, len(pick), cfg)
    cached.reset_rows(rows, np.random.default_rng(0), pick)
    monkeypatch.setattr(engine, "START_CACHE_SIZE", 0)
    batched = ShopperBatch(sim, len(pick), cfg)
    batched.reset_rows(rows, np.random.default_rng(0), pick)
    one_by_one = ShopperBatch(sim, len(pick), cfg)
    for r, e in zip(rows, pick, strict=True):
        one_by_one.reset_rows(np.array([r]), np.random.default_rng(0), np.array([e]))
    assert batched._start_cache.size == 0
    for a, b, c in zip(pages(cached), pages(batched), pages(one_by_one), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    assert np.array_equal(batched.cand[0], batched.cand[1])
    assert (batched.cand[0] >= 0).sum() == 20
