"""The packaged experiment configs: they load and validate, name-vs-path resolution, the data
folder parameter (``${SHOPSIM_DATA}``) and the two bad-input rules (impression click model on a
log without impressions; bundle mode on a log without baskets).

Cheap on purpose: no training here. ``test_packaged_config_on_the_real_subsets`` (``real_data``)
prepares each config's real data set and runs the checks that need the prepared log."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shopsim.data import PrepareOptions, SessionLog, prepare, sample_path
from shopsim.envs.fitting.fit import SimulatorConfig, click_log
from shopsim.errors import ShopsimError
from shopsim.experiments.config import (
    basket_sessions,
    check_prepared,
    expand_env,
    load_config,
    load_named_config,
    packaged_config,
    packaged_configs,
    resolve_config,
)
from shopsim.tests.helpers import FIXTURES, shared

NAMES = ("rees46-clicks", "rees46-revenue", "uci-basket", "hm-basket", "mind-clicks")
HM_UNSET = (
    "hm-basket.yaml: data.source needs $SHOPSIM_DATA (the folder holding hm_fashion_subset; "
    "H&M's terms forbid shipping it) — set it or pass --set data.source=DIR"
)


@pytest.fixture
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SHOPSIM_DATA → a folder laid out as the real one (the H&M and MIND test fixtures under
    the real subsets' names): loading checks the paths, not their contents."""
    root = tmp_path / "datasets"
    root.mkdir()
    (root / "hm_fashion_subset").symlink_to(FIXTURES / "hm")
    (root / "mind_small_subset").symlink_to(FIXTURES / "mind")
    monkeypatch.setenv("SHOPSIM_DATA", str(root))
    return root


def test_every_packaged_config_loads_with_equal_budgets(data_folder: Path) -> None:
    assert set(NAMES) | {"quickstart"} == set(packaged_configs())
    for name in NAMES:
        cfg = load_named_config(name)
        assert cfg.agents.ppo.steps == cfg.agents.dqn.steps, name  # neither agent wins by budget
        text = packaged_config(name).read_text()
        assert text.startswith(f"# {name}: "), name  # the one-line description `shopsim configs` shows
    hm, mind = load_named_config("hm-basket"), load_named_config("mind-clicks")
    assert Path(hm.data.source) == data_folder / "hm_fashion_subset"
    assert Path(mind.data.source) == data_folder / "mind_small_subset"
    assert mind.simulator.click_negatives == "impressions"
    assert hm.encoder.text == "on"
    assert load_named_config("uci-basket").reward["basket"] > 0
    revenue = load_named_config("rees46-revenue").reward
    assert isinstance(revenue, dict)
    assert revenue["revenue"] > 0
    assert revenue["cross_category"] > 0


def test_quickstart_is_rees46_clicks() -> None:
    # `shopsim quickstart` and `make demo` run quickstart.yaml: the same experiment as rees46-clicks
    assert packaged_config("quickstart").read_bytes() == packaged_config("rees46-clicks").read_bytes()


def test_names_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, where, base = resolve_config("rees46-revenue")
    assert (path, where, base) == (packaged_config("rees46-revenue"), "rees46-revenue.yaml", Path.cwd())
    assert resolve_config("rees46-revenue.yaml")[0] == packaged_config("rees46-revenue")
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "rees46-revenue"
    mine.write_text(yaml.safe_dump({"data": {"source": "sample:uci", "format": "uci"}}))
    assert resolve_config("rees46-revenue") == (mine.relative_to(tmp_path), "rees46-revenue", None)
    assert load_named_config("rees46-revenue").data.format == "uci"  # an existing file wins
    with pytest.raises(ShopsimError) as err:
        resolve_config("rees46")
    assert str(err.value) == (
        "rees46: no such config file nor packaged config; packaged: hm-basket, mind-clicks, quickstart, "
        "rees46-clicks, rees46-revenue, uci-basket (`shopsim configs` describes them)"
    )
    with pytest.raises(ShopsimError, match="no such config file; pass a YAML file"):
        load_named_config("sub/rees46-clicks")  # a path is a path, never a packaged name
    # a packaged config's relative --set paths are relative to the current folder
    (tmp_path / "logs").mkdir()
    cfg = load_named_config("mind-clicks", ["data.source=logs"])
    assert cfg.data.source == str(tmp_path / "logs")


def test_cli_lists_and_rejects(cli) -> None:
    code, out, _ = cli("configs")
    assert code == 0
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert set(rows) == set(packaged_configs())
    assert rows["quickstart"].startswith("= rees46-clicks")
    assert rows["uci-basket"].startswith("bundle mode")
    code, out2, _ = cli("config", "--list")
    assert (code, out2) == (0, out)
    code, _, err = cli("run", "no-such-config", "--out", "unused")
    assert code == 2
    assert err.startswith("shopsim: error: no-such-config: no such config file nor packaged config;")
    assert len(err.splitlines()) == 1


def test_data_folder_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    monkeypatch.delenv("SHOPSIM_DATA", raising=False)
    with pytest.raises(ShopsimError) as err:
        load_named_config("hm-basket")
    assert str(err.value) == HM_UNSET
    monkeypatch.setenv("SHOPSIM_DATA", "")  # empty is unset, as in the shell's ${NAME:?}
    code, _, stderr = cli("config", "hm-basket")
    assert (code, stderr) == (2, f"shopsim: error: {HM_UNSET}\n")
    # --set replaces the value before expansion: no variable needed
    cfg = load_named_config("hm-basket", [f"data.source={FIXTURES / 'hm'}"])
    assert cfg.data.source == str(FIXTURES / "hm")
    # a relative value is relative to the current folder
    (tmp_path / "d" / "mind_small_subset").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOPSIM_DATA", "d")
    assert load_named_config("mind-clicks").data.source == str(tmp_path / "d" / "mind_small_subset")
    monkeypatch.setenv("X", "v")
    assert expand_env({"a": ["${X}/y", "$X ${X}", 3]}) == {"a": [f"{tmp_path}/v/y", "$X v", 3]}
    with pytest.raises(ShopsimError) as err:
        expand_env({"data": {"source": "${NOT_SET_FOR_THIS_TEST}"}}, where="c.yaml")
    assert str(err.value) == (
        "c.yaml: data.source needs $NOT_SET_FOR_THIS_TEST — set it or pass --set data.source=VALUE"
    )
    with pytest.raises(ShopsimError) as err:
        expand_env({"data": {"source": "${bad-name}/x"}}, where="c.yaml")
    assert str(err.value) == (
        "c.yaml: data.source: '${bad-name}/x': write an environment variable as ${NAME} or ${NAME:?why}"
    )


IMPRESSIONS_MSG = (
    "simulator.click_negatives: impressions needs a log with impressions and {what} records none; "
    "use auto or sampled, or an impression log (mind, obd, events with impression rows)"
)


def test_impression_click_model_needs_impressions(tmp_path: Path) -> None:
    # a known format: at load time
    with pytest.raises(ShopsimError) as err:
        load_named_config("rees46-clicks", ["simulator.click_negatives=impressions"])
    assert str(err.value) == "rees46-clicks.yaml: " + IMPRESSIONS_MSG.format(what="format 'rees46'")
    with pytest.raises(ShopsimError, match=r"click_negatives.*use auto, impressions, sampled"):
        load_named_config("rees46-clicks", ["simulator.click_negatives=shown"])
    # an events log: once prepared (its event column decides), before any encoding
    log = _prepared_events(tmp_path, [("s0", "a", "view"), ("s0", "b", "click"), ("s1", "c", "view")])
    cfg = _events_config(tmp_path, ["simulator.click_negatives=impressions"])
    with pytest.raises(ShopsimError) as err:
        check_prepared(cfg, log, where="exp.yaml")
    assert str(err.value) == "exp.yaml: " + IMPRESSIONS_MSG.format(what="the prepared events log")
    check_prepared(_events_config(tmp_path, []), log)  # auto: fine
    # the fit itself refuses too (`shopsim simulator fit --click-negatives impressions`)
    with pytest.raises(ShopsimError, match="click_negatives=impressions, but this events log records no"):
        click_log(log, "impressions", tmp_path)
    assert click_log(log, "auto", tmp_path) == (log, False)


def test_sampled_negatives_drop_the_impression_rows(tmp_path: Path) -> None:
    prepare(FIXTURES / "mind", PrepareOptions(format="mind"), tmp_path / "data")
    log = SessionLog.load(tmp_path / "data")
    assert click_log(log, "auto", tmp_path) == (log, True)
    assert click_log(log, "impressions", tmp_path) == (log, True)
    fitted, impressions = click_log(log, "sampled", tmp_path)
    assert not impressions
    assert not (fitted.events["event"] == "impression").any()
    assert len(fitted.events) == int((log.events["event"] != "impression").sum()) > 0
    assert SimulatorConfig().click_negatives == "auto"  # the default keeps every fit as it was


BASKET_MSG = (
    "exp.yaml: reward.basket=3: bundle mode needs sessions with two or more purchased items and no "
    "session of the prepared log has any (4 purchases in 3 sessions); set reward.basket=0 or use a "
    "log with multi-item baskets"
)


def test_bundle_mode_needs_baskets(tmp_path: Path) -> None:
    # one purchase per session (and two units of one item are not a basket)
    rows = [("s0", "a", "purchase"), ("s0", "a", "purchase"), ("s1", "b", "view"), ("s1", "c", "purchase")]
    log = _prepared_events(tmp_path / "one", [*rows, ("s2", "d", "purchase")])
    assert basket_sessions(log) == 0
    bundle = ["reward={click: 0, purchase: 1, basket: 3}"]
    with pytest.raises(ShopsimError) as err:
        check_prepared(_events_config(tmp_path, bundle), log, where="exp.yaml")
    assert str(err.value) == BASKET_MSG.replace(
        "3 purchases", f"{(log.events['event'] == 'purchase').sum()} purchases"
    )
    check_prepared(_events_config(tmp_path, []), log)  # no basket weight: no rule
    two = _prepared_events(tmp_path / "two", [*rows, ("s1", "d", "purchase")])
    assert basket_sessions(two) == 1
    check_prepared(_events_config(tmp_path, bundle), two)
    # a click log (known format) has no purchases at all: at load time
    with pytest.raises(ShopsimError, match=r"reward\.basket=3: .* and format 'mind' records no purchases"):
        load_named_config("uci-basket", [f"data.source={FIXTURES / 'mind'}", "data.format=mind"])


def _prepared_events(root: Path, rows: list[tuple[str, str, str]]) -> SessionLog:
    """A real prepared ``events`` log of ``rows`` (session, item, event), one minute apart."""
    root.mkdir(parents=True, exist_ok=True)
    src = root / "events.csv"
    lines = ["session_id,user_id,timestamp,item_id,event"]
    lines += [f"{s},u{s},2026-01-01 00:{i:02d}:00,{item},{ev}" for i, (s, item, ev) in enumerate(rows)]
    src.write_text("\n".join(lines) + "\n")
    prepare(src, PrepareOptions(format="events", split=(1.0, 0.0, 0.0), duplicates="keep"), root / "data")
    return SessionLog.load(root / "data")


def _events_config(root: Path, overrides: list[str]):
    return load_config({"data": {"source": str(sample_path("toy")), "format": "events"}}, overrides)


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_packaged_config_on_the_real_subsets(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every config loads with $SHOPSIM_DATA at the real data sets and passes the checks that
    need its prepared log."""
    monkeypatch.setenv("SHOPSIM_DATA", str(shared("")))
    cfg = load_named_config(name)
    prepare(cfg.data.source_path(), cfg.data.prepare_options(), tmp_path / "data")
    log = SessionLog.load(tmp_path / "data")
    check_prepared(cfg, log)
    if "basket" in name:
        assert basket_sessions(log) > 100
