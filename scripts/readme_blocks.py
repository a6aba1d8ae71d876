"""Regenerate (``--write``) or check (``--check``) the README's result blocks from the code.

Every number and table of the README lives in a block between two markers::

    <!-- shopsim:begin NAME kind=KIND source=PATH commit=SHA config=HASH -->
    … generated text: never edit by hand …
    <!-- shopsim:end NAME -->

``NAME`` names the block (letters, digits, ``-_.``); ``source`` is a folder, relative to the
README's folder (or absolute); ``kind`` says what is rendered from it (default: ``headroom`` when
the folder holds headroom.json, else ``results``):

* ``results``  — the run's results table (``results_markdown`` of DIR/results.json);
* ``headroom`` — the RL-headroom table (``headroom_markdown`` of DIR/headroom.json);
* ``data``     — the prepare summary (``format_summary`` of DIR/data/report.json or DIR/report.json);
* ``fidelity`` — the simulator's fidelity summary (DIR/simulator/fidelity.json);
* ``encoder``  — the encoder's next-item table (DIR/encoder/eval.json);
* ``ope_engines`` — serial vs Ray wall time of one ``shopsim ope validate`` and whether their
  findings are identical (DIR/serial/ and DIR/ray/ope_validation.json);
* ``timing``   — wall times of the stages and of the agents stage's steps (DIR/timing.json;
  varies run to run, so never inside a block that CI compares).

``--write`` rewrites every block (or the named ones) in place, atomically, and records in its
begin marker ``commit`` (the source's recorded commit, else the README repository's HEAD, 12
hex) and ``config`` (sha256 of the source's resolved config.yaml, first 12 hex; a headroom
folder: headroom.json's hash over its runs' configs). ``--check NAME...`` regenerates the named
blocks (all without names) and exits 1 with a one-line summary per differing block when the text
or the config hash differs from the README; ``commit`` is not compared (CI runs on a newer one).
``--source NAME=DIR`` renders a block from another folder (CI: a fresh ``shopsim quickstart``).

Usage::

    python scripts/readme_blocks.py --write                      # every block from its source
    python scripts/readme_blocks.py --check quickstart --source quickstart=/tmp/qs
    python scripts/readme_blocks.py --list

Exit codes: 0 fine, 1 a checked block differs, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopsim.artifacts import write_text_atomic
from shopsim.errors import ShopsimError

NAME = r"[A-Za-z0-9_.-]+"
BEGIN = re.compile(rf"^<!-- shopsim:begin (?P<name>{NAME})(?P<attrs>(?: [a-z]+=\S*)*) -->$")
END = re.compile(rf"^<!-- shopsim:end (?P<name>{NAME}) -->$")
ATTR_ORDER = ("kind", "source", "commit", "config")
"""Order of the attributes in a begin marker written by --write (others follow, unchanged)."""


@dataclass
class Block:
    """One generated block of the README: its name, marker attributes and current text."""

    name: str
    attrs: dict[str, str]
    begin: int
    """index of the begin marker's line"""
    end: int
    """index of the end marker's line"""
    body: str


def parse(text: str, where: str = "README.md") -> list[Block]:
    """The blocks of ``text`` in order; malformed, nested, unclosed or duplicate markers raise."""
    lines = text.splitlines()
    blocks: list[Block] = []
    open_: tuple[str, dict[str, str], int] | None = None
    for i, line in enumerate(lines):
        if "shopsim:begin" not in line and "shopsim:end" not in line:
            continue
        b, e = BEGIN.match(line), END.match(line)
        if b is None and e is None:
            raise ShopsimError(
                f"{where}:{i + 1}: malformed marker {line.strip()!r}; write "
                "'<!-- shopsim:begin NAME source=DIR -->' … '<!-- shopsim:end NAME -->'"
            )
        if b is not None:
            if open_ is not None:
                raise ShopsimError(
                    f"{where}:{i + 1}: block {b['name']!r} begins inside block {open_[0]!r}; "
                    f"close it first with '<!-- shopsim:end {open_[0]} -->'"
                )
            attrs = dict(a.split("=", 1) for a in b["attrs"].split())
            open_ = (b["name"], attrs, i)
        elif e is not None:
            if open_ is None or open_[0] != e["name"]:
                raise ShopsimError(
                    f"{where}:{i + 1}: end of block {e['name']!r} without its begin marker; "
                    f"add '<!-- shopsim:begin {e['name']} source=DIR -->' above it"
                )
            name, attrs, start = open_
            if any(bl.name == name for bl in blocks):
                raise ShopsimError(f"{where}:{start + 1}: a second block named {name!r}; rename one")
            blocks.append(Block(name, attrs, start, i, "\n".join(lines[start + 1 : i])))
            open_ = None
    if open_ is not None:
        raise ShopsimError(
            f"{where}:{open_[2] + 1}: block {open_[0]!r} is never closed; "
            f"add '<!-- shopsim:end {open_[0]} -->'"
        )
    return blocks


def begin_marker(name: str, attrs: dict[str, str]) -> str:
    """The begin marker line of a block (attributes in :data:`ATTR_ORDER`, then the rest)."""
    keys = [k for k in ATTR_ORDER if k in attrs] + sorted(k for k in attrs if k not in ATTR_ORDER)
    for k in keys:
        if not attrs[k] or any(c.isspace() for c in attrs[k]) or "-->" in attrs[k]:
            raise ShopsimError(
                f"block {name!r}: attribute {k}={attrs[k]!r} is empty or holds a space; change it"
            )
    return f"<!-- shopsim:begin {name}{''.join(f' {k}={attrs[k]}' for k in keys)} -->"


def replace(text: str, block: Block, body: str, attrs: dict[str, str]) -> str:
    """``text`` with ``block``'s marker attributes and body replaced (other lines untouched)."""
    lines = text.splitlines()
    new = [begin_marker(block.name, attrs), *body.rstrip("\n").split("\n"), lines[block.end]]
    out = "\n".join([*lines[: block.begin], *new, *lines[block.end + 1 :]])
    return out + ("\n" if text.endswith("\n") else "")


# ---------------------------------------------------------------------- rendering
def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ShopsimError(f"{path}: no such file; run the command that writes it or fix the block's source=")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ShopsimError(f"{path}: not readable JSON ({exc}); rerun the command that writes it") from exc
    if not isinstance(obj, dict):
        raise ShopsimError(f"{path}: expected a JSON object; rerun the command that writes it")
    return obj


def _results(src: Path) -> str:
    from shopsim.experiments.reporting import results_markdown

    return results_markdown(_json(src / "results.json"))


def _headroom(src: Path) -> str:
    from shopsim.experiments.headroom import headroom_markdown

    return headroom_markdown(_json(src / "headroom.json"))


def _data(src: Path) -> str:
    from shopsim.data import format_summary

    path = src / "data" / "report.json" if (src / "data" / "report.json").exists() else src / "report.json"
    report = _json(path)
    # the source's file name only: its folder differs from machine to machine
    report["source"] = Path(str(report.get("source", ""))).name
    return "```\n" + format_summary(report).rstrip("\n") + "\n```"


def _fidelity(src: Path) -> str:
    from shopsim.envs.fitting.report import fidelity_markdown

    path = src / "simulator" / "fidelity.json" if (src / "simulator").is_dir() else src / "fidelity.json"
    return fidelity_markdown(_json(path))


def _encoder(src: Path) -> str:
    from shopsim.experiments.encode import eval_markdown

    path = src / "encoder" / "eval.json" if (src / "encoder").is_dir() else src / "eval.json"
    return eval_markdown(_json(path))


def _timing(src: Path) -> str:
    t = _json(src / "timing.json")
    stages = t.get("stages") if isinstance(t.get("stages"), dict) else {}
    rows = [f"| stage: {k} | {float(v):,.1f} |" for k, v in stages.items() if k != "total"]
    if "total" in stages:
        rows.append(f"| **whole run** | **{float(stages['total']):,.1f}** |")
    steps = {k: float(v) for k, v in t.items() if isinstance(v, int | float)}
    rows += [f"| agents: {k} | {v:,.1f} |" for k, v in steps.items()]
    return "\n".join(["| stage or step | seconds |", "|---|---|", *rows])


def _ope_engines(src: Path) -> str:
    from shopsim.experiments.ope_validate import engines_markdown

    return engines_markdown(
        _json(src / "serial" / "ope_validation.json"), _json(src / "ray" / "ope_validation.json")
    )


RENDERERS: dict[str, Callable[[Path], str]] = {
    "results": _results,
    "headroom": _headroom,
    "data": _data,
    "fidelity": _fidelity,
    "encoder": _encoder,
    "timing": _timing,
    "ope_engines": _ope_engines,
}
"""What each ``kind=`` renders (from the source folder)."""


def kind_of(block: Block, src: Path) -> str:
    """The block's ``kind`` (given, or inferred from what the source folder holds)."""
    kind = block.attrs.get("kind") or ("headroom" if (src / "headroom.json").exists() else "results")
    if kind not in RENDERERS:
        raise ShopsimError(f"block {block.name!r}: unknown kind={kind}; use one of {', '.join(RENDERERS)}")
    return kind


def config_hash(src: Path) -> str:
    """sha256 of the source's resolved config.yaml (first 12 hex); a headroom folder: its
    headroom.json ``config_hash``; "none" when the source has neither."""
    if (src / "config.yaml").is_file():
        return hashlib.sha256((src / "config.yaml").read_bytes()).hexdigest()[:12]
    if (src / "headroom.json").is_file():
        return str(_json(src / "headroom.json").get("config_hash") or "none")
    return "none"


def source_commit(src: Path, repo: Path) -> str:
    """The commit the source was produced at when it records one (``commit`` in results.json,
    headroom.json or provenance.json), else the repository's HEAD (12 hex; "unknown" outside git)."""
    for name in ("provenance.json", "results.json", "headroom.json"):
        p = src / name
        if p.is_file():
            try:
                c = json.loads(p.read_text()).get("commit")
            except (OSError, UnicodeDecodeError, ValueError, AttributeError):
                c = None
            if isinstance(c, str) and c:
                return c[:12]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()[:12] or "unknown"


def _source(block: Block, readme: Path, overrides: dict[str, Path]) -> Path:
    if block.name in overrides:
        src = overrides[block.name]
    elif "source" in block.attrs:
        src = Path(block.attrs["source"])
        src = src if src.is_absolute() else readme.parent / src
    else:
        raise ShopsimError(f"{readme}: block {block.name!r} has no source=DIR; add it to its begin marker")
    if not src.is_dir():
        raise ShopsimError(
            f"{readme}: block {block.name!r}: source {src} is not a folder; produce it or fix source="
        )
    return src


def render(
    block: Block, readme: Path, overrides: dict[str, Path] | None = None
) -> tuple[str, dict[str, str]]:
    """The regenerated body of ``block`` and its marker attributes (commit and config hash)."""
    src = _source(block, readme, overrides or {})
    kind = kind_of(block, src)
    body = RENDERERS[kind](src).rstrip("\n")
    attrs = {
        **block.attrs,
        "kind": kind,
        "commit": source_commit(src, readme.parent),
        "config": config_hash(src),
    }
    return body, attrs


def _pick(blocks: list[Block], names: Sequence[str], readme: Path) -> list[Block]:
    known = {b.name for b in blocks}
    missing = [n for n in names if n not in known]
    if missing:
        raise ShopsimError(
            f"{readme}: no block named {', '.join(map(repr, missing))} "
            f"(blocks: {', '.join(sorted(known)) or 'none'})"
        )
    return [b for b in blocks if not names or b.name in names]


def write(readme: Path, names: Sequence[str] = (), overrides: dict[str, Path] | None = None) -> list[str]:
    """Regenerate the named blocks (all when empty) and rewrite the README atomically; returns the
    names of the blocks whose text or attributes changed."""
    text = readme.read_text()
    changed = []
    # render everything first: a bad source leaves the README untouched
    todo = [(b, *render(b, readme, overrides)) for b in _pick(parse(text, str(readme)), names, readme)]
    for b, body, attrs in reversed(todo):  # from the end, so earlier line indices stay valid
        if body != b.body or attrs != b.attrs:
            changed.append(b.name)
        text = replace(text, b, body, attrs)
    if changed:
        write_text_atomic(readme, text)
    return changed[::-1]


def _first_difference(a: str, b: str) -> str:
    """How two block texts differ, in one line: the count of differing lines and, around the first
    differing character, both versions."""
    al, bl = a.split("\n"), b.split("\n")
    n_diff = sum(x != y for x, y in zip(al, bl, strict=False)) + abs(len(al) - len(bl))
    i = next((k for k, (x, y) in enumerate(zip(al, bl, strict=False)) if x != y), min(len(al), len(bl)))
    x = al[i] if i < len(al) else "<end of block>"
    y = bl[i] if i < len(bl) else "<end of block>"
    c = next((k for k, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    lo = max(0, c - 20)
    cut = "…" if lo else ""
    return (
        f"{n_diff} of {max(len(al), len(bl))} lines differ; first at block line {i + 1}, column {c + 1}: "
        f"README {cut + x[lo : c + 40]!r} vs regenerated {cut + y[lo : c + 40]!r}"
    )


def check(readme: Path, names: Sequence[str] = (), overrides: dict[str, Path] | None = None) -> list[str]:
    """One line per named block (all when empty) whose regenerated text or config hash differs
    from the README's; empty when all match."""
    text = readme.read_text()
    problems = []
    for b in _pick(parse(text, str(readme)), names, readme):
        body, attrs = render(b, readme, overrides)
        why = []
        if body != b.body:
            why.append(_first_difference(b.body, body))
        if b.attrs.get("config") != attrs["config"]:
            why.append(
                f"config hash {b.attrs.get('config', 'missing')} in README vs {attrs['config']} of the source"
            )
        if why:
            problems.append(f"{readme.name} block {b.name!r} is stale: {'; '.join(why)}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module docstring)."""
    p = argparse.ArgumentParser(
        prog="readme_blocks.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", nargs="*", metavar="NAME", help="regenerate these blocks (all without names)")
    g.add_argument(
        "--check", nargs="*", metavar="NAME", help="exit 1 when these blocks (all without names) are stale"
    )
    g.add_argument("--list", action="store_true", help="list the blocks and their markers")
    p.add_argument("--source", action="append", default=[], metavar="NAME=DIR", help="render NAME from DIR")
    args = p.parse_args(argv)
    try:
        overrides = {}
        for s in args.source:
            name, sep, d = s.partition("=")
            if not sep or not name or not d:
                raise ShopsimError(f"--source {s!r}: expected NAME=DIR, e.g. quickstart=/tmp/qs")
            overrides[name] = Path(d)
        if not args.readme.is_file():
            raise ShopsimError(f"{args.readme}: no such file; pass --readme PATH")
        if args.list:
            for b in parse(args.readme.read_text(), str(args.readme)):
                print(begin_marker(b.name, b.attrs))
            return 0
        if args.write is not None:
            changed = write(args.readme, args.write, overrides)
            print(
                f"rewrote {', '.join(changed)} in {args.readme}"
                if changed
                else f"{args.readme}: blocks up to date"
            )
            return 0
        problems = check(args.readme, args.check, overrides)
    except ShopsimError as exc:
        print(f"readme_blocks: error: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
