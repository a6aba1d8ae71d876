"""The request memo of ``shopsim encode``: a repeated command is answered before the heavy
imports, and only while the request, the folder and its inputs are unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shopsim.experiments.cli import main
from shopsim.experiments.encode_memo import memo_path, recall

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("SHOPSIM_TRACEBACK", None)
FLAGS = ("--epochs", "2", "--n-boot", "20")


@pytest.fixture(scope="module")
def encoded(toy_log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("memo")
    data = root / "data"
    shutil.copytree(toy_log_dir, data)
    out = root / "enc"
    assert main(["encode", str(data), "--out", str(out), *FLAGS]) == 0
    return {"root": root, "data": data, "out": out}


def _argv(e: dict[str, Path], *extra: str) -> list[str]:
    return [str(e["data"]), "--out", str(e["out"]), *FLAGS, *extra]


def test_a_repeated_encode_is_answered_without_importing_torch(encoded: dict[str, Path]) -> None:
    code = (
        "import sys; from shopsim.experiments.cli import main; "
        f"rc = main({['encode', *_argv(encoded)]!r}); "
        "print('TORCH', 'torch' in sys.modules, rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    assert "served from the cache in" in res.stdout
    assert "two_tower" in res.stdout  # the evaluation table, as the first run printed it
    assert res.stdout.strip().endswith("TORCH False 0")


def test_the_memo_binds_the_request_the_folder_and_the_inputs(
    encoded: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv, cwd = _argv(encoded), os.getcwd()  # the memo was written from this folder
    assert recall(argv) is not None
    assert recall(_argv(encoded, "--seed", "1")) is None  # another request
    monkeypatch.setenv("SHOPSIM_SOMETHING", "1")
    assert recall(argv) is None  # another shopsim environment
    monkeypatch.delenv("SHOPSIM_SOMETHING")
    monkeypatch.chdir(tmp_path)
    assert recall(argv) is None  # relative paths would mean other folders
    monkeypatch.chdir(cwd)
    assert recall(argv) is not None

    memo = memo_path(encoded["out"])
    saved = memo.read_text()
    try:
        fake = tmp_path / "weights.bin"
        fake.write_bytes(b"w")
        stored = json.loads(saved)
        st = fake.stat()
        stored["backbone_files"] = [[str(fake), st.st_size, st.st_mtime_ns, st.st_ino]]
        memo.write_text(json.dumps(stored))
        assert recall(argv) is not None
        fake.write_bytes(b"other weights")  # a reinstalled backbone
        assert recall(argv) is None
    finally:
        memo.write_text(saved)
    assert recall(argv) is not None


def test_a_changed_folder_or_data_falls_through_to_the_full_command(
    encoded: dict[str, Path], tmp_path: Path
) -> None:
    e = {"root": tmp_path, "data": tmp_path / "data", "out": tmp_path / "enc"}
    shutil.copytree(encoded["data"], e["data"])
    shutil.copytree(encoded["out"], e["out"])
    memo = json.loads(memo_path(encoded["out"]).read_text())
    memo["request"]["argv"] = _argv(e)
    memo["data_dir"] = str(e["data"].resolve())
    memo_path(e["out"]).write_text(json.dumps(memo))
    cwd = os.getcwd()
    assert recall(_argv(e)) is not None
    (e["out"] / "eval.json").write_text("{}")  # a changed output file: the folder fails verification
    assert recall(_argv(e)) is None
    shutil.rmtree(e["out"])
    shutil.copytree(encoded["out"], e["out"])
    assert recall(_argv(e)) is not None
    with (e["data"] / "items.parquet").open("ab") as fh:  # a changed data file
        fh.write(b"x")
    assert recall(_argv(e)) is None
    assert os.getcwd() == cwd
