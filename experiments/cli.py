"""The ``shopsim`` command line.

User errors (:class:`~shopsim.errors.ShopsimError`, bad arguments) print one line to stderr
and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from shopsim import __version__
from shopsim.errors import ShopsimError
from shopsim.experiments.flags import add_config_flags, config_from_args


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parse_map(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        canon, sep, source = pair.partition("=")
        if not sep or not canon or not source:
            raise ShopsimError(f"--map {pair!r}: expected canonical=source, e.g. --map item_id=sku")
        out[canon.strip()] = source.strip()
    return out


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

    p.add_argument("src", type=Path, metavar="SRC", help="source log file or folder")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="source log format")
    p.add_argument("--items", type=Path, help="item table (hm: articles.csv; events: any CSV/Parquet)")
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
        type=float,
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

    cfg: EncodeConfig = config_from_args(args, EncodeConfig)
    report = run_encode(
        args.data_dir, args.out, cfg.encoder_config(), ablation=cfg.ablation, n_boot=cfg.n_boot, text=cfg.text
    )
    print(eval_markdown(report))
    where = "served from the cache" if report["served_from_cache"] else "computed"
    print(
        f"{where} in {report['timing_s']['total']:.1f} s; "
        f"wrote {args.out}/eval.json, item_vectors.npy, encoder.pt"
    )
    return 0


def cmd_simulator_fit(args: argparse.Namespace) -> int:
    """``shopsim simulator fit``."""
    from shopsim.envs.fitting.fit import SimulatorConfig, fit_simulator
    from shopsim.envs.fitting.report import fidelity_markdown

    cfg: SimulatorConfig = config_from_args(args, SimulatorConfig)
    _, report = fit_simulator(args.data_dir, args.embeddings, args.out, cfg)
    print(fidelity_markdown(report))
    print(f"fitted in {report['timing_s']:.1f} s; wrote {args.out}/ (simulator.json, fidelity.json, plots/)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``shopsim run CONFIG --out DIR``: every stage of an experiment config."""
    from shopsim.experiments.config import load_config
    from shopsim.experiments.runner import run

    cfg = load_config(args.config, args.set)
    run(cfg, args.out)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """``shopsim quickstart``: ``run`` on the packaged quickstart.yaml."""
    from shopsim.experiments.config import load_config, packaged_config
    from shopsim.experiments.runner import run

    cfg = load_config(packaged_config("quickstart"), args.set, where="quickstart.yaml")
    run(cfg, args.out)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``shopsim config``: check a config, print it resolved, or print the key reference."""
    import yaml

    from shopsim.experiments.config import config_reference, load_config, packaged_config

    if args.reference:
        print(config_reference())
        return 0
    cfg = load_config(args.config or packaged_config("quickstart"), args.set, where=_config_name(args.config))
    print(yaml.safe_dump(cfg.resolved(), sort_keys=False), end="")
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
        vals = tuple(int(float(x)) for x in text.split(",") if x.strip())
    except ValueError:
        raise ShopsimError(f"{what} {text!r}: expected comma-separated numbers, e.g. 15000,30000") from None
    if not vals or min(vals) < 1:
        raise ShopsimError(f"{what} {text!r}: expected positive numbers, e.g. 15000,30000")
    return vals


def cmd_study(args: argparse.Namespace) -> int:
    """``shopsim study budget|whatif``: RL against the myopic ranker (see :mod:`.studies`)."""
    from shopsim.experiments.config import load_config, packaged_config
    from shopsim.experiments.studies import _budget_md, _whatif_md, budget_curve, whatif_sweep

    if not (args.simulator / "simulator.json").exists():
        raise ShopsimError(f"{args.simulator}: not a simulator folder (run `shopsim simulator fit` first)")
    cfg = load_config(args.config or packaged_config("quickstart"), args.set, where=_config_name(args.config))
    if args.study == "budget":
        report = budget_curve(
            args.simulator,
            args.out,
            cfg,
            ppo_budgets=_ints(args.ppo_budgets, "--ppo-budgets"),
            dqn_budgets=_ints(args.dqn_budgets, "--dqn-budgets"),
        )
        print(_budget_md(report))
        print(f"  wrote {args.out}/budget.json, budget.md, budget.png")
    else:
        try:
            strengths = tuple(float(x) for x in args.strengths.split(","))
        except ValueError:
            strengths = ()
        if not strengths or not all(0 < x < float("inf") for x in strengths):
            raise ShopsimError(f"--strengths {args.strengths!r}: expected positive numbers, e.g. 0.5,1,2")
        report = whatif_sweep(args.simulator, args.out, cfg, strengths=strengths)
        print(_whatif_md(report))
        print(f"  wrote {args.out}/whatif.json, whatif.md, whatif.png")
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
    from shopsim.experiments.ope_validate import ValidateConfig, run_validation, validation_markdown

    for flag, path in (("--sim", args.sim), ("--models", args.models), ("--data", args.data)):
        if path is not None and not path.is_dir():
            raise ShopsimError(f"{flag} {path}: no such folder")
    cfg: ValidateConfig = config_from_args(args, ValidateConfig)
    report = run_validation(args.sim, args.out, cfg, models=args.models, data=args.data, results=args.results)
    print(validation_markdown(report))
    extra = f"; added ope blocks to {args.results}" if args.results else ""
    print(f"  wrote {args.out}/ope_validation.json, ope_validation.md, plots/ope_validation.png{extra}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``shopsim bench``: performance figures as one JSON object."""
    from shopsim.experiments.bench import run_benchmarks

    figures = run_benchmarks(rows=args.rows, encoder=args.encoder, simulator=args.simulator)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k}: {v}")
    return 0


def _add_data(sub: Any) -> None:
    data = sub.add_parser("data", help="prepare and inspect shop logs")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    prep = data_sub.add_parser(
        "prepare",
        help="write canonical events.parquet, items.parquet and report.json",
        description="Read a shop's log, validate it and write canonical tables plus a report "
        "counting every dropped row by reason.",
    )
    _add_source_args(prep)
    prep.add_argument("--out", type=Path, required=True, help="output folder")
    prep.set_defaults(func=cmd_data_prepare)
    insp = data_sub.add_parser(
        "inspect",
        help="print the prepare summary without writing anything",
        description="Run the prepare pipeline and print its summary; nothing is written.",
    )
    _add_source_args(insp)
    insp.add_argument("--json", action="store_true", help="print the full report as JSON")
    insp.set_defaults(func=cmd_data_inspect)


def _add_encode(sub: Any) -> None:
    from shopsim.experiments.config import EncodeConfig

    enc = sub.add_parser(
        "encode",
        help="embed items, train the two-tower encoder, evaluate it",
        description="Embed item texts with the (offline) BERT backbone, train the item/state "
        "encoder on train sessions and evaluate next-item ranking on the test split against "
        "popularity, co-occurrence, ALS, attribute-match and frozen-text baselines.",
    )
    enc.add_argument(
        "data_dir", type=Path, metavar="DATA_DIR", help="folder written by `shopsim data prepare`"
    )
    enc.add_argument("--out", type=Path, required=True, help="output folder")
    add_config_flags(enc, EncodeConfig, skip=("progress",))
    enc.set_defaults(func=cmd_encode)


def _add_simulator(sub: Any) -> None:
    from shopsim.envs.fitting.fit import SimulatorConfig

    simp = sub.add_parser("simulator", help="fit the shopper simulator")
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
    fit.add_argument("--out", type=Path, required=True, help="simulator folder to write")
    add_config_flags(fit, SimulatorConfig)
    fit.set_defaults(func=cmd_simulator_fit)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set agents.ppo.steps=20000 --set reward.purchase=5 "
        "(values in YAML syntax; see `shopsim config --reference`)",
    )


def _add_experiments(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run an experiment config end to end",
        description="prepare → encode → fit simulator → train → evaluate → report, each stage "
        "reused when its inputs are unchanged; writes the resolved config.yaml next to results.json.",
    )
    run.add_argument("config", type=Path, metavar="CONFIG", help="experiment YAML (see quickstart.yaml)")
    run.add_argument("--out", type=Path, required=True, help="output folder")
    _add_set(run)
    run.set_defaults(func=cmd_run)
    qs = sub.add_parser(
        "quickstart",
        help="run shopsim on the bundled REES46 sample (the packaged quickstart.yaml)",
        description="`shopsim run` on the packaged quickstart.yaml: prepare the bundled REES46 "
        "sample, train and evaluate the encoder, fit the shopper simulator, train PPO and SlateQ "
        "and evaluate every policy on the same test sessions (results.json, results.md, plots/).",
    )
    qs.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    _add_set(qs)
    qs.set_defaults(func=cmd_quickstart)
    conf = sub.add_parser(
        "config",
        help="check a config and print it resolved, or print every key",
        description="Validate CONFIG (default: the packaged quickstart.yaml) with its --set "
        "overrides and print the resolved config; --reference prints every key with its default.",
    )
    conf.add_argument("config", type=Path, nargs="?", metavar="CONFIG", help="experiment YAML")
    conf.add_argument("--reference", action="store_true", help="print the reference of every key (Markdown)")
    _add_set(conf)
    conf.set_defaults(func=cmd_config)
    pol = sub.add_parser("policies", help="list the registered policies", description="The policy registry.")
    pol.set_defaults(func=cmd_policies)


def _add_study(sub: Any) -> None:
    st = sub.add_parser(
        "study",
        help="RL vs the myopic ranker: training budgets, what-if dynamics",
        description="budget: PPO and SlateQ against click_model_greedy at growing training budgets. "
        "whatif: the same in worlds with ASSUMED dynamics (category fatigue, exposure-built intent) "
        "at growing strengths. Paired differences with 95%% intervals on the same test sessions. "
        "Shop, agents, evaluation and reward come from --config (default: quickstart.yaml).",
    )
    st.add_argument("study", choices=("budget", "whatif"), help="which study")
    st.add_argument("--simulator", type=Path, required=True, help="a fitted simulator folder")
    st.add_argument("--out", type=Path, required=True, help="output folder")
    st.add_argument("--config", type=Path, help="experiment YAML (default: the packaged quickstart.yaml)")
    _add_set(st)
    st.add_argument("--strengths", default="0.5,1,2", help="whatif: strengths of each assumed dynamic")
    st.add_argument("--ppo-budgets", default="15000,30000,60000,120000,240000", help="budget: PPO steps")
    st.add_argument("--dqn-budgets", default="15000,30000,60000,120000", help="budget: SlateQ steps")
    st.set_defaults(func=cmd_study)


def _add_ope(sub: Any) -> None:
    from shopsim.experiments.ope_validate import ValidateConfig

    ope = sub.add_parser("ope", help="off-policy evaluation")
    ope_sub = ope.add_subparsers(dest="ope_command", required=True, parser_class=_Parser)
    obd = ope_sub.add_parser(
        "obd",
        help="estimate each Open Bandit Dataset policy's CTR from the other's logs",
        description="On a folder with random/ and bts/ (one log CSV each, plus item_context.csv): "
        "estimate the uniform-random policy's CTR from the BTS logs and vice versa with every "
        "single-slot estimator, next to the on-policy truth, all with 95%% bootstrap intervals.",
    )
    obd.add_argument("folder", type=Path, help="folder with random/ and bts/")
    obd.add_argument("--out", type=Path, required=True, help="output folder (ope_obd.json)")
    obd.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    obd.add_argument("--seed", type=int, default=0, help="seed of every random draw")
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
    val.add_argument("--out", type=Path, required=True, help="output folder (ope_validation.json)")
    val.add_argument("--models", type=Path, help="folder with ppo.zip / dqn.zip (a quickstart's models/)")
    val.add_argument("--data", type=Path, help="prepared log: adds the itemknn, als and bpr baselines")
    val.add_argument("--results", type=Path, help="a results.json to annotate with per-policy ope blocks")
    add_config_flags(val, ValidateConfig)
    val.set_defaults(func=cmd_ope_validate)


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser(
        "bench", help="measure performance", description="Measure prepare throughput and memory."
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument(
        "--rows",
        type=int,
        default=0,
        help="also prepare a generated log of this many rows (e.g. 10000000)",
    )
    bench.add_argument(
        "--encoder", action="store_true", help="also measure BERT embedding items/s and fine-tuning texts/s"
    )
    bench.add_argument(
        "--simulator", type=Path, help="also measure the shopper envs' steps/s on this simulator folder"
    )
    bench.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``shopsim`` argument parser (every command has ``--help``)."""
    parser = _Parser(prog="shopsim", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"shopsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_data, _add_encode, _add_simulator, _add_experiments, _add_study, _add_ope, _add_bench):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shopsim`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ShopsimError as exc:
        print(f"shopsim: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("shopsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
