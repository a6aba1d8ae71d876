"""Checks of the notebooks that run with them (``make test-notebooks``), not in the default suite.

* the committed ``.ipynb`` files hold exactly the cells of their sources and have outputs;
* a parameter out of range stops the notebook in its check cell with one ``ShopsimError`` line,
  before any expensive work (only the cells up to the check cell are run here).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_committed_notebooks_match_their_sources() -> None:
    assert build.check(list(build.NOTEBOOKS)) == 0


def _check_cells(name: str) -> list:
    """The cells up to and including the parameter check (the first code cell that raises)."""
    cells = build.build(name).cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    check = next(i for i in code if "raise ShopsimError" in cells[i].source)
    return cells[: check + 1]


def _run(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SHOPSIM_NB_BUDGET", "SHOPSIM_NB_STEPS", "SHOPSIM_NB_EPISODES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = build.build(name)
    nb.cells = _check_cells(name)
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()


# One case per notebook (each starts a kernel, ~5 s): a range, a budget name, a number's syntax.
BAD = [
    ("reward_tuning", {"SHOPSIM_NB_STEPS": "5"}, "SHOPSIM_NB_STEPS=5: PPO steps must be in"),
    (
        "off_policy_evaluation",
        {"SHOPSIM_NB_EPISODES": "10"},
        "SHOPSIM_NB_EPISODES=10: logged pages must be in",
    ),
    ("your_own_logs", {"SHOPSIM_NB_EPISODES": "many"}, "SHOPSIM_NB_EPISODES='many': expected a whole number"),
]


@pytest.mark.parametrize(("name", "env", "message"), BAD)
def test_bad_parameter_stops_in_the_check_cell(
    name: str, env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CellExecutionError) as err:
        _run(name, env, monkeypatch)
    text = ANSI.sub("", str(err.value))
    assert f"ShopsimError: {message}" in text
