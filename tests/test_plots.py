"""shopsim.plots: headless by default, but never takes a notebook's inline backend away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import matplotlib
from shopsim.plots import pyplot, save_figure
from pathlib import Path
import sys
plt = pyplot(Path(sys.argv[1]) / "sub" / "x.png")
fig, ax = plt.subplots()
ax.plot([0, 1], [0, 1])
save_figure(fig, Path(sys.argv[1]) / "sub" / "x.png")
print(matplotlib.get_backend())
"""


@pytest.mark.parametrize(
    ("mplbackend", "expected"),
    [
        (None, "agg"),
        ("module://matplotlib_inline.backend_inline", "module://matplotlib_inline.backend_inline"),
    ],
    ids=["headless", "jupyter-inline"],
)
def test_pyplot_backend(tmp_path: Path, mplbackend: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if mplbackend:
        env["MPLBACKEND"] = mplbackend
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().lower() == expected.lower()
    png = (tmp_path / "sub" / "x.png").read_bytes()
    assert png.startswith(b"\x89PNG")
