"""The ``shopsim`` command line.

What a user's mistake looks like: one line on stderr, ``shopsim: error: <what, where, how to
fix>``, exit code 2, no traceback; Ctrl-C prints ``shopsim: interrupted`` and exits with 130,
at any moment after start-up (imports included). The rule that separates a user's mistake
from a bug in shopsim, applied by :func:`main`:

* **user errors** (one line, exit 2): :class:`~shopsim.errors.ShopsimError`; bad arguments
  (argparse, and the parse-time checks of option values and paths below); every ``OSError``
  (no such file, permission denied, is a directory, not a directory, disk full, a corrupt
  gzip …: the line names the path and the OS's reason); a **format error of a file reader**
  — an exception class that only a reader of bytes raises (:data:`_CORRUPT_FILE_ERRORS`:
  Arrow/Parquet, zip, JSON, pickle, zlib, YAML, UTF-8 decoding, a truncated stream, DuckDB's
  I/O, conversion and invalid-input errors) or a ``ValueError`` raised inside numpy's ``.npy`` /
  ``.npz`` reader — the line names the error kind and, when it can be found, the file;
  ``MemoryError``.
* **bugs** (the traceback is kept, exit 1): everything else — ``AssertionError``,
  ``TypeError``, ``KeyError``, ``AttributeError``, a ``ValueError`` from our own code, DuckDB's
  binder/parser errors (SQL that shopsim wrote) … A loader that meets a corrupt artifact it can
  recognise raises ``ShopsimError`` itself, with the command that rebuilds it; the list above
  is the safety net for what escapes.

``SHOPSIM_TRACEBACK=1`` shows the full traceback of any error (and Python's "Exception ignored
in …" reports, which are otherwise silenced: they follow an error that is already reported).

Option values are checked when the arguments are parsed, before any work: numbers are finite
and in range (:func:`_number`, :func:`_split`; config flags and ``--set`` through
:data:`~shopsim.experiments.config.FIELD_RULES`), ``--out`` is a folder that can be created and
written (:func:`_out_dir`). Heavy modules (torch, the pipeline) are imported only for the command
that runs, so ``shopsim --help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from shopsim import __version__
from shopsim.errors import ShopsimError

# ------------------------------------------------------------------ errors: the top-level rule
_CORRUPT_FILE_ERRORS = {
    "pyarrow.lib": ("ArrowException",),
    "zipfile": ("BadZipFile", "LargeZipFile"),
    "json": ("JSONDecodeError",),
    "pickle": ("UnpicklingError",),
    "_pickle": ("UnpicklingError",),
    "zlib": ("error",),
    "yaml": ("YAMLError",),
    "duckdb": ("IOException", "InvalidInputException", "ConversionException", "OutOfMemoryException"),
    "safetensors": ("SafetensorError",),
    "pandas.errors": ("ParserError", "EmptyDataError"),
    "builtins": ("UnicodeDecodeError", "EOFError"),
}
"""Exception classes (module → class names, matched with their subclasses) that only a reader of
a file's bytes raises: a corrupt or foreign file, not a bug. Modules not yet imported are skipped
(an exception of theirs cannot have been raised)."""

_NUMPY_READERS = ("numpy/lib/format.py", "numpy/lib/_format_impl.py", "numpy/lib/npyio.py", "_npyio_impl.py")
_TRACEBACK_ENV = "SHOPSIM_TRACEBACK"
_TEST_SIGINT_ENV = "SHOPSIM_TEST_SIGINT_AT"
"""Test-only: ``import`` or ``command`` — main sends itself a real SIGINT at that point (tests
of Ctrl-C that do not depend on timing)."""


def _classes(table: dict[str, tuple[str, ...]]) -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = []
    for module, names in table.items():
        mod = sys.modules.get(module)
        for name in names:
            cls = getattr(mod, name, None) if mod is not None else None
            if isinstance(cls, type) and issubclass(cls, BaseException):
                out.append(cls)
    return tuple(out)


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, also when DuckDB turned it into its InterruptException or a library re-raised it."""
    interrupt = _classes({"duckdb": ("InterruptException",)})
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, *interrupt)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _file_in_traceback(exc: BaseException) -> str | None:
    """The innermost file being read when ``exc`` was raised: an existing file named by a local
    variable of a frame (a path, a string path, or an open file's name)."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            name = getattr(value, "name", value) if hasattr(value, "read") else value
            if isinstance(name, (str, Path)) and len(str(name)) < 4096 and str(name).strip():
                try:
                    if os.path.isfile(name):
                        return str(name)
                except (OSError, ValueError):
                    continue
    return None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _os_error_message(exc: OSError) -> str:
    """``PATH: reason; fix`` for an OS error (the path from the exception, else the traceback)."""
    import errno

    path = exc.filename if exc.filename is not None else _file_in_traceback(exc)
    reason = exc.strerror or _one_line(str(exc)) or type(exc).__name__
    hint = {
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "a file is expected there, not a folder",
        errno.ENOSPC: "free some space or choose another --out",
        errno.EDQUOT: "free some space or choose another --out",
        errno.EROFS: "choose a writable --out",
    }.get(exc.errno or -1, "check the file")
    if exc.errno is None and path is not None:  # a reader's complaint (gzip …): the file is bad
        hint = "the file is corrupt or not what was expected; replace it"
    where = f"{path}: " if path is not None else ""
    if exc.filename2 is not None:
        where = f"{path} → {exc.filename2}: "
    return f"{where}{reason}; {hint}"


def _corrupt_file_message(exc: BaseException) -> str | None:
    """One line for a reader's format error, or None when ``exc`` is not one (then it is a bug)."""
    readers = _classes(_CORRUPT_FILE_ERRORS)
    is_reader_error = isinstance(exc, readers)
    if not is_reader_error and type(exc) is ValueError:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_filename.replace(os.sep, "/") if tb is not None else ""
        is_reader_error = where.endswith(_NUMPY_READERS)
    if not is_reader_error:
        return None
    path = _file_in_traceback(exc)
    kind = type(exc).__name__
    detail = _one_line(str(exc), 200)
    what = f"{path}: cannot be read" if path else "an input file cannot be read"
    return f"{what} ({kind}: {detail}); the file is corrupt or not what was expected: replace or rebuild it"


def _quiet_unraisable(unraisable: Any) -> None:
    """Drop Python's "Exception ignored in …" reports (a reader's callback failing on a corrupt
    file, a pipe closed at exit): they would come before or after the one error line."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"shopsim: error: {message} (see `{self.prog} --help`)\n")


# ------------------------------------------------------------------ parse-time checks
def _number(kind: type, *, ge: float | None = None, gt: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type=``: a finite ``kind`` (int or float) ≥ ``ge`` / > ``gt``."""
    bound = f" ≥ {ge:g}" if ge is not None else f" > {gt:g}" if gt is not None else ""
    what = f"{'an integer' if kind is int else 'a finite number'}{bound}"

    def parse(text: str) -> Any:
        try:
            value = float(text) if kind is float else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what}") from None
        if not math.isfinite(value) or (ge is not None and value < ge) or (gt is not None and value <= gt):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what}")
        return value

    parse.__name__ = kind.__name__
    return parse


_SEED = _number(int, ge=0)


def _seed(text: str) -> int:
    value: int = _SEED(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a seed in [0, 2**32)")
    return value


def _split(text: str) -> str:
    """``--split``: three finite non-negative fractions summing to 1 (kept as text)."""
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(math.isfinite(x) and x >= 0 for x in parts) or abs(sum(parts) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected three non-negative fractions summing to 1, e.g. 0.8,0.1,0.1"
        )
    return text


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if os.path.lexists(parent):
            return parent
    return Path(".")


def _out_dir(text: str) -> Path:
    """``--out``: a folder that exists or can be created, and can be written (nothing is created)."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; name an output folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        if base == path:
            raise argparse.ArgumentTypeError(f"{text}: is a file, not a folder; choose another --out")
        raise argparse.ArgumentTypeError(f"{text}: {base} is a file, not a folder; choose another --out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"{text}: {base} is not writable (permission denied); choose another --out"
        )
    return path


def _existing(kind: str) -> Callable[[str], Path]:
    """An argparse ``type=`` for an input path that must exist: ``file``, ``folder`` or ``any``."""

    def parse(text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such {'file or folder' if kind == 'any' else kind}")
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: is a folder; a file is expected")
        if kind == "folder" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: is a file; a folder is expected")
        if not os.access(path, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
        return path

    parse.__name__ = "path"
    return parse


SAMPLE_PREFIX = "sample:"
"""= :data:`shopsim.experiments.config.SAMPLE_PREFIX` (a test keeps them equal); repeated here
because importing the config module takes seconds (torch) and a plain path needs none of it."""


def _source(text: str) -> Path:
    """``SRC``: a log file or folder, or ``sample:NAME`` for a bundled sample, resolved by the
    config's resolver (:meth:`~shopsim.experiments.config.DataConfig.resolve_source`)."""
    if not text.startswith(SAMPLE_PREFIX):
        return Path(text)
    from shopsim.experiments.config import DataConfig

    try:
        return DataConfig.resolve_source(text)
    except ShopsimError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_source.__name__ = "source"


def _parse_map(pairs: Sequence[str]) -> dict[str, str]:
    """``--map`` pairs → canonical → source (two pairs for one canonical column are an error)."""
    from shopsim.data.formats import parse_column_map  # the log layer's one parser of --map

    return parse_column_map(pairs)


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ShopsimError(f"--split {text!r}: expected three fractions, e.g. 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise ShopsimError(f"--split {text!r}: expected three fractions, e.g. 0.8,0.1,0.1")
    return (parts[0], parts[1], parts[2])


def _add_source_args(p: argparse.ArgumentParser) -> None:
    from shopsim.data import FORMATS, PrepareOptions

    p.add_argument(
        "src",
        type=_source,
        metavar="SRC",
        help="source log file or folder, or sample:NAME for a bundled sample (e.g. sample:rees46)",
    )
    p.add_argument("--format", required=True, choices=list(FORMATS), help="source log format")
    p.add_argument(
        "--items", type=_existing("any"), help="item table (hm: articles.csv; events: any CSV/Parquet)"
    )
    p.add_argument(
        "--map",
        dest="column_map",
        action="extend",
        nargs="+",
        default=[],
        metavar="CANONICAL=SOURCE",
        help="events only: name the source column of a canonical one, e.g. item_id=sku",
    )
    p.add_argument("--default-event", help="events only: event type for rows without one")
    p.add_argument("--text-cols", help="events only: comma-separated columns forming item text")
    p.add_argument("--duplicates", choices=["drop", "keep"], help="exact duplicate rows (default per format)")
    p.add_argument(
        "--missing-items",
        choices=["drop", "keep"],
        help="events whose item is not in the item table (default per format)",
    )
    p.add_argument(
        "--session-gap",
        type=_number(float, gt=0),
        default=PrepareOptions.session_gap_minutes,
        metavar="MINUTES",
        help="inactivity gap that starts a new derived session (default %(default)s)",
    )
    p.add_argument("--timestamp-format", help="strptime format tried first, e.g. %%d/%%m/%%Y %%H:%%M")
    p.add_argument(
        "--timestamp-unit",
        choices=["s", "ms", "us"],
        help="read integer timestamps as Unix time in this unit",
    )
    p.add_argument(
        "--split",
        type=_split,
        default=",".join(map(str, PrepareOptions.split)),
        help="train,valid,test session fractions (default %(default)s)",
    )


def _options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from shopsim.data import PrepareOptions

    return PrepareOptions(
        format=args.format,
        items=args.items,
        column_map=_parse_map(args.column_map),
        default_event=args.default_event,
        text_cols=[c.strip() for c in args.text_cols.split(",") if c.strip()] if args.text_cols else None,
        duplicates=args.duplicates,
        missing_items=args.missing_items,
        session_gap_minutes=args.session_gap,
        timestamp_format=args.timestamp_format,
        timestamp_unit=args.timestamp_unit,
        split=_parse_split(args.split),
    )


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """``shopsim data prepare``."""
    from shopsim.data import format_summary, prepare

    result = prepare(args.src, _options(args), args.out)
    print(format_summary(result.to_json()))
    print(f"  wrote {args.out}/events.parquet, items.parquet, report.json ({result.timing_s:.2f} s)")
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    """``shopsim data inspect``."""
    from shopsim.data import format_summary, prepare

    result = prepare(args.src, _options(args), None)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(format_summary(result.to_json()))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """``shopsim encode``."""
    from shopsim.experiments.config import EncodeConfig
    from shopsim.experiments.encode import eval_markdown, run_encode
    from shopsim.experiments.flags import config_from_args

    cfg: EncodeConfig = config_from_args(args, EncodeConfig)
    enc_cfg = cfg.encoder_config()
    report = run_encode(
        args.data_dir, args.out, enc_cfg, ablation=cfg.ablation, n_boot=cfg.n_boot, text=cfg.text
    )
    table = eval_markdown(report)
    print(table)
    where = "served from the cache" if report["served_from_cache"] else "computed"
    print(_encode_done(where, report["timing_s"]["total"], args.out))
    from shopsim.encoders.backbone import locate_backbone, weight_files
    from shopsim.experiments.encode_memo import remember

    # the next identical command is answered before the heavy imports (encode_memo)
    remember(
        args.command_argv, args.out, args.data_dir, weight_files(locate_backbone(enc_cfg.backbone)), table
    )
    return 0


def _encode_done(where: str, seconds: float, out: Path) -> str:
    return f"{where} in {seconds:.1f} s; wrote {out}/eval.json, item_vectors.npy, encoder.pt"


def _recall_encode(argv: Sequence[str]) -> bool:
    """Answer a repeated ``shopsim encode`` from its request memo, before any heavy import
    (:mod:`shopsim.experiments.encode_memo`); False when the full command must run."""
    import time

    t0 = time.perf_counter()
    from shopsim.experiments.encode_memo import out_of, recall

    printed = recall(argv[1:])
    out = out_of(argv[1:])
    if printed is None or out is None:
        return False
    print(printed)
    print(_encode_done("served from the cache", time.perf_counter() - t0, out))
    return True


def cmd_simulator_fit(args: argparse.Namespace) -> int:
    """``shopsim simulator fit``."""
    from shopsim.envs.fitting.fit import SimulatorConfig, fit_simulator
    from shopsim.envs.fitting.report import fidelity_markdown
    from shopsim.experiments.flags import config_from_args

    cfg: SimulatorConfig = config_from_args(args, SimulatorConfig)
    _, report = fit_simulator(args.data_dir, args.embeddings, args.out, cfg)
    print(fidelity_markdown(report))
    print(f"fitted in {report['timing_s']:.1f} s; wrote {args.out}/ (simulator.json, fidelity.json, plots/)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``shopsim run CONFIG --out DIR``: every stage of an experiment config."""
    from shopsim.experiments.config import load_named_config
    from shopsim.experiments.runner import run

    cfg = load_named_config(args.config, args.set)
    run(cfg, args.out, command=_command_line())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``shopsim sweep CONFIG --grid KEY=V1,V2 … --seeds 0,1,2 --out DIR``: every grid point ×
    seed as one ``shopsim run`` on Ray, then one table."""
    from shopsim.experiments.distributed import check_address, require_ray
    from shopsim.experiments.sweep import parse_grid, parse_seeds, plan_sweep, run_sweep

    if args.threads < 1:
        raise ShopsimError(f"--threads {args.threads}: give at least 1 torch thread per trial")
    trials = plan_sweep(args.config, parse_grid(args.grid), parse_seeds(args.seeds), args.set)
    require_ray()
    check_address(args.address)
    report = run_sweep(args.config, trials, args.out, threads=args.threads, address=args.address)
    return 0 if all(t["status"] == "done" for t in report["trials"]) else 1


def cmd_quickstart(args: argparse.Namespace) -> int:
    """``shopsim quickstart``: ``run`` on the packaged quickstart.yaml."""
    from shopsim.experiments.config import load_config, packaged_config
    from shopsim.experiments.runner import run

    # always the packaged file (a file named quickstart in the current folder is not it); its
    # --set paths are relative to the current folder
    cfg = load_config(packaged_config("quickstart"), args.set, where="quickstart.yaml", base_dir=Path.cwd())
    run(cfg, args.out, command=_command_line())
    return 0


def _command_line() -> str:
    """The command as the user typed it (the Ctrl-C message repeats it as the way to resume)."""
    import shlex
    import sys

    return shlex.join(["shopsim", *sys.argv[1:]])


def cmd_config(args: argparse.Namespace) -> int:
    """``shopsim config``: check a config, print it resolved, or print the key reference."""
    import yaml

    from shopsim.experiments.config import config_reference, load_config, load_named_config, packaged_config

    if args.reference:
        print(config_reference())
        return 0
    if args.list:
        return cmd_configs(args)
    if args.config is None:
        quickstart = packaged_config("quickstart")
        cfg = load_config(quickstart, args.set, where="quickstart.yaml", base_dir=Path.cwd())
    else:
        cfg = load_named_config(args.config, args.set)
    print(yaml.safe_dump(cfg.resolved(), sort_keys=False), end="")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    """``shopsim configs``: the packaged configs with their one-line descriptions."""
    from shopsim.experiments.config import packaged_config, packaged_configs

    configs = packaged_configs()
    texts = {name: packaged_config(name).read_bytes() for name in configs}
    width = max(map(len, configs))
    for name, description in configs.items():
        same = [n for n in configs if n != name and texts[n] == texts[name]]
        if name == "quickstart" and same:  # the quickstart is another config under a short name
            description = f"= {same[0]} (`shopsim quickstart` runs it)"
        print(f"{name:{width}s}  {description}")
    return 0


def _config_name(path: Path | None) -> str:
    """How messages name the config: its path, or the packaged quickstart.yaml."""
    return str(path) if path is not None else "quickstart.yaml"


def cmd_policies(args: argparse.Namespace) -> int:
    """``shopsim policies``: the policy registry."""
    from shopsim.agents.registry import REGISTRY

    for s in REGISTRY.values():
        needs = f" (needs {', '.join(sorted(s.requires))})" if s.requires else ""
        print(f"{s.name:20s} {s.kind:10s} {s.description}{needs}")
    return 0


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        floats = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        floats = [math.nan]
    if not all(math.isfinite(x) and x == int(x) for x in floats):
        raise ShopsimError(f"{what} {text!r}: expected comma-separated numbers, e.g. 15000,30000")
    vals = tuple(int(x) for x in floats)
    if not vals or min(vals) < 1:
        raise ShopsimError(f"{what} {text!r}: expected positive numbers, e.g. 15000,30000")
    return vals


def cmd_study(args: argparse.Namespace) -> int:
    """``shopsim study budget|whatif``: RL against the myopic ranker (see :mod:`.studies`)."""
    from shopsim.experiments.config import load_config, packaged_config
    from shopsim.experiments.studies import _budget_md, _whatif_md, budget_curve, whatif_sweep

    ppo_budgets = _ints(args.ppo_budgets, "--ppo-budgets")
    dqn_budgets = _ints(args.dqn_budgets, "--dqn-budgets")
    try:
        strengths = tuple(float(x) for x in args.strengths.split(","))
    except ValueError:
        strengths = ()
    if not strengths or not all(0 < x < float("inf") for x in strengths):
        raise ShopsimError(f"--strengths {args.strengths!r}: expected positive numbers, e.g. 0.5,1,2")
    if not (args.simulator / "simulator.json").exists():
        raise ShopsimError(f"{args.simulator}: not a simulator folder (run `shopsim simulator fit` first)")
    cfg = load_config(args.config or packaged_config("quickstart"), args.set, where=_config_name(args.config))
    if args.study == "budget":
        report = budget_curve(args.simulator, args.out, cfg, ppo_budgets=ppo_budgets, dqn_budgets=dqn_budgets)
        print(_budget_md(report))
        print(f"  wrote {args.out}/budget.json, budget.md, budget.png")
    else:
        report = whatif_sweep(args.simulator, args.out, cfg, strengths=strengths)
        print(_whatif_md(report))
        print(f"  wrote {args.out}/whatif.json, whatif.md, whatif.png")
    return 0


def cmd_headroom(args: argparse.Namespace) -> int:
    """``shopsim headroom RUN_DIR... --out DIR``: RL vs the rankers across shops (:mod:`.headroom`)."""
    from shopsim.experiments.headroom import headroom_markdown, write_headroom

    report = write_headroom(args.runs, args.out, keep=args.keep)
    print(headroom_markdown(report))
    print(f"  wrote {args.out}/headroom.json, headroom.md, plots/curves.png, plots/headroom.png")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """``shopsim explain RUN``: why each item is in the slates of one evaluated session."""
    from shopsim.artifacts import write_text_atomic
    from shopsim.experiments.explain import explain_run, explain_text

    doc = explain_run(
        args.run,
        policies=args.policy,
        episode=args.episode,
        session=args.session,
        seed=args.seed,
        top=args.top,
    )
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    print(explain_text(doc))
    if args.json is not None:
        print(f"  wrote {args.json}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``shopsim report RUN``: (re)draw the run's report.html."""
    from shopsim.experiments.run_report import write_report

    write_report(args.run, sessions=args.sessions)
    return 0


def cmd_ope_obd(args: argparse.Namespace) -> int:
    """``shopsim ope obd DIR --out OUT``: each OBD logging policy's CTR from the other's logs."""
    from shopsim.experiments.ope_obd import obd_markdown, run_obd

    report = run_obd(args.folder, args.out, n_boot=args.n_boot, seed=args.seed)
    print(obd_markdown(report))
    print(f"  wrote {args.out / 'ope_obd.json'}")
    return 0


def cmd_ope_validate(args: argparse.Namespace) -> int:
    """``shopsim ope validate --sim SIM --out OUT``: OPE estimates vs on-policy truth."""
    from shopsim.experiments.flags import config_from_args
    from shopsim.experiments.ope_validate import ValidateConfig, run_validation, validation_markdown

    for flag, path in (("--sim", args.sim), ("--models", args.models), ("--data", args.data)):
        if path is not None and not path.is_dir():
            raise ShopsimError(f"{flag} {path}: no such folder")
    if args.address is not None and not args.ray:
        raise ShopsimError(f"--address {args.address}: only with --ray (the serial validation runs here)")
    cfg: ValidateConfig = config_from_args(args, ValidateConfig)
    report = run_validation(
        args.sim,
        args.out,
        cfg,
        models=args.models,
        data=args.data,
        results=args.results,
        ray=args.ray,
        address=args.address,
        threads=args.threads,
    )
    print(validation_markdown(report))
    extra = f"; added ope blocks to {args.results}" if args.results else ""
    print(f"  wrote {args.out}/ope_validation.json, ope_validation.md, plots/ope_validation.png{extra}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``shopsim bench``: the performance report (every figure beside a reference, their ratios)."""
    if args.catalog is not None:  # the catalog-scale bench (shopsim.experiments.scale) on its own
        from shopsim.experiments.scale import bench_catalog_scale, parse_sizes, write_scale_report

        scale = bench_catalog_scale(parse_sizes(args.catalog))
        if args.catalog_out is not None:
            write_scale_report(scale, args.catalog_out)
        print(json.dumps(scale, indent=2))
        return 0
    from shopsim.experiments.bench import BenchOptions, format_table, run_benchmarks

    opts = BenchOptions(
        seconds=args.seconds,
        candidates=tuple(args.candidates),
        batch_sizes=tuple(args.batch_sizes),
        train_steps=args.train_steps,
        encoder_items=args.encoder_items,
        rows=args.rows,
        threads=args.threads,
    )
    report = run_benchmarks(args.only, simulator=args.simulator, options=opts)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


Want = Callable[[str], bool]
"""Whether a command's parser gets its arguments (only the one that runs: its flags import the
stage's configuration classes, and with them torch)."""


def _add_data(sub: Any, want: Want) -> None:
    data = sub.add_parser("data", help="prepare and inspect shop logs")
    if not want("data"):
        return
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    prep = data_sub.add_parser(
        "prepare",
        help="write canonical events.parquet, items.parquet and report.json",
        description="Read a shop's log, validate it and write canonical tables plus a report "
        "counting every dropped row by reason.",
    )
    _add_source_args(prep)
    prep.add_argument("--out", type=_out_dir, required=True, help="output folder")
    prep.set_defaults(func=cmd_data_prepare)
    insp = data_sub.add_parser(
        "inspect",
        help="print the prepare summary without writing anything",
        description="Run the prepare pipeline and print its summary; nothing is written.",
    )
    _add_source_args(insp)
    insp.add_argument("--json", action="store_true", help="print the full report as JSON")
    insp.set_defaults(func=cmd_data_inspect)


def _add_encode(sub: Any, want: Want) -> None:
    enc = sub.add_parser(
        "encode",
        help="embed items, train the two-tower encoder, evaluate it",
        description="Embed item texts with the (offline) BERT backbone, train the item/state "
        "encoder on train sessions and evaluate next-item ranking on the test split against "
        "popularity, co-occurrence, ALS, attribute-match and frozen-text baselines.",
    )
    if not want("encode"):
        return
    from shopsim.experiments.config import EncodeConfig
    from shopsim.experiments.flags import add_config_flags

    enc.add_argument(
        "data_dir", type=Path, metavar="DATA_DIR", help="folder written by `shopsim data prepare`"
    )
    enc.add_argument("--out", type=_out_dir, required=True, help="output folder")
    add_config_flags(enc, EncodeConfig, skip=("progress",))
    enc.set_defaults(func=cmd_encode, config_cls=EncodeConfig)


def _add_simulator(sub: Any, want: Want) -> None:
    simp = sub.add_parser("simulator", help="fit the shopper simulator")
    if not want("simulator"):
        return
    from shopsim.envs.fitting.fit import SimulatorConfig
    from shopsim.experiments.flags import add_config_flags

    sim_sub = simp.add_subparsers(dest="simulator_command", required=True, parser_class=_Parser)
    fit = sim_sub.add_parser(
        "fit",
        help="fit the shopper response model and write fidelity.json + plots",
        description="Fit the shopper's click, purchase and leave models on a prepared log "
        "(count tables and encoder from train, response model on valid), calibrate them, and "
        "report their fidelity on the test split.",
    )
    fit.add_argument(
        "data_dir", type=Path, metavar="DATA_DIR", help="folder written by `shopsim data prepare`"
    )
    fit.add_argument("--embeddings", type=Path, required=True, help="folder written by `shopsim encode`")
    fit.add_argument("--out", type=_out_dir, required=True, help="simulator folder to write")
    add_config_flags(fit, SimulatorConfig)
    fit.set_defaults(func=cmd_simulator_fit, config_cls=SimulatorConfig)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set agents.ppo.steps=20000 --set reward.purchase=5 "
        "(values in YAML syntax; see `shopsim config --reference`)",
    )


def _add_experiments(sub: Any, want: Want) -> None:
    run = sub.add_parser(
        "run",
        help="run an experiment config end to end",
        description="prepare → encode → fit simulator → train → evaluate → report, each stage "
        "reused when its inputs are unchanged; writes the resolved config.yaml next to results.json.",
    )
    if want("run"):
        run.add_argument(
            "config",
            metavar="CONFIG",
            help="experiment YAML, or the name of a packaged config (`shopsim configs` lists them)",
        )
        run.add_argument("--out", type=_out_dir, required=True, help="output folder")
        _add_set(run)
        run.set_defaults(func=cmd_run)
    sw = sub.add_parser(
        "sweep",
        help="run a config over a grid of overrides × seeds on Ray, one table",
        description="Every grid point × seed is one `shopsim run` of the overridden config, run as a "
        "Ray Tune trial (locally, or on the Ray cluster at --address); the prepared log, encoder and "
        "simulator are built once per distinct data/encoder/simulator sections before any trial "
        "starts; finished trials are skipped when the same command is run again; writes "
        "OUT/sweep.md and OUT/sweep.json (needs the ray extra: pip install 'shopsim[ray]').",
    )
    if want("sweep"):
        sw.add_argument("config", metavar="CONFIG", help="experiment YAML or packaged config name")
        sw.add_argument(
            "--grid",
            action="append",
            default=[],
            metavar="KEY=V1,V2",
            help="a swept config key and its values (repeat for a product grid), "
            "e.g. --grid reward.purchase=1,5",
        )
        sw.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
        sw.add_argument("--threads", type=int, default=1, help="CPUs and torch threads per trial (default 1)")
        sw.add_argument(
            "--address",
            default=None,
            help="HOST:PORT of a Ray head node (`ray start --head`); default: local",
        )
        sw.add_argument("--out", type=_out_dir, required=True, help="output folder of the sweep")
        _add_set(sw)
        sw.set_defaults(func=cmd_sweep)
    qs = sub.add_parser(
        "quickstart",
        help="run shopsim on the bundled REES46 sample (the packaged quickstart.yaml)",
        description="`shopsim run` on the packaged quickstart.yaml: prepare the bundled REES46 "
        "sample, train and evaluate the encoder, fit the shopper simulator, train PPO and SlateQ "
        "and evaluate every policy on the same test sessions (results.json, results.md, plots/).",
    )
    if want("quickstart"):
        qs.add_argument("--out", type=_out_dir, default="runs/quickstart", help="output folder")
        _add_set(qs)
        qs.set_defaults(func=cmd_quickstart)
    conf = sub.add_parser(
        "config",
        help="check a config and print it resolved, or print every key",
        description="Validate CONFIG (a YAML file or a packaged config name; default: the packaged "
        "quickstart) with its --set overrides and print the resolved config; --reference prints "
        "every key with its default; --list the packaged configs.",
    )
    if want("config"):
        conf.add_argument(
            "config", nargs="?", metavar="CONFIG", help="experiment YAML or packaged config name"
        )
        conf.add_argument(
            "--reference", action="store_true", help="print the reference of every key (Markdown)"
        )
        conf.add_argument("--list", action="store_true", help="list the packaged configs (= shopsim configs)")
        _add_set(conf)
        conf.set_defaults(func=cmd_config)
    confs = sub.add_parser(
        "configs",
        help="list the packaged experiment configs",
        description="The configs shipped with shopsim, each with its one-line description; run one "
        "with `shopsim run NAME --out DIR`, print it with `shopsim config NAME`.",
    )
    confs.set_defaults(func=cmd_configs)
    pol = sub.add_parser("policies", help="list the registered policies", description="The policy registry.")
    pol.set_defaults(func=cmd_policies)


def _add_study(sub: Any, want: Want) -> None:
    st = sub.add_parser(
        "study",
        help="RL vs the myopic ranker: training budgets, what-if dynamics",
        description="budget: PPO and SlateQ against click_model_greedy at growing training budgets. "
        "whatif: the same in worlds with ASSUMED dynamics (category fatigue, exposure-built intent) "
        "at growing strengths. Paired differences with 95% intervals on the same test sessions. "
        "Shop, agents, evaluation and reward come from --config (default: quickstart.yaml).",
    )
    if not want("study"):
        return
    st.add_argument("study", choices=("budget", "whatif"), help="which study")
    st.add_argument("--simulator", type=Path, required=True, help="a fitted simulator folder")
    st.add_argument("--out", type=_out_dir, required=True, help="output folder")
    st.add_argument("--config", type=Path, help="experiment YAML (default: the packaged quickstart.yaml)")
    _add_set(st)
    st.add_argument("--strengths", default="0.5,1,2", help="whatif: strengths of each assumed dynamic")
    st.add_argument("--ppo-budgets", default="15000,30000,60000,120000,240000", help="budget: PPO steps")
    st.add_argument("--dqn-budgets", default="15000,30000,60000,120000", help="budget: SlateQ steps")
    st.set_defaults(func=cmd_study)


def _add_headroom(sub: Any, want: Want) -> None:
    hr = sub.add_parser(
        "headroom",
        help="RL headroom across shops: PPO and SlateQ vs the deployable and myopic references",
        description="Group finished run folders by (shop, reward) and seed; per group the mean over seeds "
        "of PPO's and SlateQ's paired Δ against the deployable reference and click_model_greedy with a "
        "95% Student-t interval over seeds, the measured dynamics, the training budget, a plateau check "
        "of the learning curves and a verdict. Writes headroom.json, headroom.md and plots/.",
    )
    if not want("headroom"):
        return
    hr.add_argument(
        "runs", nargs="+", type=_existing("folder"), help="run folders (or folders holding run folders)"
    )
    hr.add_argument("--out", type=_out_dir, required=True, help="output folder")
    hr.add_argument(
        "--keep",
        type=_existing("file"),
        default=None,
        help="an earlier headroom.json: its rows for shops × rewards not among RUN_DIRs are carried "
        "over as measured (marked as such), so one table can grow shop by shop",
    )
    hr.set_defaults(func=cmd_headroom)


def _add_explain(sub: Any, want: Want) -> None:
    ex = sub.add_parser(
        "explain",
        help="why each item is in the slates of one evaluated session of a run",
        description="Replay one test episode of a finished run through the run's own evaluation and, for "
        "every item each policy showed, list the shop's evidence (nearest history items in the encoder's "
        "space, shared category and price band, bought/viewed together with lift), the shopper model's "
        "click probability with an exact Shapley split of its logit over the click features, and for "
        "PPO and SlateQ the policy's own score split over its inputs (SlateQ: immediate vs long-term value).",
    )
    if not want("explain"):
        return
    ex.add_argument("run", type=_existing("folder"), help="a finished run folder (shopsim run … --out RUN)")
    ex.add_argument(
        "--policy", action="append", default=None, help="a policy of the run (repeatable; default: all)"
    )
    which = ex.add_mutually_exclusive_group()
    which.add_argument(
        "--episode",
        type=_number(int, ge=0),
        default=None,
        help="test episode index (default: drawn with --seed)",
    )
    which.add_argument(
        "--session",
        default=None,
        help="a logged test session id: its first evaluated episode (ids: shopsim explain … --json)",
    )
    ex.add_argument("--seed", type=_seed, default=0, help="seed of the drawn episode")
    ex.add_argument("--top", type=_number(int, ge=1), default=5, help="contributions listed per attribution")
    ex.add_argument("--json", type=Path, default=None, help="also write the explanation as JSON here")
    ex.set_defaults(func=cmd_explain)


def _add_report(sub: Any, want: Want) -> None:
    rp = sub.add_parser(
        "report",
        help="(re)draw a run's report.html: the whole run on one self-contained page",
        description="Render RUN/report.html from a finished run folder: the configuration, the data "
        "report, the encoder's held-out metrics, the simulator's fidelity with its plots, the results table "
        "with intervals and paired differences, the learning curves, the OPE block when present, and "
        "example test sessions with explained slates. Images are embedded and the page has no script: it "
        "opens from disk, offline. `shopsim run` writes it at the end of every run.",
    )
    if not want("report"):
        return
    rp.add_argument("run", type=_existing("folder"), help="a finished run folder (shopsim run … --out RUN)")
    rp.add_argument(
        "--sessions",
        type=_number(int, ge=0),
        default=3,
        help="example test sessions to explain (0: none; default 3)",
    )
    rp.set_defaults(func=cmd_report)


def _add_ope(sub: Any, want: Want) -> None:
    ope = sub.add_parser("ope", help="off-policy evaluation")
    if not want("ope"):
        return
    from shopsim.experiments.flags import add_config_flags
    from shopsim.experiments.ope_validate import ValidateConfig

    ope_sub = ope.add_subparsers(dest="ope_command", required=True, parser_class=_Parser)
    obd = ope_sub.add_parser(
        "obd",
        help="estimate each Open Bandit Dataset policy's CTR from the other's logs",
        description="On a folder with random/ and bts/ (one log CSV each, plus item_context; "
        ".csv or .csv.gz; sample:obd is the bundled sample): "
        "estimate the uniform-random policy's CTR from the BTS logs and vice versa with every "
        "single-slot estimator, next to the on-policy truth, all with 95% bootstrap intervals.",
    )
    obd.add_argument(
        "folder", type=_source, help="folder with random/ and bts/, or sample:obd for the bundled sample"
    )
    obd.add_argument("--out", type=_out_dir, required=True, help="output folder (ope_obd.json)")
    obd.add_argument("--n-boot", type=_number(int, ge=10), default=1000, help="bootstrap replicates (≥ 10)")
    obd.add_argument("--seed", type=_seed, default=0, help="seed of every random draw")
    obd.set_defaults(func=cmd_ope_obd)
    val = ope_sub.add_parser(
        "validate",
        help="validate the estimators on simulator logs against on-policy truth",
        description="Log a randomised A/B/n behaviour policy (arm per session, ε-uniform exploration) "
        "in a fitted simulator, estimate every policy's session and first-page value with every "
        "estimator, and compare with Monte-Carlo truth from on-policy rollouts on another seed: "
        "bias, RMSE, relative error, CI coverage over repeats and rank correlation.",
    )
    val.add_argument("--sim", type=Path, required=True, help="a fitted simulator folder")
    val.add_argument("--out", type=_out_dir, required=True, help="output folder (ope_validation.json)")
    val.add_argument("--models", type=Path, help="folder with ppo.zip / dqn.zip (a quickstart's models/)")
    val.add_argument("--data", type=Path, help="prepared log: adds the itemknn, als and bpr baselines")
    val.add_argument("--results", type=Path, help="a results.json to annotate with per-policy ope blocks")
    val.add_argument(
        "--ray",
        action="store_true",
        help="run the logging repeats and on-policy truths as Ray tasks (same results as serial)",
    )
    val.add_argument(
        "--address",
        default=None,
        help="with --ray: HOST:PORT of a Ray head node (`ray start --head`); default: local",
    )
    val.add_argument(
        "--threads",
        type=_number(int, ge=1),
        default=1,
        help="with --ray: CPUs and torch/BLAS threads per task (default 1)",
    )
    add_config_flags(val, ValidateConfig)
    val.set_defaults(func=cmd_ope_validate, config_cls=ValidateConfig)


def _int_list(text: str) -> list[int]:
    """An argparse ``type=``: comma-separated positive integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers ≥ 1")
    return values


def _groups(text: str) -> list[str]:
    """An argparse ``type=``: comma-separated bench groups."""
    from shopsim.experiments.bench import GROUPS

    picked = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in picked if g not in GROUPS]
    if bad or not picked:
        raise argparse.ArgumentTypeError(f"{text!r}: pick from {','.join(GROUPS)}")
    return picked


def _add_bench(sub: Any, want: Want) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure performance",
        description="The performance report: env, training, encoder, cached-encode and prepare speed, "
        "each figure beside a reference measured in the same run (ratios are the headline), and each "
        "group's peak memory (every group runs in its own child process). Progress goes to stderr.",
    )
    if not want("bench"):
        return
    from shopsim.experiments.bench import GROUPS

    bench.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    bench.add_argument("--out", type=Path, help="also write the JSON report to this file")
    bench.add_argument(
        "--only",
        type=_groups,
        default=list(GROUPS),
        help=f"comma-separated groups to run (default: all of {','.join(GROUPS)})",
    )
    bench.add_argument(
        "--simulator",
        type=_existing("folder"),  # checked here: the benchmarks before it take minutes
        help="simulator folder for env and train (default: fit one on the bundled REES46 sample)",
    )
    bench.add_argument(
        "--rows",
        type=_number(int, ge=0),
        default=0,
        help="prepare: also prepare a generated log of this many rows (e.g. 10000000)",
    )
    bench.add_argument(
        "--seconds", type=_number(float, gt=0), default=3.0, help="env: timed seconds per figure (default 3)"
    )
    bench.add_argument(
        "--candidates", type=_int_list, default=[100, 1000], help="env: candidate counts N (default 100,1000)"
    )
    bench.add_argument(
        "--batch-sizes",
        type=_int_list,
        default=[256, 1024, 4096],
        help="env: vector-env sizes B (default 256,1024,4096)",
    )
    bench.add_argument(
        "--train-steps",
        type=_number(int, ge=1),
        default=8192,
        help="train: env steps per agent (default 8192)",
    )
    bench.add_argument(
        "--encoder-items",
        type=_number(int, ge=0),
        default=0,
        help="encoder: catalog items to embed (default 0: all)",
    )
    bench.add_argument(
        "--threads", type=_number(int, ge=1), default=1, help="torch/BLAS threads of every group (default 1)"
    )
    bench.add_argument(
        "--catalog",
        metavar="SIZES",
        help="run only the catalog-scale bench: generated shops of these item counts (e.g. "
        "10000,100000,1000000; 10 events per item): prepare, encode, simulator fit (time, peak "
        "memory), env step time at N = 100",
    )
    bench.add_argument(
        "--catalog-out", type=Path, help="write the catalog-scale bench's scale.json and README.md here"
    )
    bench.set_defaults(func=cmd_bench)


def _command_of(argv: Sequence[str]) -> str | None:
    """The top-level command in ``argv`` (its first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``shopsim`` argument parser (every command has ``--help``).

    :param command: build only this top-level command's arguments (the others, or all for ``""``,
        are listed with their help line); None builds every command in full.
    """
    parser = _Parser(prog="shopsim", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"shopsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def want(name: str) -> bool:
        return command is None or command == name

    adders = (_add_data, _add_encode, _add_simulator, _add_experiments, _add_study, _add_ope, _add_bench)
    for add in (*adders, _add_headroom, _add_explain, _add_report):
        add(sub, want)
    return parser


def _interrupt_for_test(point: str) -> None:
    """Test-only (``SHOPSIM_TEST_SIGINT_AT=point``): a real SIGINT to this process, delivered at a
    named point (``import``: while the command's modules import; ``command``: as the command
    starts), so Ctrl-C tests do not depend on timing."""
    if os.environ.get(_TEST_SIGINT_ENV) == point:
        import signal

        os.kill(os.getpid(), signal.SIGINT)


def _error(message: str) -> int:
    print(f"shopsim: error: {message}", file=sys.stderr)
    return 2


def _run(argv: Sequence[str]) -> int:
    _interrupt_for_test("import")
    command = _command_of(argv)
    if command == "encode" and argv[0] == "encode" and _recall_encode(argv):
        return 0
    parser = build_parser(command or "")  # "": no command given, list them all
    args = parser.parse_args(argv)
    args.command_argv = list(argv)[1:]  # the command's own arguments (the encode request memo)
    if getattr(args, "config_cls", None) is not None:  # the generated config flags, before any work
        from shopsim.experiments.flags import config_from_args

        config_from_args(args, args.config_cls)
    _interrupt_for_test("command")
    code = int(args.func(args))
    sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shopsim`` console script (see the module docstring for which errors
    are one line and which keep their traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get(_TRACEBACK_ENV))
    hook = sys.unraisablehook
    if not debug:
        sys.unraisablehook = _quiet_unraisable
    try:
        return _run(argv)
    except ShopsimError as exc:
        if debug:
            raise
        return _error(" ".join(str(exc).splitlines()))
    except BrokenPipeError:  # output piped into `head` and the like
        devnull = os.open(os.devnull, os.O_WRONLY)  # so the exit-time flush of stdout cannot fail
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if _is_interrupt(exc):
            print("shopsim: interrupted", file=sys.stderr)
            return 130
        if debug:
            raise
        if isinstance(exc, OSError):
            return _error(_os_error_message(exc))
        if isinstance(exc, MemoryError):
            return _error("out of memory; try a smaller input or a machine with more memory")
        message = _corrupt_file_message(exc)
        if message is None:
            raise  # a bug in shopsim: the traceback is what a bug report needs
        return _error(message)
    finally:
        sys.unraisablehook = hook


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
