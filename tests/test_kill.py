"""Kill and concurrency tests: a stage SIGKILLed at any named write boundary
(``SHOPSIM_KILL_AT``, :data:`shopsim.artifacts.BOUNDARIES`) leaves a folder that the next load
either refuses with one line or finds complete and equal to an uninterrupted run; a complete
older folder at the target survives intact until the new one is swapped in. Two concurrent
``data prepare`` into one ``--out``: the second fails at once with one line and exit 2
(``SHOPSIM_PAUSE_AT`` holds the first at a boundary, so the overlap is certain, not timed).

Default run (~50 s): every prepare boundary (fresh and older target), prepare reruns, the
concurrency test. ``slow`` (a subprocess encode or fit costs 15-40 s on 2 shared cores): every
encode, simulator fit and ``shopsim run`` boundary.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopsim.artifacts import BOUNDARIES
from shopsim.data import sample_path
from shopsim.errors import ShopsimError
from shopsim.tests.helpers import load_encoder, load_log, load_sim, tiny_toy_config

SAMPLE = sample_path("toy")
PREPARE = ["data", "prepare", SAMPLE, "--format", "events", "--split", "0.6,0.2,0.2"]
PREPARE_OLD = ["data", "prepare", SAMPLE, "--format", "events", "--split", "0.5,0.25,0.25"]
ENCODE = ["--epochs", "1", "--n-boot", "10"]
FIT = ["--baselines", "false", "--calibrate", "false", "--negatives", "2", "--hidden", "0"]
FIT += ["--replay-slate-size", "3"]
VOLATILE = {"timing_s", "seconds", "outputs", "total", "frozen_text_cache_hit"}
"""JSON keys that differ between two runs or two targets (timings, the target's own paths, and
whether the frozen text vectors came from the previous folder's cache)."""


def shopsim(*args: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``shopsim ARGS`` in a fresh process (one thread, like the rest of the suite)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    for hook in ("SHOPSIM_KILL_AT", "SHOPSIM_PAUSE_AT"):
        if env is None or hook not in env:
            full_env.pop(hook, None)
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", *map(str, args)]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=900, check=False)


def ok(*args: Any) -> None:
    res = shopsim(*args)
    assert res.returncode == 0, res.stderr[-2000:]


def _strip(doc: Any, root: str | None = None) -> Any:
    """``doc`` without :data:`VOLATILE` keys, paths under ``root`` written relative to it (a
    reference run and the interrupted one live in different folders)."""
    if isinstance(doc, dict):
        return {k: _strip(v, root) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v, root) for v in doc]
    if root is not None and isinstance(doc, str):
        return doc.replace(root, "<root>")
    return doc


def snapshot(folder: Path) -> dict[str, Any]:
    """Every file of ``folder``: its sha256, or for JSON its content without :data:`VOLATILE`
    keys (the manifest: its file list and the hashes of the non-JSON files)."""
    out: dict[str, Any] = {}
    root = str(folder.parent)
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if rel == "manifest.json":
            m = json.loads(p.read_text())
            files = {k: (v if not k.endswith(".json") else None) for k, v in m["files"].items()}
            out[rel] = {**_strip({k: v for k, v in m.items() if k != "files"}, root), "files": files}
        elif p.suffix == ".json":
            out[rel] = _strip(json.loads(p.read_text()), root)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def check_after_kill(
    target: Path, load: Callable[[Path], None], new: dict[str, Any], old: dict[str, Any] | None, swapped: bool
) -> None:
    """After a kill: the folder is the new complete one (killed after the swap), else the old
    complete one (it held one) or refused with one line (it was fresh)."""
    try:
        load(target)
    except ShopsimError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert msg.startswith(f"{target}: ")
        assert re.search(r"(rebuild it|create one) with `shopsim ", msg), msg
        assert old is None, "an older complete folder did not survive the kill"
        assert not swapped
        return
    got = snapshot(target)
    if swapped:
        assert got == new
    else:
        assert old is not None, "a folder appeared before the swap"
        assert got == old


def no_leftovers(target: Path) -> None:
    assert not [p.name for p in target.parent.glob(f".{target.name}.*-*")]
    assert not list(target.glob("shopsim-prep-*"))


def killed(*args: Any, at: str) -> None:
    res = shopsim(*args, env={"SHOPSIM_KILL_AT": at})
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr[-2000:])


def _cases(stage: str, default: set[tuple[str, str]] | None = None) -> list[Any]:
    """(boundary, fresh|old) for every boundary of ``stage``; those not in ``default`` are slow
    (``default=None``: all run by default)."""
    cases = []
    for b in BOUNDARIES[stage]:
        for scenario in ("fresh", "old"):
            slow = default is not None and (b, scenario) not in default
            cases.append(
                pytest.param(b, scenario, marks=[pytest.mark.slow] if slow else [], id=f"{b}-{scenario}")
            )
    return cases


# --------------------------------------------------------------------------- prepare
@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Uninterrupted reference runs: the new log and an older one (another split)."""
    root = tmp_path_factory.mktemp("kill-ref")
    ok(*PREPARE, "--out", root / "new")
    ok(*PREPARE_OLD, "--out", root / "old")
    return {"dir": root / "new", "new": snapshot(root / "new"), "old": snapshot(root / "old")}


# Default run: every boundary on a fresh target, and an older target killed mid-write (it must
# survive); the other older-target cases are slow (each costs a reference prepare, ~4 s).
PREPARE_DEFAULT = {(b, "fresh") for b in BOUNDARIES["prepare"]} | {("prepare:tables-written", "old")}


@pytest.mark.parametrize(("at", "scenario"), _cases("prepare", PREPARE_DEFAULT))
def test_prepare_killed_at_each_boundary(
    prepared: dict[str, Any], tmp_path: Path, at: str, scenario: str
) -> None:
    target = tmp_path / "data"
    if scenario == "old":
        ok(*PREPARE_OLD, "--out", target)
        assert snapshot(target) == prepared["old"]
    killed(*PREPARE, "--out", target, at=at)
    old = prepared["old"] if scenario == "old" else None
    check_after_kill(target, load_log, prepared["new"], old, swapped=at.endswith(":swapped"))
    ok(*PREPARE, "--out", target)  # the next run sweeps what the killed one left
    assert snapshot(target) == prepared["new"]
    no_leftovers(target)


def test_prepare_rerun_is_byte_identical(prepared: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "data"
    ok(*PREPARE, "--out", target)
    first = {p.name: p.read_bytes() for p in target.iterdir()}
    ok(*PREPARE, "--out", target)
    again = {p.name: p.read_bytes() for p in target.iterdir()}
    assert first.keys() == again.keys() == {"events.parquet", "items.parquet", "report.json", "manifest.json"}
    for name in ("events.parquet", "items.parquet"):
        assert first[name] == again[name]
    assert _strip(json.loads(first["report.json"])) == _strip(json.loads(again["report.json"]))


def second_writer_fails_at_once(args: list[Any], target: Path, pause_at: str, tmp_path: Path) -> None:
    """Run ``shopsim ARGS`` paused at boundary ``pause_at`` (holding the lock of ``target``),
    start the same command again: it must fail at once with one line; then let the first finish."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    release = tmp_path / "release"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SHOPSIM_PAUSE_AT": f"{pause_at}:{release}"}
    cmd = [sys.executable, "-m", "shopsim.experiments.cli", *map(str, args)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not Path(f"{release}.reached").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # the first writer waits for `release` (never touched before this returns), so a second
        # writer that blocked on the lock would hang here instead of failing
        second = shopsim(*args)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(
            f"shopsim: error: {target}: another shopsim process is writing this folder"
        )
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first is still paused, holding the lock
    finally:
        release.touch()
        _out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err


def test_concurrent_prepare_second_fails_at_once(prepared: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "data"
    second_writer_fails_at_once([*PREPARE, "--out", target], target, "prepare:tables-written", tmp_path)
    assert snapshot(target) == prepared["new"]


# --------------------------------------------------------------------------- encode
@pytest.fixture(scope="module")
def encoded(prepared: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("kill-enc")
    data = prepared["dir"]
    ok("encode", data, "--out", root / "new", *ENCODE)
    return {"data": data, "dir": root / "new", "new": snapshot(root / "new")}


@pytest.mark.slow
@pytest.mark.parametrize(("at", "scenario"), _cases("encode"))
def test_encode_killed_at_each_boundary(
    encoded: dict[str, Any], tmp_path: Path, at: str, scenario: str
) -> None:
    target = tmp_path / "enc"
    if scenario == "old":
        ok("encode", encoded["data"], "--out", target, *ENCODE, "--seed", "1")
    old = snapshot(target) if scenario == "old" else None
    killed("encode", encoded["data"], "--out", target, *ENCODE, at=at)
    check_after_kill(target, load_encoder, encoded["new"], old, swapped=at.endswith(":swapped"))
    res = shopsim("encode", encoded["data"], "--out", target, *ENCODE)
    assert res.returncode == 0, res.stderr[-2000:]
    # served from the cache exactly when the new folder had been swapped in, never from a half-written one
    assert ("served from the cache" in res.stdout) == at.endswith(":swapped")
    assert snapshot(target) == encoded["new"]
    no_leftovers(target)


# --------------------------------------------------------------------------- simulator fit
@pytest.fixture(scope="module")
def fitted(encoded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("kill-fit")
    data, enc = encoded["data"], encoded["dir"]
    ok("simulator", "fit", data, "--embeddings", enc, "--out", root / "new", *FIT)
    return {"data": data, "enc": enc, "new": snapshot(root / "new")}


@pytest.mark.slow
@pytest.mark.parametrize(("at", "scenario"), _cases("fit"))
def test_fit_killed_at_each_boundary(fitted: dict[str, Any], tmp_path: Path, at: str, scenario: str) -> None:
    target = tmp_path / "sim"
    base = ["simulator", "fit", fitted["data"], "--embeddings", fitted["enc"], "--out", target, *FIT]
    if scenario == "old":
        ok(*base, "--seed", "1")
    old = snapshot(target) if scenario == "old" else None
    killed(*base, at=at)
    check_after_kill(target, load_sim, fitted["new"], old, swapped=at.endswith(":swapped"))
    ok(*base)
    assert snapshot(target) == fitted["new"]
    no_leftovers(target)


# --------------------------------------------------------------------------- shopsim run
TINY_RUN = tiny_toy_config(
    agents={"policies": ["random", "popularity"]},
    evaluation={"episodes": 50, "n_boot": 50},
)


@pytest.fixture(scope="module")
def run_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny config and its uninterrupted run folder."""
    root = tmp_path_factory.mktemp("kill-run")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    ok("run", config, "--out", root / "ref")
    return config, root / "ref"


# Every boundary of the run itself, and inside each stage the write between its files (each
# stage's own test above covers all of its boundaries; repeating them all here costs ~15 min).
RUN_KILL_POINTS = [*BOUNDARIES["run"], "prepare:tables-written", "encode:bundle-written", "fit:model-written"]


@pytest.mark.slow
@pytest.mark.parametrize("at", RUN_KILL_POINTS)
def test_run_killed_at_each_boundary(run_reference: tuple[Path, Path], tmp_path: Path, at: str) -> None:
    config, ref = run_reference
    out = tmp_path / "out"
    killed("run", config, "--out", out, at=at)
    for name, load in (("data", load_log), ("encoder", load_encoder), ("simulator", load_sim)):
        check_after_kill(out / name, load, snapshot(ref / name), None, swapped=(out / name).exists())
    ok("run", config, "--out", out)
    for name in ("data", "encoder", "simulator"):
        assert snapshot(out / name) == snapshot(ref / name)
        no_leftovers(out / name)
    assert _strip(json.loads((out / "results.json").read_text()), str(out)) == _strip(
        json.loads((ref / "results.json").read_text()), str(ref)
    )


@pytest.mark.slow
def test_concurrent_encode_fit_and_run_second_fails_at_once(fitted: dict[str, Any], tmp_path: Path) -> None:
    enc = tmp_path / "enc"
    second_writer_fails_at_once(
        ["encode", fitted["data"], "--out", enc, *ENCODE], enc, "encode:bundle-written", tmp_path / "e"
    )
    load_encoder(enc)
    sim = tmp_path / "sim"
    args = ["simulator", "fit", fitted["data"], "--embeddings", fitted["enc"], "--out", sim, *FIT]
    second_writer_fails_at_once(args, sim, "fit:model-written", tmp_path / "f")
    assert snapshot(sim) == fitted["new"]
    config, run_dir = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(TINY_RUN))
    second_writer_fails_at_once(
        ["run", config, "--out", run_dir], run_dir, "run:config-written", tmp_path / "r"
    )
    assert json.loads((run_dir / "results.json").read_text())["policies"]
