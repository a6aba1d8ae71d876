"""Artifact folders: written atomically under a lock, read back only after verification.

Every stage (``data prepare``, ``encode``, ``simulator fit``, the stage folders of ``shopsim
run``) writes its folder with :func:`write_artifact` and every loader reads it through
:func:`verify_artifact`.

Writing ``TARGET`` (:func:`write_artifact`):

1. take an exclusive, non-blocking ``fcntl.flock`` on ``PARENT/.TARGET.lock`` (a second writer
   fails at once with one line; the lock file stays, deleting it would race a third writer);
2. sweep what dead writers left beside the target (``.TARGET.tmp-*``, ``.TARGET.old-*``, old
   ``shopsim-prep-*`` work folders inside it) — safe because the lock proves no writer is alive;
3. create ``PARENT/.TARGET.tmp-PID-RANDOM`` (same parent: renames are atomic) and yield it;
4. hash every file written (size + sha256, each file fsynced) and write ``manifest.json`` last;
5. swap the folder into place and delete the previous one.

Crash windows (each leaves the old complete folder or the new complete folder under TARGET):

* before step 5: TARGET is untouched (old folder or nothing); the temporary folder is garbage
  and is swept by the next write;
* step 5 with ``renameat2(RENAME_EXCHANGE)`` (Linux): one system call exchanges the two names,
  so TARGET holds the old or the new folder, never neither; the old one then sits under the
  temporary name until it is deleted (or swept);
* step 5 without it (other systems, file systems without exchange): TARGET is renamed to
  ``.TARGET.old-…`` and the new folder renamed in. Between the two renames TARGET is missing:
  loaders refuse it ("missing") and the next write renames the old folder back before
  anything else, so the old complete folder is restored.

Reading (:func:`verify_artifact`): the manifest must exist, parse, be of this artifact format
and kind, and list exactly the files present, each with its recorded size and sha256. Hashing
is always full (sha256 runs at about 1 GB/s here, see docs/architecture.md "Artifacts"); a file
verified once in a process is not hashed again while its (inode, size, mtime, ctime) is
unchanged.

Testing hook: :func:`boundary` marks the points between file writes. When the environment
variable ``SHOPSIM_KILL_AT`` names a boundary the process SIGKILLs itself there; when
``SHOPSIM_PAUSE_AT=NAME:PATH`` names it, the process creates ``PATH.reached`` and waits until
``PATH`` exists. Both are deterministic (no timing) and exist for tests/test_kill.py only.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from shopsim import __version__
from shopsim.errors import ShopsimError

FORMAT_VERSION = 1
"""Version of the artifact folder format (manifest layout); bumped when it changes."""
MANIFEST = "manifest.json"

BOUNDARIES: dict[str, tuple[str, ...]] = {
    "prepare": (
        "prepare:tables-written",
        "prepare:report-written",
        "prepare:manifest-written",
        "prepare:swapped",
    ),
    "encode": (
        "encode:cache-carried",
        "encode:bundle-written",
        "encode:eval-written",
        "encode:manifest-written",
        "encode:swapped",
    ),
    "fit": (
        "fit:model-written",
        "fit:fidelity-written",
        "fit:manifest-written",
        "fit:swapped",
    ),
    "run": (
        "run:config-written",
        "run:data-done",
        "run:encoder-done",
        "run:simulator-done",
        "run:results-written",
    ),
    "checkpoint": ("checkpoint:manifest-written", "checkpoint:swapped"),
    "train": ("train:checkpoint-written", "train:model-saved"),
    "evaluate": ("evaluate:policy-done",),
}
"""Every named write boundary of every stage (in order), for :func:`boundary` and the kill test."""
_ALL_BOUNDARIES = frozenset(b for names in BOUNDARIES.values() for b in names)

# (path, inode, size, mtime_ns, ctime_ns) -> sha256 of files already verified in this process
_VERIFIED: dict[tuple[str, int, int, int, int], str] = {}


def boundary(name: str) -> None:
    """A named point between two file writes (testing hook, see the module docstring)."""
    if name not in _ALL_BOUNDARIES:  # pragma: no cover - a programming error
        raise AssertionError(f"unknown write boundary {name!r}; add it to BOUNDARIES")
    if os.environ.get("SHOPSIM_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get("SHOPSIM_PAUSE_AT", "")
    if pause.startswith(f"{name}:"):
        release = Path(pause[len(name) + 1 :])
        Path(f"{release}.reached").touch()
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


# --------------------------------------------------------------------------- single files
@contextmanager
def atomic_file(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` atomically when the block ends
    (a temporary file beside it, fsync, ``os.replace``); on an exception ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, obj: Any, **dumps: Any) -> None:
    """Write ``json.dumps(obj, **dumps)`` to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    write_text_atomic(path, json.dumps(obj, **dumps))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- locks
_HELD: set[str] = set()
"""Lock files this process holds (see :func:`locked`)."""


@contextmanager
def locked(target: Path | str) -> Iterator[Path]:
    """Hold the exclusive write lock of folder ``target`` (``PARENT/.NAME.lock``).

    :raises ShopsimError: at once, when another process holds it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    key = str(lock_path.resolve())
    if key in _HELD:  # re-entrant within a process: a stage holds it for its whole work, the
        yield lock_path  # writer inside it again (flock would refuse a second descriptor)
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShopsimError(
                f"{target}: another shopsim process is writing this folder (lock {lock_path}); "
                "wait for it to finish or choose another --out"
            ) from None
        _HELD.add(key)
        try:
            yield lock_path
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)  # closing releases the lock


# --------------------------------------------------------------------------- writing
@contextmanager
def write_artifact(
    target: Path | str,
    kind: str,
    *,
    stage: str,
    replaces: Iterable[str] = (),
    inputs: Any = None,
    carry: Iterable[str] = (),
) -> Iterator[Path]:
    """Write the artifact folder ``target`` of ``kind``: yields an empty temporary folder next
    to it; on success writes ``manifest.json`` last and swaps the folder into place (module
    docstring). On an exception the temporary folder is removed and ``target`` is untouched.

    :param stage: names the generic boundaries (``STAGE:manifest-written``, ``STAGE:swapped``).
    :param replaces: glob patterns of the files and folders an older shopsim wrote here without
        a manifest; a folder holding only those (or a manifest) may be replaced, any other
        non-empty folder is refused (it may be the user's own files).
    :param inputs: what the artifact was made from (JSON-ready), recorded in the manifest.
    :param carry: names of files/folders of a verified current ``target`` to copy into the
        temporary folder before it is yielded (caches), as hard links when possible.
    :raises ShopsimError: the target is not a folder, holds foreign files, or is locked.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ShopsimError(f"{target}: exists and is not a directory; choose another --out")
    with locked(target):
        _recover(target)
        _sweep(target)
        _check_replaceable(target, kind, replaces)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            _carry(target, tmp, carry)
            yield tmp
            write_json_atomic(tmp / MANIFEST, _manifest(tmp, kind, inputs), indent=2, sort_keys=True)
            boundary(f"{stage}:manifest-written")
            old = _swap(tmp, target)
            boundary(f"{stage}:swapped")
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _manifest(folder: Path, kind: str, inputs: Any) -> dict[str, Any]:
    files: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            raise AssertionError(f"{p}: artifact folders hold regular files only")  # pragma: no cover
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        digest = _hash(p, fsync=True)
        files[rel] = {"size": p.stat().st_size, "sha256": digest}
    return {
        "shopsim_artifact": FORMAT_VERSION,
        "kind": kind,
        "shopsim_version": __version__,
        "inputs": inputs,
        "files": files,
    }


def _hash(path: Path, *, fsync: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return h.hexdigest()


def _swap(tmp: Path, target: Path) -> Path | None:
    """Put ``tmp`` at ``target``; return where the previous folder now is (to delete), if any."""
    _fsync_dir(tmp)
    if not target.exists():
        os.rename(tmp, target)
        _fsync_dir(target.parent)
        return None
    if _exchange(tmp, target):
        _fsync_dir(target.parent)
        return tmp
    old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(target, old)
    os.rename(tmp, target)
    _fsync_dir(target.parent)
    return old


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2``); False when unsupported here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    res = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # pragma: no cover - file system
        return False
    raise OSError(err, os.strerror(err), str(b))  # pragma: no cover


def tidy(target: Path | str) -> None:
    """Recover and sweep ``target`` as a write would (undo an interrupted fallback swap, remove
    dead writers' temporary and old folders), for stages about to *reuse* a folder without
    writing it. Does nothing while another process holds the folder's lock."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    try:
        with locked(target):
            _recover(target)
            _sweep(target)
    except ShopsimError:  # another writer is at work; it sweeps when it is done
        return


def _recover(target: Path) -> None:
    """Undo a swap interrupted between its two renames (fallback path): the old folder back."""
    if target.exists():
        return
    olds = sorted(target.parent.glob(f".{target.name}.old-*"))
    if olds:
        os.rename(olds[-1], target)


def _sweep(target: Path) -> None:
    """Remove what dead writers left: temporary and old folders, ``shopsim-prep-*`` work folders."""
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for p in target.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)
    if target.is_dir():
        for p in target.glob("shopsim-prep-*"):
            shutil.rmtree(p, ignore_errors=True)


def _check_replaceable(target: Path, kind: str, replaces: Iterable[str]) -> None:
    if not target.is_dir():
        return
    names = [p.name for p in target.iterdir()]
    if not names:
        return
    if MANIFEST in names:
        try:
            manifest = json.loads((target / MANIFEST).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            manifest = None
        got = manifest.get("kind") if isinstance(manifest, dict) and "shopsim_artifact" in manifest else None
        if got == kind:
            return
        if got is not None:
            raise ShopsimError(
                f"{target}: holds a shopsim {got} folder, not a {kind} folder; choose another --out"
            )
    patterns = list(replaces)
    foreign = [n for n in names if not any(fnmatch.fnmatch(n, pat) for pat in patterns)]
    if foreign:
        raise ShopsimError(
            f"{target}: holds files that are not a shopsim {kind} folder (e.g. {sorted(foreign)[0]}); "
            "choose another --out or empty it"
        )


def _carry(target: Path, tmp: Path, carry: Iterable[str]) -> None:
    names = list(carry)
    if not names or not (target / MANIFEST).exists():
        return
    try:
        manifest = json.loads((target / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for rel, meta in files.items():
        if rel.split("/")[0] not in names:
            continue
        src, dst = target / rel, tmp / rel
        try:
            if not src.is_file() or src.stat().st_size != meta["size"] or _hash(src) != meta["sha256"]:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)  # writers replace files (never write in place), so sharing is safe
            except OSError:
                shutil.copy2(src, dst)
        except (OSError, KeyError, TypeError):
            continue


# --------------------------------------------------------------------------- reading
def verify_artifact(folder: Path | str, kind: str, rebuild: str) -> dict[str, Any]:
    """The manifest of artifact folder ``folder`` after checking it is complete and intact.

    :param rebuild: the command that rebuilds the folder (named in the error).
    :raises ShopsimError: one line naming the folder, what is wrong and ``rebuild``.
    """
    d = Path(folder)

    def refuse(problem: str) -> ShopsimError:
        return ShopsimError(f"{d}: {problem}; rebuild it with `{rebuild}`")

    if not d.is_dir():
        olds = list(d.parent.glob(f".{d.name}.old-*")) if d.parent.is_dir() else []
        if olds:
            raise refuse("missing (a write was interrupted; the next write restores the previous folder)")
        raise refuse("missing" if not d.exists() else "not a directory")
    mpath = d / MANIFEST
    if not mpath.is_file():
        empty = not any(d.iterdir())
        raise refuse("empty" if empty else "incomplete or written by an older shopsim (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise refuse("manifest.json is corrupt") from None
    if isinstance(manifest, dict) and "shopsim_artifact" not in manifest:
        raise refuse("written by an older shopsim (manifest.json lists no verified files)")
    try:
        files = manifest["files"]
        fmt, got_kind = manifest["shopsim_artifact"], manifest["kind"]
        if not isinstance(files, dict):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise refuse("manifest.json is corrupt") from None
    if fmt != FORMAT_VERSION:
        raise refuse(f"written by shopsim artifact format {fmt}, this shopsim reads format {FORMAT_VERSION}")
    if got_kind != kind:
        raise refuse(f"is a {got_kind} folder, expected a {kind} folder")
    present = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() or p.is_symlink()}
    present.discard(MANIFEST)
    extra = sorted(present - set(files))
    if extra:
        raise refuse(f"file {extra[0]} is not in manifest.json (mixed with another write)")
    for rel, meta in sorted(files.items()):
        p = d / rel
        try:
            st = p.lstat()
            size, digest = int(meta["size"]), str(meta["sha256"])
        except FileNotFoundError:
            raise refuse(f"file {rel} is missing (incomplete)") from None
        except (OSError, KeyError, TypeError, ValueError):
            raise refuse("manifest.json is corrupt") from None
        if p.is_symlink() or not p.is_file():
            raise refuse(f"file {rel} is not a regular file")
        if st.st_size != size:
            raise refuse(f"file {rel} changed or truncated ({st.st_size:,} bytes, manifest says {size:,})")
        key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if _VERIFIED.get(key) != digest:
            if _hash(p) != digest:
                raise refuse(f"file {rel} changed (sha256 differs from manifest.json)")
            _VERIFIED[key] = digest
    return dict(manifest)


__all__ = [
    "BOUNDARIES",
    "FORMAT_VERSION",
    "MANIFEST",
    "atomic_file",
    "boundary",
    "locked",
    "verify_artifact",
    "write_artifact",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
