"""docs/ matches the code: the generated config reference is committed as generated, and the
documentation names no path outside the repository."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shopsim_docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_doc_matches_the_code() -> None:
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == _generator().config_md(), "docs/config.md is stale: run `python docs/generate.py`"


def test_docs_link_nothing_outside_the_repository() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        assert "../shared" not in text, path
        assert "DESIGN.md" not in text, path
        for target in re.findall(r"\]\(([^)#]+)", text):
            if not target.startswith(("http://", "https://")):
                assert (path.parent / target).exists(), f"{path}: broken link {target}"
