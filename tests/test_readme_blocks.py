"""scripts/readme_blocks.py: the README's generated blocks are parsed, rewritten in place and
checked against their sources (a run folder built from the schema fixtures)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from shopsim.errors import ShopsimError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "artifacts"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "shopsim_readme_blocks", ROOT / "scripts" / "readme_blocks.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rb = _script()

README = """\
# Shop

Some prose that stays.

<!-- shopsim:begin qs source=run -->
old table
<!-- shopsim:end qs -->

More prose.

<!-- shopsim:begin qs-times kind=timing source=run commit=0 config=0 -->
<!-- shopsim:end qs-times -->
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A README beside a run folder with results.json (recording its commit), config.yaml,
    timing.json and data/report.json."""
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    results = json.loads((FIXTURES / "results.json").read_text())
    results["commit"] = "abcdef1234567890abcdef"
    (run / "results.json").write_text(json.dumps(results))
    (run / "config.yaml").write_text("seed: 0\nreward:\n  click: 1.0\n")
    (run / "timing.json").write_text(
        '{"train_ppo": 30.25, "evaluate": 12.0, "stages": {"prepare": 3.0, "agents": 42.3, "total": 45.5}}\n'
    )
    shutil.copy(FIXTURES / "report.json", run / "data" / "report.json")
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def test_parse_blocks_and_attributes() -> None:
    blocks = rb.parse(README)
    assert [b.name for b in blocks] == ["qs", "qs-times"]
    assert blocks[0].attrs == {"source": "run"}
    assert blocks[0].body == "old table"
    assert blocks[1].attrs == {"kind": "timing", "source": "run", "commit": "0", "config": "0"}
    assert blocks[1].body == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- shopsim:begin a source=x -->\n<!-- shopsim:begin b source=x -->\n", "begins inside block 'a'"),
        ("<!-- shopsim:begin a source=x -->\ntext\n", "README.md:1: block 'a' is never closed"),
        ("text\n<!-- shopsim:end a -->\n", "README.md:2: end of block 'a' without its begin"),
        ("<!-- shopsim:begin a source -->\n", "malformed marker"),
        (
            "<!-- shopsim:begin a -->\n<!-- shopsim:end a -->\n" * 2,
            "a second block named 'a'",
        ),
    ],
)
def test_bad_markers_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ShopsimError, match=message):
        rb.parse(text)


def test_write_fills_blocks_and_records_commit_and_config(repo: Path) -> None:
    readme = repo / "README.md"
    assert rb.write(readme) == ["qs", "qs-times"]
    text = readme.read_text()
    config = hashlib.sha256((repo / "run" / "config.yaml").read_bytes()).hexdigest()[:12]
    assert f"<!-- shopsim:begin qs kind=results source=run commit=abcdef123456 config={config} -->" in text
    assert (
        f"<!-- shopsim:begin qs-times kind=timing source=run commit=abcdef123456 config={config} -->" in text
    )
    assert "old table" not in text
    assert "Policies on 100 test sessions" in text  # the results table of the fixture
    assert "| agents: train_ppo | 30.2 |" in text and "| **whole run** | **45.5** |" in text  # noqa: PT018
    assert "| stage: prepare | 3.0 |" in text
    assert text.startswith("# Shop\n\nSome prose that stays.\n\n") and "\nMore prose.\n" in text  # noqa: PT018
    assert rb.parse(text)[0].body == rb.render(rb.parse(text)[0], readme)[0]
    assert rb.write(readme) == []  # idempotent
    assert rb.check(readme) == []
    assert rb.main(["--readme", str(readme), "--check", "qs"]) == 0


def test_check_reports_a_stale_block_in_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = repo / "README.md"
    rb.write(readme)
    text = readme.read_text()
    edited = text.replace("| agents: evaluate | 12.0 |", "| agents: evaluate | 11.0 |")
    assert edited != text
    readme.write_text(edited)
    assert rb.check(readme, ["qs"]) == []  # only the named block is checked
    (problem,) = rb.check(readme)
    assert "block 'qs-times' is stale: 1 of" in problem
    assert "README '…agents: evaluate | 11.0 |'" in problem  # the line around the first change
    assert "regenerated '…agents: evaluate | 12.0 |'" in problem
    assert rb.main(["--readme", str(readme), "--check"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    # a source with another config: stale by its hash even where the text agrees
    (repo / "run" / "config.yaml").write_text("seed: 1\nreward:\n  click: 1.0\n")
    (problem,) = rb.check(readme, ["qs"])
    assert "config hash" in problem


def test_source_override_and_bad_input_leave_the_readme_alone(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = repo / "README.md"
    rb.write(readme)
    fresh = repo / "fresh"
    shutil.copytree(repo / "run", fresh)
    assert rb.main(["--readme", str(readme), "--check", "qs", "--source", f"qs={fresh}"]) == 0
    (fresh / "timing.json").write_text('{"train_ppo": 99.0}\n')
    assert rb.main(["--readme", str(readme), "--check", "qs-times", "--source", f"qs-times={fresh}"]) == 1
    before = readme.read_bytes()
    readme.write_text(
        before.decode() + "\n<!-- shopsim:begin gone source=nowhere -->\n<!-- shopsim:end gone -->\n"
    )
    before = readme.read_bytes()
    capsys.readouterr()
    assert rb.main(["--readme", str(readme), "--write"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "block 'gone': source" in err
    assert readme.read_bytes() == before  # nothing rendered, nothing written
    assert rb.main(["--readme", str(readme), "--check", "nope"]) == 2


def test_the_readme_blocks_are_what_their_committed_sources_render() -> None:
    # every number and table of the README comes from a committed source folder (benchmarks/readme)
    readme = ROOT / "README.md"
    blocks = rb.parse(readme.read_text())
    assert {b.name for b in blocks} >= {"quickstart", "headroom", "wall-times", "prepare-output"}
    assert rb.check(readme) == []
