"""Build the notebooks of this folder from their sources in ``notebooks/src/*.py``.

The sources are Python files in the "percent" format (the one Jupytext and VS Code read):
``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines are comments.
They are what reviewers diff and ruff lints; the ``.ipynb`` files next to this script are what
readers open, committed **with their outputs** (written by ``--execute``).

    python notebooks/build.py --execute            # rebuild and run every notebook ("full" budgets)
    python notebooks/build.py --execute reward_tuning
    python notebooks/build.py --check              # fail if a committed .ipynb is not its source

``--execute`` runs each notebook top to bottom in a fresh kernel of this interpreter (nbclient)
and writes it only when every cell succeeded. CI runs the committed notebooks with tiny budgets
instead (``SHOPSIM_NB_BUDGET=tiny pytest --nbmake notebooks/``), which never writes them back.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
NOTEBOOKS = ("reward_tuning", "off_policy_evaluation", "your_own_logs")
KERNEL = {"display_name": "Python 3 (shopsim)", "language": "python", "name": "python3"}


def cells_of(source: str) -> list[nbformat.NotebookNode]:
    """Split a percent-format source into notebook cells (text before the first ``# %%`` is the
    file's own header and is not a cell)."""
    cells: list[nbformat.NotebookNode] = []
    kind: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if kind is None:
            return
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines)
            cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            cells.append(nbformat.v4.new_code_cell("\n".join(lines)))

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind = "markdown" if "[markdown]" in line else "code"
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(name: str) -> nbformat.NotebookNode:
    """The notebook of ``src/NAME.py``, without outputs."""
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_of((SRC / f"{name}.py").read_text(encoding="utf-8"))
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def check(names: list[str]) -> int:
    """0 when every committed notebook holds exactly its source's cells and has outputs."""
    bad = 0
    for name in names:
        path = HERE / f"{name}.ipynb"
        if not path.is_file():
            print(f"{path}: missing; run python notebooks/build.py --execute {name}", file=sys.stderr)
            bad += 1
            continue
        committed = nbformat.read(path, as_version=4)
        if _sources(committed) != _sources(build(name)):
            print(f"{path}: differs from src/{name}.py; run python notebooks/build.py --execute {name}",
                  file=sys.stderr)  # fmt: skip
            bad += 1
        elif not any(c.get("outputs") for c in committed.cells if c.cell_type == "code"):
            print(f"{path}: has no outputs; run python notebooks/build.py --execute {name}", file=sys.stderr)
            bad += 1
    if not bad:
        print(f"notebooks match their sources: {', '.join(names)}")
    return 1 if bad else 0


def execute(name: str, timeout: int) -> float:
    """Run the notebook in a fresh kernel (cwd = this folder) and write it with its outputs."""
    from nbclient import NotebookClient

    nb = build(name)
    t0 = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    ).execute()
    seconds = time.perf_counter() - t0
    nbformat.validate(nb)
    nbformat.write(nb, HERE / f"{name}.ipynb")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"notebooks (default: all of {', '.join(NOTEBOOKS)})")
    p.add_argument("--execute", action="store_true", help="run each notebook and write it with outputs")
    p.add_argument("--check", action="store_true", help="check the committed notebooks against the sources")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    args = p.parse_args(argv)
    names = args.names or list(NOTEBOOKS)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        p.error(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(NOTEBOOKS)}")
    if args.check:
        return check(names)
    if not args.execute:
        p.error("nothing to do: pass --execute (writes the notebooks with outputs) or --check")
    for name in names:
        seconds = execute(name, args.timeout)
        print(f"{name}.ipynb: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
