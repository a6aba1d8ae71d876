"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``shopsim ARGS…`` in-process; return (exit code, stdout, stderr)."""
    from shopsim.experiments.cli import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse exits
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
