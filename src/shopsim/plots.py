"""The one place that draws figures for files: a headless pyplot and an atomic PNG writer.

Every plot of a run (fidelity, results, headroom, OPE, studies) goes through :func:`pyplot` and
:func:`save_figure`, so a server without a display never fails on a GUI backend and a killed
run never leaves half an image.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from shopsim.artifacts import write_bytes_atomic


def pyplot(path: Path | None = None) -> Any:
    """matplotlib's pyplot on the headless Agg backend (with ``path``'s folder created).

    Inside a Jupyter kernel (``MPLBACKEND`` names the inline backend) the backend is left alone:
    switching it to Agg would make every later ``plt.show()`` of the notebook draw nothing.
    """
    import matplotlib

    if "inline" not in os.environ.get("MPLBACKEND", ""):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically (a killed run never leaves half an image)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    write_bytes_atomic(path, buf.getvalue())
    return path
