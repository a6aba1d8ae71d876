"""On-disk cache of vectors with a manifest: reused when nothing changed, rebuilt otherwise.

A cache entry is ``NAME.npy`` plus ``NAME.json`` (the manifest). The manifest records what
the vectors depend on — backbone weights hash, configuration, a hash of the texts or data,
and the array's shape — and an entry is served only when every field matches. Arrays are
loaded memory-mapped, so a large catalog costs no RAM until it is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.artifacts import atomic_file, write_text_atomic

ENCODER_DATA_FILES = ("events.parquet", "items.parquet")
"""The files of a prepared log an encoder depends on (hashed into its manifest)."""


def hash_texts(texts: Iterable[str]) -> str:
    """SHA-256 of a sequence of texts (order matters)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def hash_files(paths: Iterable[Path]) -> str:
    """SHA-256 over the bytes of several files."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def load_cached(directory: Path, name: str, manifest: dict[str, Any]) -> np.ndarray | None:
    """The cached array if its manifest equals ``manifest`` (memory-mapped), else ``None``."""
    arr, meta = directory / f"{name}.npy", directory / f"{name}.json"
    if not (arr.exists() and meta.exists()):
        return None
    try:
        stored = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != _canonical(manifest):
        return None
    try:
        out = np.load(arr, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):  # truncated or not an array: rebuild it
        return None
    if list(out.shape) != stored.get("shape"):
        return None
    return out


def save_cached(directory: Path, name: str, manifest: dict[str, Any], array: np.ndarray) -> None:
    """Store ``array`` with its manifest (array first, so a crash never leaves a valid manifest
    pointing at a missing or partial array)."""
    directory.mkdir(parents=True, exist_ok=True)
    # replaced, never written in place: the file may be a hard link into a previous folder
    with atomic_file(directory / f"{name}.npy") as fh:
        np.save(fh, np.ascontiguousarray(array))
    meta = {
        "key": _canonical(manifest),
        "manifest": manifest,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }
    write_text_atomic(directory / f"{name}.json", json.dumps(meta, indent=2, default=str))


def cached(
    directory: Path, name: str, manifest: dict[str, Any], build: Callable[[], np.ndarray]
) -> tuple[np.ndarray, bool]:
    """Return ``(array, hit)``: the cached array, or ``build()`` stored under ``manifest``."""
    hit = load_cached(directory, name, manifest)
    if hit is not None:
        return hit, True
    arr = build()
    save_cached(directory, name, manifest, arr)
    return arr, False


def _canonical(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()
