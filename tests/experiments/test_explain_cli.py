"""``shopsim explain`` and ``report.html`` on a finished tiny run: every registered policy of the
run is explained (by episode or logged session id), the replayed episodes have the length the
run's own evaluation recorded, every attribution adds up, the run wrote a self-contained report,
and bad input is one line, exit 2."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
import yaml

from shopsim.tests.helpers import tiny_agents, tiny_toy_config

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/explain.schema.json").read_text())
RUN = tiny_toy_config(
    agents=tiny_agents(["random", "popularity", "cooccurrence", "click_model_greedy", "ppo", "dqn"]),
    evaluation={"episodes": 40, "n_boot": 20, "offline": False},
)


def _shopsim(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    # the run's report explains its 3 example sessions, as for a user (conftest turns them off)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SHOPSIM_REPORT_SESSIONS": "3"}
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    (root / "tiny.yaml").write_text(yaml.safe_dump(RUN))
    proc = _shopsim("run", "tiny.yaml", "--out", "run", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "run"


@pytest.mark.slow
def test_explain_every_policy_of_the_run(run: Path, tmp_path: Path) -> None:
    results = json.loads((run / "results.json").read_text())
    for episode in (0, 17, 39):
        proc = _shopsim("explain", run, "--episode", episode, "--json", tmp_path / "x.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        doc = json.loads((tmp_path / "x.json").read_text())
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        assert set(doc["policies"]) == {p for p in results["policies"] if p != "ppo_sampled"}
        for name, entry in doc["policies"].items():
            assert len(entry["steps"]) == entry["evaluated"]["steps"], (name, episode)
            for step in entry["steps"]:
                for item in step["slate"]:
                    assert item["shopper"]["completeness_gap"] < 1e-9
                    for head in item.get("policy", {}).values():
                        assert head["completeness_gap"] < 1e-9
        assert f"test episode {episode} of 40" in proc.stdout
        assert "shopper model: P(click)" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "bpr"], "--policy bpr: not a policy of this run; use one of random, popularity"),
        (["--episode", "40"], "explain: episode 40 is not one of the 40 evaluated (0..39)"),
    ],
)
def test_explain_bad_input_is_one_line(run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = _shopsim("explain", run, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"shopsim: error: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_explain_a_folder_without_results_is_one_line(tmp_path: Path) -> None:
    proc = _shopsim("explain", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"shopsim: error: {tmp_path}: no results.json; "
        f"finish the run first (shopsim run CONFIG --out {tmp_path})"
    )


@pytest.mark.slow
def test_explain_by_logged_session_id(run: Path, tmp_path: Path) -> None:
    """--session ID explains the first evaluated episode of that logged session; ids that are
    not in the log, not a test session, or a test session the run did not draw are one line."""
    from shopsim.errors import ShopsimError
    from shopsim.experiments.explain import RunExplainer

    ex = RunExplainer(run, ["popularity"])
    sid = str(ex.sessions[17])
    first = int(list(ex.sessions).index(sid))
    proc = _shopsim(
        "explain", run, "--session", sid, "--policy", "popularity", "--json", "s.json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "s.json").read_text())
    assert (doc["episode"], doc["session"]) == (first, sid)
    assert f"logged session {sid}" in proc.stdout
    train = str(ex.sim.episodes["train"].session_ids[0])
    drawn = set(ex.sessions.tolist())
    undrawn = next(str(s) for s in ex.sim.episodes["test"].session_ids if str(s) not in drawn)
    examples = ", ".join(dict.fromkeys(ex.sessions[:3].tolist()))
    table = {
        "no-such-session": "--session no-such-session: no session with this id in the run's log; use a "
        f"logged test session id (e.g. {examples}) or --episode N",
        train: f"--session {train}: a train session; explain replays the run's evaluated test sessions "
        f"(e.g. {examples})",
        undrawn: f"--session {undrawn}: a test session, but not one of the 40 the run evaluated (drawn with "
        f"its seed); use an evaluated one (e.g. {examples}) or --episode N",
    }
    for bad, message in table.items():
        with pytest.raises(ShopsimError) as err:
            ex.episode_of(bad)
        assert str(err.value) == message
    proc = _shopsim("explain", run, "--session", "no-such-session", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"shopsim: error: {table['no-such-session']}"]


class _Page(HTMLParser):
    """What a report page holds: table rows of #results-table, img sources, scripts, links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.external: list[str] = []
        self._in_results = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == "results-table":
            self._in_results = True
        if tag == "tr" and self._in_results and a.get("data-policy"):
            self.rows.append(str(a["data-policy"]))
        if tag == "img":
            self.images.append(str(a.get("src")))
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_results = False


@pytest.mark.slow
def test_every_run_writes_a_self_contained_report(run: Path, tmp_path: Path) -> None:
    """shopsim run wrote report.html: one results row per policy, every image embedded as a PNG
    data URI, no script, nothing fetched from the network, the example sessions explained; and
    shopsim report redraws it."""
    results = json.loads((run / "results.json").read_text())
    page = _Page()
    page.feed((run / "report.html").read_text())
    assert page.rows == sorted(
        results["policies"], key=lambda n: -results["policies"][n]["sim"]["return_mean"]
    )
    assert page.scripts == 0
    assert page.external == []
    assert len(page.images) >= 3  # policies, learning curves, fidelity plots
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = (run / "report.html").read_text()
    for section in (
        "Results",
        "Learning curves",
        "Example sessions, explained",
        "Simulator fidelity",
        "Encoder",
        "Data",
        "Configuration",
    ):
        assert f"<h2>{section}" in text
    assert text.count('class="session"') == 3
    before = (run / "report.html").stat().st_mtime_ns
    # the same run again reuses its results and keeps the report drawn from them
    proc = _shopsim("run", run.parent / "tiny.yaml", "--out", run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "agents: reused" in proc.stdout
    assert f"report: kept {run / 'report.html'}" in proc.stdout
    assert (run / "report.html").stat().st_mtime_ns == before
    proc = _shopsim("report", run, "--sessions", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "report.html").stat().st_mtime_ns > before
    assert (run / "report.html").read_text().count('class="session"') == 1


@pytest.mark.slow
def test_report_bad_input_is_one_line(run: Path, tmp_path: Path) -> None:
    """A folder without results, results.json of another layout, files written by different
    shopsim versions: one line, exit 2, and no report written."""
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append(
        (
            empty,
            f"{empty}: no results.json; finish the run first (shopsim run {empty}/config.yaml --out {empty})",
        )
    )
    old = tmp_path / "old-layout"
    shutil.copytree(run, old)
    results = json.loads((old / "results.json").read_text())
    (old / "results.json").write_text(json.dumps({**results, "schema": "shopsim.results/1"}))
    cases.append(
        (
            old,
            f"{old}/results.json: layout shopsim.results/1, this shopsim 0.1.0 reads shopsim.results/2; "
            f"rerun the run with this version (shopsim run {old}/config.yaml --out {old})",
        )
    )
    mixed = tmp_path / "mixed"
    shutil.copytree(run, mixed)
    manifest = json.loads((mixed / "simulator" / "manifest.json").read_text())
    (mixed / "simulator" / "manifest.json").write_text(json.dumps({**manifest, "shopsim_version": "0.0.9"}))
    cases.append(
        (
            mixed,
            f"{mixed}: files from different shopsim versions (provenance.json 0.1.0, stage.json 0.1.0, "
            f"data/manifest.json 0.1.0, encoder/manifest.json 0.1.0, simulator/manifest.json 0.0.9); "
            f"rerun the run with one version (shopsim run {mixed}/config.yaml --out {mixed})",
        )
    )
    for folder, message in cases:
        (folder / "report.html").unlink(missing_ok=True)
        proc = _shopsim("report", folder, cwd=tmp_path)
        assert proc.returncode == 2, folder
        assert proc.stderr.strip().splitlines() == [f"shopsim: error: {message}"]
        assert not (folder / "report.html").exists()
