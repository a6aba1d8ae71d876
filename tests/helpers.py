"""Helpers shared by the tests: paths to the fixtures and to the real data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# resolve(): the strict editable install links this file from a build folder.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(
    os.environ.get("SHOPSIM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def shared(name: str) -> Path:
    """Path of a full data set in ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path
