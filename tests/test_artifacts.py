"""Artifact folders (shopsim.artifacts): atomic, locked, verified on load, safe to load.

Unit tests of the writer and the verifier, then every loader (SessionLog, EncoderBundle,
Simulator) against corrupted files (truncated, emptied, garbage: refused on the size/hash
check) and crafted payloads under a manifest whose hashes were recomputed (as an attacker
can): no code runs, and the load fails with one line naming the folder and the rebuild command.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsim import artifacts
from shopsim.artifacts import (
    MANIFEST,
    locked,
    verify_artifact,
    write_artifact,
    write_json_atomic,
)
from shopsim.errors import ShopsimError
from shopsim.tests.helpers import load_encoder, load_log, load_sim, reseal

REBUILD = "shopsim thing --out X"


def _one_line(exc: pytest.ExceptionInfo[ShopsimError], folder: Path, *, rebuild: str | None = None) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{folder}: ")
    assert "rebuild it with `" in msg
    if rebuild is not None:
        assert msg.endswith(f"rebuild it with `{rebuild}`")
    return msg


def _write(target: Path, files: dict[str, bytes], kind: str = "thing", **kw: Any) -> None:
    with write_artifact(target, kind, stage="prepare", **kw) as tmp:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)


# --------------------------------------------------------------------------- writer
def test_write_then_verify_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "a"
    _write(target, {"x.bin": b"hello", "sub/y.txt": b"world"}, inputs={"seed": 1})
    m = verify_artifact(target, "thing", REBUILD)
    assert (m["kind"], m["inputs"], m["shopsim_artifact"]) == ("thing", {"seed": 1}, 1)
    assert m["files"]["x.bin"] == {"size": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}
    assert set(m["files"]) == {"x.bin", "sub/y.txt"}
    # nothing but the folder and its lock is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.lock", "a"]


def test_manifest_is_deterministic(tmp_path: Path) -> None:
    _write(tmp_path / "a", {"x": b"1", "y": b"2"})
    _write(tmp_path / "b", {"y": b"2", "x": b"1"})
    assert (tmp_path / "a" / MANIFEST).read_bytes() == (tmp_path / "b" / MANIFEST).read_bytes()


def test_replacing_swaps_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "a"
    _write(target, {"old.bin": b"old", "shared": b"1"})
    _write(target, {"new.bin": b"new", "shared": b"2"})
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "new.bin", "shared"]
    verify_artifact(target, "thing", REBUILD)
    assert not list(tmp_path.glob(".a.*-*"))


def test_failure_inside_leaves_old_folder_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a"
    _write(target, {"x": b"old"})
    before = (target / MANIFEST).read_bytes()

    def half_written() -> None:
        with write_artifact(target, "thing", stage="prepare") as tmp:
            (tmp / "x").write_bytes(b"half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        half_written()
    assert (target / MANIFEST).read_bytes() == before
    assert (target / "x").read_bytes() == b"old"
    assert not list(tmp_path.glob(".a.tmp-*"))


def test_second_writer_fails_at_once_with_one_line(tmp_path: Path) -> None:
    target = tmp_path / "a"
    # another holder of the lock: a separate open file description, as another process has
    # (the test_kill concurrency tests do it with real processes)
    fd = os.open(tmp_path / ".a.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # non-blocking: a writer that waited would hang here, not fail
        with pytest.raises(ShopsimError) as exc, write_artifact(target, "thing", stage="prepare"):
            pass
    finally:
        os.close(fd)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{target}: another shopsim process is writing this folder")
    _write(target, {"x": b"1"})  # released: the next writer gets it


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    """A stage holds its folder's lock for all its work; its writer takes it again inside."""
    target = tmp_path / "a"
    with locked(target):
        _write(target, {"x": b"1"})
        assert artifacts._HELD
    assert not artifacts._HELD
    verify_artifact(target, "thing", REBUILD)


def test_stale_temporaries_and_prep_work_folders_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "a"
    _write(target, {"x": b"1"})
    for stale in (tmp_path / ".a.tmp-999-dead", tmp_path / ".a.old-999-dead"):
        (stale / "inner").mkdir(parents=True)
    old_style = tmp_path / "b"
    (old_style / "shopsim-prep-abc123").mkdir(parents=True)
    (old_style / "events.parquet").write_bytes(b"old")
    _write(target, {"x": b"2"})
    _write(old_style, {"x": b"3"}, replaces=("events.parquet", "shopsim-prep-*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.lock", ".b.lock", "a", "b"]
    assert sorted(p.name for p in old_style.iterdir()) == [MANIFEST, "x"]


def test_interrupted_fallback_swap_is_undone(tmp_path: Path) -> None:
    """The non-exchange swap's window (target renamed away, new not yet in): loaders refuse the
    missing folder, and the next write restores the old one before anything else."""
    target = tmp_path / "a"
    _write(target, {"x": b"old"})
    target.rename(tmp_path / ".a.old-1-dead")
    with pytest.raises(ShopsimError) as exc:
        verify_artifact(target, "thing", REBUILD)
    assert "missing (a write was interrupted" in _one_line(exc, target)
    with pytest.raises(RuntimeError), write_artifact(target, "thing", stage="prepare"):
        raise RuntimeError("the new write fails too")
    assert (target / "x").read_bytes() == b"old"
    verify_artifact(target, "thing", REBUILD)


def test_fallback_swap_without_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "_exchange", lambda a, b: False)
    target = tmp_path / "a"
    _write(target, {"x": b"old"})
    _write(target, {"x": b"new"})
    assert (target / "x").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.lock", "a"]


def test_foreign_or_other_kind_folders_are_not_replaced(tmp_path: Path) -> None:
    mine = tmp_path / "home"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ShopsimError, match="holds files that are not a shopsim thing folder"):
        _write(mine, {"x": b"1"}, replaces=("events.parquet",))
    assert (mine / "thesis.tex").read_text() == "precious"
    other = tmp_path / "log"
    _write(other, {"x": b"1"}, kind="log")
    with pytest.raises(ShopsimError, match="holds a shopsim log folder, not a encoder folder"):
        _write(other, {"x": b"2"}, kind="encoder")
    verify_artifact(other, "log", REBUILD)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ShopsimError, match="exists and is not a directory"):
        _write(tmp_path / "file", {"x": b"1"})


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, {"a": 1}, indent=2)
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_every_boundary_is_registered() -> None:
    with pytest.raises(AssertionError, match="unknown write boundary"):
        artifacts.boundary("prepare:nowhere")
    for stage, names in artifacts.BOUNDARIES.items():
        assert all(n.startswith(f"{stage}:") for n in names)


# --------------------------------------------------------------------------- verifier
def _folder(tmp_path: Path) -> Path:
    target = tmp_path / "a"
    _write(target, {"x.bin": b"0123456789", "y.json": b"{}"})
    return target


def _empty(d: Path) -> None:
    for p in list(d.iterdir()):
        p.unlink()


VERIFY_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("missing", lambda d: shutil.rmtree(d), "missing"),
    ("empty", _empty, "empty"),
    ("no manifest", lambda d: (d / MANIFEST).unlink(), "incomplete or written by an older shopsim"),
    ("corrupt manifest", lambda d: (d / MANIFEST).write_text("{nope"), "manifest.json is corrupt"),
    ("old manifest", lambda d: (d / MANIFEST).write_text('{"data": "x"}'), "written by an older shopsim"),
    (
        "format",
        lambda d: (d / MANIFEST).write_text(
            json.dumps({**json.loads((d / MANIFEST).read_text()), "shopsim_artifact": 99})
        ),
        "written by shopsim artifact format 99, this shopsim reads format 1",
    ),
    (
        "kind",
        lambda d: (d / MANIFEST).write_text(
            json.dumps({**json.loads((d / MANIFEST).read_text()), "kind": "log"})
        ),
        "is a log folder, expected a thing folder",
    ),
    ("file missing", lambda d: (d / "x.bin").unlink(), "file x.bin is missing (incomplete)"),
    ("truncated", lambda d: (d / "x.bin").write_bytes(b"01234"), "file x.bin changed or truncated (5 bytes"),
    ("changed", lambda d: (d / "x.bin").write_bytes(b"9876543210"), "file x.bin changed (sha256 differs"),
    ("extra", lambda d: (d / "z.npy").write_bytes(b"1"), "file z.npy is not in manifest.json (mixed"),
]


@pytest.mark.parametrize(("case", "damage", "message"), VERIFY_CASES, ids=[c[0] for c in VERIFY_CASES])
def test_verify_refuses_with_one_line(
    tmp_path: Path, case: str, damage: Callable[[Path], object], message: str
) -> None:
    target = _folder(tmp_path)
    verify_artifact(target, "thing", REBUILD)  # verified once: the cache must not hide the change
    damage(target)
    with pytest.raises(ShopsimError) as exc:
        verify_artifact(target, "thing", REBUILD)
    assert message in _one_line(exc, target, rebuild=REBUILD)


def test_verified_files_are_hashed_once_per_process_until_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second load in the same process skips the SHA-256 of unchanged files (the cost of a
    first verification is measured in the closing notes, not asserted: no timed tests)."""
    target = tmp_path / "a"
    _write(target, {"big.bin": np.random.default_rng(0).bytes(1 << 20), "small.bin": b"x"})
    artifacts._VERIFIED.clear()
    hashed: list[str] = []
    real_hash = artifacts._hash

    def counting_hash(path: Path, **kw: Any) -> str:
        hashed.append(path.name)
        return real_hash(path, **kw)

    monkeypatch.setattr(artifacts, "_hash", counting_hash)
    verify_artifact(target, "thing", REBUILD)
    assert sorted(hashed) == ["big.bin", "small.bin"]
    verify_artifact(target, "thing", REBUILD)
    assert sorted(hashed) == ["big.bin", "small.bin"]  # nothing hashed again
    os.utime(target / "small.bin", ns=(1, 1))  # same bytes, new mtime: hashed again
    verify_artifact(target, "thing", REBUILD)
    assert sorted(hashed) == ["big.bin", "small.bin", "small.bin"]


# --------------------------------------------------------------------------- loaders


@pytest.fixture
def folders(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of the log, encoder or simulator folder, by kind (the session fixture of a
    kind is built only when a test asks for it)."""
    sources = {"log": "toy_log_dir", "encoder": "toy_encoder_dir", "simulator": "toy_sim"}

    def copy(kind: str) -> Path:
        dst = tmp_path / kind
        shutil.copytree(request.getfixturevalue(sources[kind]), dst)
        return dst

    return copy


LOADERS = {"log": load_log, "encoder": load_encoder, "simulator": load_sim}
REBUILDS = {
    "log": "shopsim data prepare SRC --format … --out {d}",
    "encoder": "shopsim encode DATA_DIR --out {d}",
    "simulator": "shopsim simulator fit DATA_DIR --embeddings DIR --out {d}",
}
ARTIFACT_FILES = {
    "log": ["events.parquet", "items.parquet", "report.json"],
    "encoder": [
        "encoder.pt",
        "item_vectors.npy",
        "item_ids.json",
        "eval.json",
        "cache/frozen_text.npy",
        "cache/frozen_text.json",
    ],
    "simulator": [
        "catalog.npz",
        "model.npz",
        "episodes.npz",
        "simulator.json",
        "fidelity.json",
        "plots/sessions.png",
        "plots/categories.png",
    ],
}
DAMAGES: dict[str, Callable[[Path], object]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(np.random.default_rng(1).bytes(max(p.stat().st_size, 16))),
}
CORRUPT = [(k, f, d) for k, fs in ARTIFACT_FILES.items() for f in fs for d in DAMAGES]


def test_good_folders_load_and_list_every_file(folders: Callable[[str], Path]) -> None:
    for kind, loader in LOADERS.items():
        d = folders(kind)
        loader(d)
        assert set(verify_artifact(d, kind, "x")["files"]) == set(ARTIFACT_FILES[kind])


@pytest.mark.parametrize(("kind", "name", "damage"), CORRUPT, ids=[f"{k}-{f}-{d}" for k, f, d in CORRUPT])
def test_corrupt_file_is_refused_with_one_line(
    folders: Callable[[str], Path], kind: str, name: str, damage: str
) -> None:
    d = folders(kind)
    DAMAGES[damage](d / name)
    with pytest.raises(ShopsimError) as exc:
        LOADERS[kind](d)
    msg = _one_line(exc, d, rebuild=REBUILDS[kind].format(d=d))
    assert f"file {name} changed" in msg


@pytest.mark.parametrize("kind", list(LOADERS))
def test_folder_of_older_shopsim_is_refused(folders: Callable[[str], Path], kind: str) -> None:
    d = folders(kind)
    (d / MANIFEST).unlink()
    with pytest.raises(ShopsimError) as exc:
        LOADERS[kind](d)
    assert "written by an older shopsim" in _one_line(exc, d, rebuild=REBUILDS[kind].format(d=d))


class _Payload:
    """Unpickling this creates the marker file: what a crafted artifact would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _crafted_pickle(path: Path, marker: Path) -> None:
    import torch

    torch.save({"architecture": _Payload(marker), "state_dict": {}}, path)


def _crafted_npz(path: Path, marker: Path) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = dict(z)
    first = next(iter(arrays))
    arrays[first] = np.array([_Payload(marker)], dtype=object)
    np.savez(path, **arrays)


def _crafted_npy(path: Path, marker: Path) -> None:
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)


def _crafted_json(path: Path, marker: Path) -> None:
    path.write_text(json.dumps(["not", "the", {"expected": "structure"}, str(marker)]))


def _crafted_parquet(path: Path, marker: Path) -> None:
    import pandas as pd

    pd.DataFrame({"anything": [str(marker)]}).to_parquet(path)


CRAFTED: list[tuple[str, str, Callable[[Path, Path], None]]] = [
    ("encoder", "encoder.pt", _crafted_pickle),
    ("encoder", "item_vectors.npy", _crafted_npy),
    ("encoder", "item_ids.json", _crafted_json),
    ("simulator", "model.npz", _crafted_npz),
    ("simulator", "episodes.npz", _crafted_npz),
    ("simulator", "catalog.npz", _crafted_npz),
    ("simulator", "simulator.json", _crafted_json),
    ("log", "events.parquet", _crafted_parquet),
    ("log", "items.parquet", _crafted_parquet),
    ("log", "report.json", _crafted_json),
]


@pytest.mark.parametrize(("kind", "name", "craft"), CRAFTED, ids=[f"{k}-{n}" for k, n, _ in CRAFTED])
def test_crafted_payload_under_a_valid_manifest_runs_no_code(
    folders: Callable[[str], Path], tmp_path: Path, kind: str, name: str, craft: Callable[[Path, Path], None]
) -> None:
    d = folders(kind)
    marker = tmp_path / "PWNED"
    craft(d / name, marker)
    reseal(d)  # the attacker recomputes the hashes: the manifest alone cannot stop this
    verify_artifact(d, kind, "x")
    with pytest.raises(ShopsimError) as exc:
        LOADERS[kind](d)
    msg = str(exc.value)  # one line naming the folder (or its file) and how to rebuild it
    assert "\n" not in msg
    assert msg.startswith(str(d))
    assert "shopsim " in msg
    assert not marker.exists()


def test_truncated_vectors_under_valid_manifest_are_not_served_from_cache(
    toy_log_dir: Path, toy_encoder_dir: Path, tmp_path: Path
) -> None:
    from shopsim.encoders.finetune import EncoderConfig
    from shopsim.encoders.train import BUNDLE_FILES, encoder_manifest, is_current

    enc = tmp_path / "enc"
    shutil.copytree(toy_encoder_dir, enc)
    inputs = encoder_manifest(
        toy_log_dir, EncoderConfig(progress=False, epochs=2), ablation=False, n_boot=20, text="on"
    )
    assert is_current(enc, inputs, ["eval.json", *BUNDLE_FILES])
    vec = enc / "item_vectors.npy"
    vec.write_bytes(vec.read_bytes()[:-100])  # a killed re-encode of the old writer
    assert not is_current(enc, inputs, ["eval.json", *BUNDLE_FILES])


def test_run_stage_marker_never_vouches_for_changed_results(tmp_path: Path) -> None:
    from shopsim.experiments.runner import _is_current, _mark

    results, marker = tmp_path / "results.json", tmp_path / "stage.json"
    results.write_text('{"a": 1}\n')
    _mark(marker, "k", results)
    assert _is_current(marker, "k", results)
    assert not _is_current(marker, "other", results)
    for damage in DAMAGES.values():
        results.write_text('{"a": 1}\n')
        damage(results)
        assert not _is_current(marker, "k", results)
    marker.write_text("garbage")
    results.write_text('{"a": 1}\n')
    assert not _is_current(marker, "k", results)
