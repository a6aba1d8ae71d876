"""The request memo of ``shopsim encode``: a repeated command answered before the heavy imports.

``run_encode`` decides whether its output folder is current from the data, the backbone and the
configuration (``encoder_manifest``) — but building that configuration imports the pipeline
(torch, scipy, pandas: seconds), which dwarfs the check itself. So after every successful
``shopsim encode``, the command line that produced the folder is remembered beside it
(``.OUT.request.json``, written atomically) together with what the answer depended on:

* the request: the arguments, the working directory (relative paths), the shopsim version and
  every ``SHOPSIM_*`` environment variable;
* the folder: the sha256 of its ``manifest.json`` (so the memo vouches for that exact folder),
  which :func:`shopsim.artifacts.verify_artifact` then checks file by file;
* the inputs: the data folder (verified too, and its ``events.parquet`` / ``items.parquet``
  hashed again and compared with the manifest's inputs) and the backbone's weight files (by
  size, modification time and inode, as :mod:`shopsim.artifacts` re-checks files);
* what the command printed.

:func:`recall` answers an identical request only when all of it still holds; anything else
(another flag, a changed data file, a reinstalled backbone, a new shopsim, a broken folder)
falls through to the full command, which makes the authoritative check. This module imports
nothing heavy, so a repeated ``shopsim encode`` costs an interpreter and a few file hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopsim import __version__
from shopsim.artifacts import MANIFEST, tidy, verify_artifact, write_json_atomic
from shopsim.errors import ShopsimError

MEMO_VERSION = 1


def memo_path(out: Path) -> Path:
    """Where the memo of output folder ``out`` lives: beside it, like its lock file."""
    return out.parent / f".{out.name}.request.json"


def _request(argv: Sequence[str]) -> dict[str, Any]:
    return {
        "argv": list(argv),
        "cwd": os.getcwd(),
        "shopsim": __version__,
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith("SHOPSIM_")},
    }


def out_of(argv: Sequence[str]) -> Path | None:
    """The ``--out`` folder of an encode command line (None when absent or given twice)."""
    found = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"]
    found += [a.split("=", 1)[1] for a in argv if a.startswith("--out=")]
    return Path(found[0]) if len(found) == 1 else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stats(paths: Sequence[Path]) -> list[list[Any]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns, st.st_ino])
    return out


def remember(
    argv: Sequence[str], out: Path, data_dir: Path, backbone_files: Sequence[Path], printed: str
) -> None:
    """Record that the encode command ``argv`` left the verified folder ``out`` (from
    ``data_dir`` and ``backbone_files``) and printed ``printed``."""
    memo = {
        "memo_version": MEMO_VERSION,
        "request": _request(argv),
        "manifest_sha256": _sha256(out / MANIFEST),
        "data_dir": str(data_dir.resolve()),
        "backbone_files": _stats([Path(p).resolve() for p in backbone_files]),
        "printed": printed,
    }
    write_json_atomic(memo_path(out), memo, indent=1)


def recall(argv: Sequence[str]) -> str | None:
    """What an earlier identical ``shopsim encode`` printed, if its folder and inputs are
    unchanged (module docstring); None to run the command in full."""
    out = out_of(argv)
    if out is None:
        return None
    try:
        memo = json.loads(memo_path(out).read_text())
        if memo.get("memo_version") != MEMO_VERSION or memo.get("request") != _request(argv):
            return None
        if _sha256(out / MANIFEST) != memo["manifest_sha256"]:
            return None
        if _stats([Path(p[0]) for p in memo["backbone_files"]]) != memo["backbone_files"]:
            return None
        data_dir = Path(memo["data_dir"])
        stored = verify_artifact(out, "encoder", f"shopsim encode DATA_DIR --out {out}")
        verify_artifact(data_dir, "log", f"shopsim data prepare SOURCE --out {data_dir}")
        if stored.get("inputs", {}).get("data") != _hash_data(data_dir):
            return None
    except (OSError, ValueError, KeyError, TypeError, IndexError, ShopsimError):
        return None  # no memo, or anything off: the full command decides
    tidy(out)  # as the full command does on a cache hit
    return str(memo["printed"])


def _hash_data(data_dir: Path) -> str:
    """The data hash of ``encoder_manifest`` (the same function computes both)."""
    from shopsim.encoders.cache import ENCODER_DATA_FILES, hash_files

    return hash_files([data_dir / name for name in ENCODER_DATA_FILES])
