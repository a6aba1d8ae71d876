"""prepare inside a Jupyter kernel that lacks ipywidgets.

There DuckDB refuses every progress-bar setting, even ``SET enable_progress_bar = false``
("Could not change the progress bar setting because: 'required package 'ipywidgets' is
missing…'"). The test reproduces the real condition in a child Python: ``__main__`` without a
``__file__`` (as in a kernel), an IPython whose shell config names ``IPKernelApp`` (how DuckDB
detects Jupyter) and ipywidgets blocked from import, all before duckdb is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, sys, types

class ZMQInteractiveShell:
    def __init__(self):
        self.config = {"IPKernelApp": {}}

_shell = ZMQInteractiveShell()
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: _shell
display = types.ModuleType("IPython.display")
display.display = lambda *a, **k: None
ipython.display = display
sys.modules["IPython"] = ipython
sys.modules["IPython.display"] = display
sys.modules["ipywidgets"] = None  # import fails: not installed

import duckdb

refused = False
try:
    duckdb.connect().execute("SET enable_progress_bar = false")
except duckdb.InvalidInputException as exc:
    refused = "progress bar" in str(exc)

from shopsim.data import PrepareOptions, prepare

r = prepare(sys.argv[1], PrepareOptions(format="events"), sys.argv[2])
print(json.dumps({"refused": refused, "rows_out": r.rows_out}))
"""


def test_prepare_works_in_jupyter_without_ipywidgets(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    src.write_text(
        "user_id,timestamp,item_id,event\nu1,2024-01-01 10:00:00,i1,view\nu1,2024-01-01 10:01:00,i2,view\n"
    )
    out = tmp_path / "out"
    # `python -c` leaves __main__ without __file__, as a kernel does
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the child really was the failing environment (DuckDB refused the plain SET) …
    assert result["refused"] is True
    # … and prepare still ran
    assert result["rows_out"] == 2
    assert (out / "events.parquet").is_file()
