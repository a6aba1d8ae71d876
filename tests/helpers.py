"""Helpers shared by the tests: paths to the fixtures and to the real data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# resolve(): the strict editable install links this file from a build folder.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("SHOPSIM_SHARED_DATA", "data-sets-not-configured"))
"""Where the full public data sets live (REES46 head, UCI, H&M, MIND, OBD); only the opt-in
``real_data`` tests read them."""


def shared(name: str) -> Path:
    """Path of a full data set under ``$SHOPSIM_SHARED_DATA`` (tests marked ``real_data``, which
    run only on request: ``make test-real-data``); a clear failure when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"{path} not present; set SHOPSIM_SHARED_DATA to the folder holding the full data sets")
    return path
