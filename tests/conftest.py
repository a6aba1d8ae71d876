"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Every `shopsim run` writes report.html with explained example sessions (~30 s on a tiny run,
# most of it the agents' exact attributions). The suites run dozens of tiny runs that are about
# something else: their reports are drawn without example sessions (in this process and the
# CLI subprocesses it starts). The report's own tests ask for sessions explicitly.
os.environ.setdefault("SHOPSIM_REPORT_SESSIONS", "0")


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


def _build_simulator(
    root: Path,
    sample: str | Path,
    split: tuple[float, float, float],
    fmt: str | None = None,
    **fit_kw: object,
) -> Path:
    """prepare → encode → simulator fit on a bundled sample (or a log ``sample`` in format
    ``fmt``); returns the simulator folder."""
    from shopsim.data import PrepareOptions, prepare, sample_format, sample_path
    from shopsim.encoders.finetune import EncoderConfig
    from shopsim.envs.fitting.fit import SimulatorConfig, fit_simulator
    from shopsim.experiments.encode import run_encode

    src = sample_path(sample) if isinstance(sample, str) else sample
    fmt = fmt or sample_format(str(sample))
    prepare(src, PrepareOptions(format=fmt, split=split), root / "data")
    run_encode(root / "data", root / "enc", EncoderConfig(progress=False, epochs=10), n_boot=50, text="on")
    fit_simulator(root / "data", root / "enc", root / "sim", SimulatorConfig(**fit_kw), progress=False)  # type: ignore[arg-type]
    return root / "sim"


@pytest.fixture(scope="session")
def toy_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator fitted on the bundled toy shop (known best slate), with baselines."""
    return _build_simulator(tmp_path_factory.mktemp("toy"), "toy", (0.6, 0.2, 0.2))


@pytest.fixture(scope="session")
def rees46_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator fitted on the bundled REES46 sample (real data, frozen MiniLM text)."""
    return _build_simulator(tmp_path_factory.mktemp("rees46"), "rees46", (0.7, 0.1, 0.2), baselines=False)


@pytest.fixture(scope="session")
def mind_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator fitted on the MIND test fixture: the impression-log path (tiny; mechanics only)."""
    from shopsim.tests.helpers import FIXTURES

    return _build_simulator(tmp_path_factory.mktemp("mind"), FIXTURES / "mind", (0.6, 0.2, 0.2), fmt="mind")


@pytest.fixture(scope="session")
def toy_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled toy shop prepared into a log folder (seconds; read-only: copy before changing)."""
    from shopsim.data import PrepareOptions, prepare, sample_path

    out = tmp_path_factory.mktemp("toy-log") / "data"
    prepare(sample_path("toy"), PrepareOptions(format="events", split=(0.6, 0.2, 0.2)), out)
    return out


@pytest.fixture(scope="session")
def toy_encoder_dir(toy_log_dir: Path) -> Path:
    """A two-epoch encoder of :func:`toy_log_dir` (read-only: copy before changing)."""
    from shopsim.encoders.finetune import EncoderConfig
    from shopsim.experiments.encode import run_encode

    out = toy_log_dir.parent / "enc"
    run_encode(toy_log_dir, out, EncoderConfig(progress=False, epochs=2), n_boot=20)
    return out
