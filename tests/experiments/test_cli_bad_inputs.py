"""Bad input to every ``shopsim`` command: one stderr line ``shopsim: error: …``, exit 2, no
traceback, no "Exception ignored" (issue 14, class 5); Ctrl-C: ``shopsim: interrupted``, exit 130.

Each case runs the CLI's ``main`` in its own process, with its own argv, working folder, stdout,
stderr and exit code. Starting a fresh interpreter costs ~5 s for the commands whose flags come
from the stage configs (they import torch), so the table's processes are forked from one
interpreter that imported shopsim once (:class:`~shopsim.tests.helpers.Forker`): the child runs
``main`` as the console script does, with the exit code it returns, and leaves with ``os._exit``
(the interpreter's teardown would cost ~2 s a case). What the fork cannot show — start-up, the
import phase, interpreter shutdown, Ctrl-C, a closed pipe — is tested on the real console script
(``test_console_script_*``, ``test_closed_stdout_is_quiet``, ``test_ctrl_c_*``).
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopsim.data import sample_path
from shopsim.tests.helpers import Forker

SHOPSIM = Path(sys.executable).with_name("shopsim")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("SHOPSIM_TRACEBACK", None)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of bad (and a few good) inputs the cases name by relative path."""
    w = tmp_path_factory.mktemp("bad_inputs")
    (w / "afile").write_text("x")
    (w / "adir").mkdir()
    (w / "empty.csv").write_bytes(b"")
    (w / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    (w / "trunc.csv.gz").write_bytes(sample_path("rees46").read_bytes()[:2000])
    (w / "notgzip.csv.gz").write_bytes(b"session_id,item_id\n1,2\n")
    (w / "sample.csv").write_text(
        "session_id,user_id,timestamp,item_id,event,price\n"
        + "".join(f"s{i // 3},u{i // 3},2026-01-01 00:0{i % 3}:00,t{i % 7},view,1.0\n" for i in range(60))
    )
    (w / "bad.yaml").write_text("data: [\n")
    (w / "unknown.yaml").write_text("data: {source: sample:toy, format: events}\nfoo: 1\n")
    (w / "wrongtype.yaml").write_text("data: {source: sample:toy, format: events}\nseed: abc\n")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "empty.yaml").write_text("")
    (w / "fakesim").mkdir()
    (w / "fakesim" / "simulator.json").write_text("{}")
    for arm in ("random", "bts"):
        (w / "obd" / arm).mkdir(parents=True)
        (w / "obd" / arm / "all.csv").write_bytes(bytes(range(256)) * 8)
    (w / "gz.csv.gz").write_bytes(gzip.compress(b"\xff\xfe\x00garbage\x00" * 100))
    return w


@pytest.fixture(scope="module")
def forker(work: Path) -> Iterator[Forker]:
    f = Forker(work.parent)
    yield f
    f.close()


def _assert_one_line(code: int, err: str, phrase: str | None) -> None:
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("shopsim: error: "), err
    if phrase is not None:
        assert phrase in lines[0], err


P = ["data", "prepare"]
I = ["data", "inspect"]  # noqa: E741
EV = ["--format", "events"]
CASES: list[tuple[str, list[str], str | None]] = [
    # top level
    ("no command", [], "required"),
    ("unknown command", ["nope"], "invalid choice"),
    # data prepare
    ("prepare: missing source", [*P, "nope.csv", *EV, "--out", "o"], "nope.csv"),
    ("prepare: folder as source", [*P, "adir", *EV, "--out", "o"], "adir"),
    ("prepare: empty file", [*P, "empty.csv", *EV, "--out", "o"], "empty.csv"),
    ("prepare: binary garbage", [*P, "garbage.bin", *EV, "--out", "o"], "garbage.bin"),
    ("prepare: truncated gzip", [*P, "trunc.csv.gz", "--format", "rees46", "--out", "o"], "trunc.csv.gz"),
    ("prepare: not a gzip", [*P, "notgzip.csv.gz", *EV, "--out", "o"], "notgzip.csv.gz"),
    ("prepare: gzip of garbage", [*P, "gz.csv.gz", *EV, "--out", "o"], "gz.csv.gz"),
    ("prepare: --out under a file", [*P, "sample.csv", *EV, "--out", "afile/sub"], "afile is a file"),
    ("prepare: --out is a file", [*P, "sample.csv", *EV, "--out", "afile"], "is a file, not a folder"),
    ("prepare: --out empty", [*P, "sample.csv", *EV, "--out", ""], "--out"),
    ("prepare: no --out", [*P, "sample.csv", *EV], "required: --out"),
    ("prepare: --split nan", [*P, "sample.csv", *EV, "--split", "nan,0.5,0.5", "--out", "o"], "--split"),
    ("prepare: --split two", [*P, "sample.csv", *EV, "--split", "0.5,0.5", "--out", "o"], "--split"),
    ("prepare: --split inf", [*P, "sample.csv", *EV, "--split", "inf,0,0", "--out", "o"], "--split"),
    ("prepare: --split negative", [*P, "sample.csv", *EV, "--split", "1.5,-0.5,0", "--out", "o"], "--split"),
    ("prepare: --session-gap inf", [*P, "sample.csv", *EV, "--session-gap", "inf", "--out", "o"], "finite"),
    ("prepare: --session-gap nan", [*P, "sample.csv", *EV, "--session-gap", "nan", "--out", "o"], "finite"),
    ("prepare: --session-gap 0", [*P, "sample.csv", *EV, "--session-gap", "0", "--out", "o"], "> 0"),
    ("prepare: --session-gap text", [*P, "sample.csv", *EV, "--session-gap", "x", "--out", "o"], "'x'"),
    ("prepare: unknown format", [*P, "sample.csv", "--format", "nope", "--out", "o"], "invalid choice"),
    ("prepare: missing --items", [*P, "sample.csv", *EV, "--items", "nope.csv", "--out", "o"], "nope.csv"),
    ("prepare: bad --map", [*P, "sample.csv", *EV, "--map", "item_id", "--out", "o"], "--map"),
    (
        "prepare: two --map pairs for one column",
        [*P, "sample.csv", *EV, "--map", "event=a", "--map", "event=b", "--out", "o"],
        "two source columns for canonical column 'event'",
    ),
    ("prepare: unknown --default-event", [*P, "sample.csv", *EV, "--default-event", "x", "--out", "o"], "x"),
    # data inspect
    ("inspect: missing source", [*I, "nope.csv", *EV], "nope.csv"),
    ("inspect: binary garbage", [*I, "garbage.bin", "--format", "rees46"], "garbage.bin"),
    ("inspect: empty file", [*I, "empty.csv", *EV], "empty.csv"),
    ("inspect: --split sum", [*I, "sample.csv", *EV, "--split", "1,1,1"], "--split"),
    # encode
    ("encode: missing folder", ["encode", "nope", "--out", "o"], "nope"),
    ("encode: file as folder", ["encode", "afile", "--out", "o"], "afile"),
    ("encode: empty folder", ["encode", "adir", "--out", "o"], "adir"),
    ("encode: --out under a file", ["encode", "adir", "--out", "afile/x"], "afile is a file"),
    ("encode: --n-boot 0", ["encode", "adir", "--out", "o", "--n-boot", "0"], "n_boot"),
    ("encode: --seed -1", ["encode", "adir", "--out", "o", "--seed", "-1"], "--seed -1"),
    ("encode: --seed 2**32", ["encode", "adir", "--out", "o", "--seed", "4294967296"], "--seed"),
    ("encode: --lr nan", ["encode", "adir", "--out", "o", "--lr", "nan"], "--lr"),
    ("encode: --lr 0", ["encode", "adir", "--out", "o", "--lr", "0"], "greater than 0"),
    ("encode: --dim 0", ["encode", "adir", "--out", "o", "--dim", "0"], "dim"),
    ("encode: --temperature inf", ["encode", "adir", "--out", "o", "--temperature", ".inf"], "finite"),
    ("encode: --epochs text", ["encode", "adir", "--out", "o", "--epochs", "[1"], "--epochs"),
    ("encode: --text bad", ["encode", "adir", "--out", "o", "--text", "maybe"], "text"),
    # simulator fit
    ("fit: missing data", ["simulator", "fit", "nope", "--embeddings", "adir", "--out", "o"], "nope"),
    (
        "fit: --out under a file",
        ["simulator", "fit", "adir", "--embeddings", "adir", "--out", "afile/s"],
        "afile",
    ),
    (
        "fit: --negatives 0",
        ["simulator", "fit", "adir", "--embeddings", "adir", "--out", "o", "--negatives", "0"],
        "negatives",
    ),
    (
        "fit: logit nan",
        ["simulator", "fit", "adir", "--embeddings", "adir", "--out", "o", "--leave-no-click-logit", "nan"],
        "finite",
    ),
    (
        "fit: --neighbours -1",
        ["simulator", "fit", "adir", "--embeddings", "adir", "--out", "o", "--neighbours", "-1"],
        "--neighbours",
    ),
    ("fit: no --embeddings", ["simulator", "fit", "adir", "--out", "o"], "--embeddings"),
    # run
    ("run: missing config", ["run", "nope.yaml", "--out", "o"], "no such config file"),
    ("run: folder as config", ["run", "adir", "--out", "o"], "adir"),
    ("run: YAML syntax error", ["run", "bad.yaml", "--out", "o"], "not valid YAML"),
    ("run: unknown key", ["run", "unknown.yaml", "--out", "o"], "unknown section 'foo'"),
    ("run: wrong type", ["run", "wrongtype.yaml", "--out", "o"], "seed"),
    ("run: not a mapping", ["run", "list.yaml", "--out", "o"], "expected a mapping"),
    ("run: empty config", ["run", "empty.yaml", "--out", "o"], "expected a mapping"),
    ("run: binary config", ["run", "garbage.bin", "--out", "o"], "garbage.bin"),
    ("run: --out under a file", ["run", "unknown.yaml", "--out", "afile/r"], "afile is a file"),
    ("run: --set unknown key", ["run", "unknown.yaml", "--out", "o", "--set", "nosuch.key=1"], "no such key"),
    # quickstart
    (
        "quickstart: --set episodes 0",
        ["quickstart", "--out", "o", "--set", "evaluation.episodes=0"],
        "episodes",
    ),
    ("quickstart: --set seed -1", ["quickstart", "--out", "o", "--set", "seed=-1"], "seed"),
    ("quickstart: --set no =", ["quickstart", "--out", "o", "--set", "seed"], "expected key.path=value"),
    (
        "quickstart: --set split nan",
        ["quickstart", "--out", "o", "--set", "data.split=[.nan,0.5,0.5]"],
        "finite",
    ),
    ("quickstart: --set steps -1", ["quickstart", "--out", "o", "--set", "agents.ppo.steps=-1"], "steps"),
    ("quickstart: --set n_envs 0", ["quickstart", "--out", "o", "--set", "agents.n_envs=0"], "n_envs"),
    ("quickstart: --set reward nan", ["quickstart", "--out", "o", "--set", "reward.click=.nan"], "finite"),
    ("quickstart: --set reward text", ["quickstart", "--out", "o", "--set", "reward.click=lots"], "reward"),
    ("quickstart: --set tau 5", ["quickstart", "--out", "o", "--set", "agents.dqn.tau=5"], "tau"),
    ("quickstart: --out is a file", ["quickstart", "--out", "afile"], "is a file"),
    # config
    ("config: missing file", ["config", "nope.yaml"], "no such config file"),
    ("config: binary file", ["config", "garbage.bin"], "not a text file"),
    ("config: --set fatigue inf", ["config", "--set", "shop.fatigue=.inf"], "finite"),
    ("config: --set slate_size 0", ["config", "--set", "shop.slate_size=0"], "slate_size"),
    ("config: --set slate_size nan", ["config", "--set", "shop.slate_size=nan"], "slate_size"),
    (
        "config: --set mix negative",
        ["config", "--set", "shop.candidate_mix=[0.5,0.5,0.2,0,-0.2]"],
        "candidate_mix",
    ),
    ("config: --set unknown policy", ["config", "--set", "agents.policies=[nope]"], "unknown policy"),
    ("config: --set unknown section key", ["config", "--set", "shop.nope=1"], "no such key 'nope'"),
    # policies
    ("policies: extra argument", ["policies", "extra"], "unrecognized arguments"),
    # study
    ("study: unknown study", ["study", "nope", "--simulator", "adir", "--out", "o"], "invalid choice"),
    (
        "study: not a simulator",
        ["study", "budget", "--simulator", "adir", "--out", "o"],
        "not a simulator folder",
    ),
    (
        "study: --ppo-budgets inf",
        ["study", "budget", "--simulator", "fakesim", "--out", "o", "--ppo-budgets", "inf"],
        "--ppo-budgets",
    ),
    (
        "study: --dqn-budgets 1.5",
        ["study", "budget", "--simulator", "fakesim", "--out", "o", "--dqn-budgets", "1.5"],
        "--dqn-budgets",
    ),
    (
        "study: --strengths nan",
        ["study", "whatif", "--simulator", "fakesim", "--out", "o", "--strengths", "nan"],
        "--strengths",
    ),
    (
        "study: bad --config",
        ["study", "budget", "--simulator", "fakesim", "--out", "o", "--config", "bad.yaml"],
        "not valid YAML",
    ),
    ("study: --out under a file", ["study", "budget", "--simulator", "fakesim", "--out", "afile/x"], "afile"),
    # ope obd
    ("obd: missing folder", ["ope", "obd", "nope", "--out", "o"], "nope"),
    ("obd: file as folder", ["ope", "obd", "afile", "--out", "o"], "afile"),
    ("obd: --n-boot 0", ["ope", "obd", "adir", "--out", "o", "--n-boot", "0"], "--n-boot"),
    ("obd: --seed -1", ["ope", "obd", "adir", "--out", "o", "--seed", "-1"], "--seed"),
    ("obd: --seed nan", ["ope", "obd", "adir", "--out", "o", "--seed", "nan"], "--seed"),
    ("obd: --out under a file", ["ope", "obd", "obd", "--out", "afile/o"], "afile"),
    ("obd: binary logs", ["ope", "obd", "obd", "--out", "o"], "all.csv"),
    # ope validate
    ("validate: missing --sim", ["ope", "validate", "--sim", "nope", "--out", "o"], "--sim nope"),
    (
        "validate: --epsilon nan",
        ["ope", "validate", "--sim", "adir", "--out", "o", "--epsilon", "nan"],
        "--epsilon",
    ),
    ("validate: --n-boot 0", ["ope", "validate", "--sim", "adir", "--out", "o", "--n-boot", "0"], "n_boot"),
    ("validate: --seed -1", ["ope", "validate", "--sim", "adir", "--out", "o", "--seed", "-1"], "--seed"),
    ("validate: --batch 0", ["ope", "validate", "--sim", "adir", "--out", "o", "--batch", "0"], "--batch"),
    ("validate: --out under a file", ["ope", "validate", "--sim", "adir", "--out", "afile/v"], "afile"),
    (
        "validate: --models missing",
        ["ope", "validate", "--sim", "adir", "--out", "o", "--models", "nope"],
        "--models",
    ),
    # bench
    ("bench: --rows -1", ["bench", "--rows", "-1"], "--rows"),
    ("bench: --rows nan", ["bench", "--rows", "nan"], "--rows"),
    ("bench: --simulator missing", ["bench", "--simulator", "nope"], "nope"),
    ("bench: --simulator a file", ["bench", "--simulator", "afile"], "afile"),
]


@pytest.mark.parametrize(("argv", "phrase"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(forker: Forker, work: Path, argv: list[str], phrase: str | None) -> None:
    code, _, err = forker.run(argv, work)
    _assert_one_line(code, err, phrase)


def test_corrupt_artifacts_are_one_line(forker: Forker, work: Path, tmp_path: Path) -> None:
    """A prepared folder whose files were replaced, emptied or garbled (end to end; the loaders'
    own tests cover each file)."""
    code, _, err = forker.run(["data", "prepare", "sample.csv", *EV, "--out", str(tmp_path / "d")], work)
    assert code == 0, err
    for name in ("events.parquet", "items.parquet", "report.json"):
        for content in (b"", bytes(range(256)) * 4):
            folder = tmp_path / f"{name}-{len(content)}"
            subprocess.run(["cp", "-r", str(tmp_path / "d"), str(folder)], check=True)
            (folder / name).write_bytes(content)
            code, _, err = forker.run(["encode", str(folder), "--out", str(tmp_path / "o")], work)
            _assert_one_line(code, err, str(folder))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500, so the folder stays writable")
def test_unwritable_out_is_one_line(forker: Forker, work: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = forker.run([*P, "sample.csv", *EV, "--out", str(ro / "o")], work)
    finally:
        ro.chmod(0o700)
    _assert_one_line(code, err, "not writable")


def test_os_error_during_the_work_is_one_line(forker: Forker, work: Path) -> None:
    """A write the OS refuses after the parse-time checks passed (/proc accepts no new files,
    even for root): one line naming the path and the OS's reason."""
    code, _, err = forker.run([*P, "sample.csv", *EV, "--out", "/proc/shopsim-test"], work)
    _assert_one_line(code, err, "/proc")


def test_good_input_still_works(forker: Forker, work: Path, tmp_path: Path) -> None:
    code, out, err = forker.run([*I, "sample.csv", *EV, "--split", "0.6,0.2,0.2"], work)
    assert (code, err) == (0, "")
    assert "rows in 60" in out


# ---------------------------------------------------------------------- fresh processes
def _console(*argv: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SHOPSIM), *argv],
        cwd=cwd,
        env={**ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_console_script_bad_input_is_one_line(work: Path) -> None:
    """The real entry point, start-up included, on a command whose flags import torch."""
    proc = _console("encode", "adir", "--out", "o", "--n-boot", "0", cwd=work)
    _, err = proc.communicate(timeout=120)
    _assert_one_line(proc.returncode, err, "n_boot")


def test_console_script_help_is_fast() -> None:
    """``shopsim --help`` imports no stage (it took 6 s when it imported torch)."""
    t0 = time.perf_counter()
    out = subprocess.run([str(SHOPSIM), "--help"], capture_output=True, text=True, env=ENV, check=True)
    assert "usage: shopsim" in out.stdout
    assert time.perf_counter() - t0 < 3
    code = "import sys, shopsim.experiments.cli as c; c.build_parser(''); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_closed_stdout_is_quiet(work: Path) -> None:
    """Output into a pipe that is already closed (``| head``): exit 0, nothing on stderr."""
    proc = subprocess.Popen(
        [str(SHOPSIM), "data", "inspect", "sample.csv", "--format", "events", "--json"],
        cwd=work,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert err == ""


def _assert_interrupted(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "shopsim: interrupted", err


@pytest.mark.parametrize(
    ("point", "argv"),
    [
        ("import", ["encode", "adir", "--out", "o"]),  # while torch and the stage configs import
        ("command", ["data", "inspect", "sample.csv", "--format", "events"]),  # as the work starts
    ],
)
def test_ctrl_c_at_a_named_point(work: Path, point: str, argv: list[str]) -> None:
    """A real SIGINT, sent by the process to itself at a named point (SHOPSIM_TEST_SIGINT_AT)."""
    _assert_interrupted(_console(*argv, cwd=work, SHOPSIM_TEST_SIGINT_AT=point))


def test_ctrl_c_from_outside_during_imports(work: Path) -> None:
    """SIGINT from another process, once torch's library is mapped (the CLI's own imports are
    done by then, and a second or more of importing is left)."""
    proc = _console("config", cwd=work)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "libtorch" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.005)
    else:
        pytest.fail("torch was never loaded")
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc)
