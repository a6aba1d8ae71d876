"""``shopsim run CONFIG.yaml --out DIR``: the one place that chains the stages.

    prepare → encode → fit simulator → train → evaluate → report

Every stage writes into its own folder of ``DIR`` and is **reused** when its inputs are
unchanged (by content hash): ``data/`` (hash of the source files and the prepare options),
``encoder/`` (the encoder's manifest), ``simulator/`` (the fit's input hash), and the agents
stage (``results.json``; hash of the simulator, the shop, the agents, the evaluation and the
reward — a reward callable whose source cannot be read turns this reuse off, with a note).
``DIR/config.yaml`` is the resolved config the results came from.

Reliability (:mod:`shopsim.artifacts`): the run folder is locked (a second ``shopsim run`` on
it fails at once); ``data/``, ``encoder/`` and ``simulator/`` are verified artifacts, written
beside their target and swapped in when complete; ``config.yaml``, ``results.json`` and
``results.md`` are replaced atomically. A stage marker (``DIR/data.stage.json``,
``DIR/stage.json``) records the inputs' key and the sha256 of the manifest / results it vouches
for, so it never vouches for files written after it.

Outputs: ``data/`` (events.parquet, items.parquet, report.json), ``encoder/`` (eval.json, …),
``simulator/`` (fidelity.json, plots/), ``results.json``, ``results.md``, ``plots/returns.png``,
``models/`` (ppo.zip, dqn.zip) and ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from shopsim import __version__
from shopsim.agents.registry import NEXT_ITEM_MODELS, REGISTRY, PolicyContext
from shopsim.artifacts import (
    MANIFEST,
    boundary,
    locked,
    tidy,
    verify_artifact,
    write_text_atomic,
)
from shopsim.data import SessionLog, format_summary, prepare
from shopsim.data.next_item import NextItemTask, evaluate_scorer
from shopsim.encoders.cache import hash_files
from shopsim.envs.fitting.fit import fit_simulator
from shopsim.envs.fitting.report import fidelity_markdown
from shopsim.envs.model.simulator import Simulator
from shopsim.errors import ShopsimError
from shopsim.evaluation.in_simulator import EpisodeResults, paired_difference
from shopsim.evaluation.next_item import summarize
from shopsim.experiments.agent_stage import evaluate_policies, train_policies
from shopsim.experiments.config import RunConfig, check_prepared, selected_policies
from shopsim.experiments.encode import eval_markdown, run_encode
from shopsim.experiments.explain import SHARED_FILE
from shopsim.experiments.ope_stage import check_ope, ope_markdown, run_ope_stage
from shopsim.experiments.reporting import RESULTS_SCHEMA, results_markdown, write_plots
from shopsim.experiments.run_report import REPORT_FILE, run_report_sessions, write_report

Echo = Callable[[str], None]
STAGE_FILE = "stage.json"


STAGES = ("prepare", "encoder", "simulator", "agents")
"""The stages of a run, in order (what progress lines and the Ctrl-C message name)."""


@dataclass(frozen=True)
class SharedStages:
    """Prepared log, encoder and simulator folders built once for several runs (a sweep's trials
    with equal ``data``, ``encoder`` and ``simulator`` sections): a run given them only reads them."""

    data: Path
    encoder: Path
    simulator: Path


def shared_key(cfg: RunConfig) -> str:
    """What the shared stages of ``cfg`` depend on: its resolved data, encoder and simulator
    sections (the latter two carry the run's seed)."""
    resolved = cfg.resolved()
    return _stage_key({k: resolved[k] for k in ("data", "encoder", "simulator")} | {"version": __version__})


def build_shared(cfg: RunConfig, out: Path, echo: Echo = print) -> SharedStages:
    """Build (or reuse) the prepare, encoder and simulator stages of ``cfg`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    check_ope(cfg, "config")
    data_dir = prepare_stage(cfg, out / "data", echo)
    check_prepared(cfg, SessionLog.load(data_dir))
    enc_dir = encode_stage(cfg, data_dir, out / "encoder", echo)
    return SharedStages(data_dir, enc_dir, fit_stage(cfg, data_dir, enc_dir, out / "simulator", echo))


def run(
    cfg: RunConfig,
    out: Path,
    *,
    echo: Echo = print,
    command: str | None = None,
    shared: SharedStages | None = None,
) -> dict[str, Any]:
    """Run (or reuse) every stage of ``cfg`` into ``out``; returns the results report.

    :param command: the command line that started the run, which the Ctrl-C message repeats
        as the way to resume (default: a generic ``shopsim run CONFIG --out OUT``).
    :param shared: prepared log, encoder and simulator built beforehand for ``cfg``
        (:func:`build_shared`): only read, never written; the agents stage runs into ``out``.
    """
    if out.exists() and not out.is_dir():
        raise ShopsimError(f"{out}: exists and is not a directory; choose another --out")
    progress = _Progress(echo)
    try:
        with locked(out):  # one writer per run folder; a second `shopsim run` fails at once
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg.resolved(), sort_keys=False))
            write_text_atomic(out / "provenance.json", json.dumps(provenance(), indent=2) + "\n")
            boundary("run:config-written")
            if shared is not None:
                check_ope(cfg, "config")
                verify_artifact(shared.data, "log", "shopsim sweep (rebuilds the shared stages)")
                check_prepared(cfg, SessionLog.load(shared.data))
                data_dir, enc_dir, sim_dir = shared.data, shared.encoder, shared.simulator
                # where the report and `shopsim explain` find this run's log, encoder and simulator
                parts = ("data", "encoder", "simulator")
                where = {k: os.path.relpath(getattr(shared, k), out) for k in parts}
                write_text_atomic(out / SHARED_FILE, json.dumps(where) + "\n")
            else:
                (out / SHARED_FILE).unlink(missing_ok=True)  # this run builds its own stages
                with progress("prepare"):
                    check_ope(cfg, "config")
                    data_dir = prepare_stage(cfg, out / "data", echo)
                    # cheap checks that need the prepared log, before the expensive stages
                    check_prepared(cfg, SessionLog.load(data_dir))
                boundary("run:data-done")
                with progress("encoder"):
                    enc_dir = encode_stage(cfg, data_dir, out / "encoder", echo)
                boundary("run:encoder-done")
                with progress("simulator"):
                    sim_dir = fit_stage(cfg, data_dir, enc_dir, out / "simulator", echo)
                boundary("run:simulator-done")
            with progress("agents"):
                report = agents_stage(cfg, data_dir, enc_dir, sim_dir, out, echo)
            _add_stage_times(out / "timing.json", progress)
            page = out / REPORT_FILE
            if page.is_file() and page.stat().st_mtime_ns >= (out / "results.json").stat().st_mtime_ns:
                # written (atomically) after these very results: a rerun that reused them keeps it
                echo(f"report: kept {page} (drawn from these results; shopsim report {out} redraws it)")
            else:
                write_report(out, sessions=run_report_sessions(), echo=echo)
    except KeyboardInterrupt:
        how = command or f"shopsim run CONFIG --out {out}"
        echo(
            f"\ninterrupted during the {progress.current or 'setup'} stage after {progress.elapsed():.0f} s "
            f"(finished: {', '.join(progress.done) or 'none'}); resume with the same command: {how}  "
            "(finished stages are reused, training continues from its latest checkpoint)"
        )
        raise
    echo(f"run finished in {progress.elapsed():.0f} s; files in {out}/:")
    for rel, what in RUN_FILES:
        if (out / rel).exists():
            echo(f"  {rel:<24} {what}")
    return report


def _add_stage_times(path: Path, progress: _Progress) -> None:
    """Add the wall time of every stage of this invocation to timing.json (``stages``; a stage
    reused from an earlier invocation shows the seconds it took to check, not to build)."""
    timing = json.loads(path.read_text()) if path.exists() else {}
    timing["stages"] = {
        **{k: round(v, 1) for k, v in progress.seconds.items()},
        "total": round(progress.elapsed(), 1),
    }
    write_text_atomic(path, json.dumps(timing) + "\n")


def provenance() -> dict[str, Any]:
    """What produced a run (``provenance.json``): the shopsim source's git commit (and whether
    its work tree had uncommitted changes; None outside a git checkout), the versions of shopsim,
    torch and Python, and torch's thread count — the README's generated blocks cite the commit."""
    import platform
    import subprocess

    src = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "shopsim": __version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


RUN_FILES = (
    ("results.md", "the results table (policies, intervals, paired differences)"),
    ("results.json", "the same, machine-readable (docs/schemas/results.schema.json)"),
    ("report.html", "the whole run on one page (open it in a browser; shopsim report DIR redraws it)"),
    ("plots/", "returns, per-policy metrics, learning curves, fidelity plots"),
    ("config.yaml", "the resolved config the results came from"),
    ("timing.json", "seconds per stage and per step of the agents stage"),
    ("provenance.json", "the commit, versions and thread count that produced the run"),
    ("models/", "the trained agents (load with shopsim.agents.saving.load_agent)"),
    ("tensorboard/", "training logs (tensorboard --logdir DIR/tensorboard)"),
    ("data/report.json", "rows in and out, drops by reason"),
    ("encoder/eval.json", "the encoder's held-out next-item metrics"),
    ("simulator/fidelity.json", "how faithful the simulated shopper is"),
)
"""What a finished run folder holds (printed at the end of a run)."""


class _Progress:
    """Stage lines: ``[2/4] encoder …`` before, ``encoder: done in 12.3 s`` after."""

    def __init__(self, echo: Echo) -> None:
        self.echo, self.t0 = echo, time.perf_counter()
        self.current: str | None = None
        self.done: list[str] = []
        self.seconds: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        i = STAGES.index(name) + 1
        self.echo(f"[{i}/{len(STAGES)}] {name} …")
        t = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t
        self.echo(f"{name}: done in {self.seconds[name]:.1f} s (run: {self.elapsed():.0f} s)\n")
        self.done.append(name)
        self.current = None


# ---------------------------------------------------------------------- stage reuse
def finished(out: Path) -> bool:
    """True when the run folder ``out`` holds a results.json its agents-stage marker vouches for
    (a run killed before or while writing it is not finished)."""
    try:
        stored = json.loads((out / STAGE_FILE).read_text())
        return bool(stored.get("sha256") == _sha256(out / "results.json"))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def _stage_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _is_current(marker: Path, key: str, guarded: Path) -> bool:
    """True when the stage marker ``marker`` records ``key`` and the sha256 of ``guarded`` (the
    stage's manifest.json or results.json) as it is now: the marker cannot vouch for a file
    written after it (a rerun with other inputs that was interrupted)."""
    try:
        stored = json.loads(marker.read_text())
        return bool(stored.get("key") == key and stored.get("sha256") == _sha256(guarded))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def _mark(marker: Path, key: str, guarded: Path) -> None:
    write_text_atomic(
        marker, json.dumps({"key": key, "sha256": _sha256(guarded), "shopsim": __version__}) + "\n"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


# ---------------------------------------------------------------------- stages
def prepare_stage(cfg: RunConfig, out: Path, echo: Echo = print) -> Path:
    """Canonical tables of the configured log (reused when the source and options are unchanged)."""
    src = cfg.data.source_path()
    files = _source_files(src) + ([cfg.data.items] if cfg.data.items else [])
    opts = cfg.data.prepare_options()
    key = _stage_key({"files": hash_files(files), "options": cfg.resolved()["data"], "version": __version__})
    marker = out.with_name(f"{out.name}.{STAGE_FILE}")
    tidy(out)  # a reused folder gets the leftovers of a killed earlier write swept too
    if _is_current(marker, key, out / MANIFEST) and _verified(out, "log", "shopsim run CONFIG --out DIR"):
        echo(f"prepare: reused {out} (same source and options)")
        return out
    result = prepare(src, opts, out)
    echo(format_summary(result.to_json()))
    echo(f"  wrote {out} ({result.timing_s:.2f} s)\n")
    _mark(marker, key, out / MANIFEST)
    return out


def _verified(folder: Path, kind: str, rebuild: str) -> bool:
    try:
        verify_artifact(folder, kind, rebuild)
    except ShopsimError:
        return False
    return True


def encode_stage(cfg: RunConfig, data_dir: Path, out: Path, echo: Echo = print) -> Path:
    """The item/state encoder and its next-item evaluation (the encoder's own cache decides reuse)."""
    e = cfg.encoder
    echo(
        "encoder (frozen backbone + trained towers):" if e.finetune == "none" else f"encoder ({e.finetune}):"
    )
    report = run_encode(data_dir, out, e.encoder_config(), ablation=e.ablation, n_boot=e.n_boot, text=e.text)
    echo(eval_markdown(report))
    where = (
        "reused (same inputs)" if report.get("served_from_cache") else f"{report['timing_s']['total']:.1f} s"
    )
    echo(f"  wrote {out} ({where})\n")
    return out


def fit_stage(cfg: RunConfig, data_dir: Path, enc_dir: Path, out: Path, echo: Echo = print) -> Path:
    """The shopper simulator and its fidelity report (reused when its inputs are unchanged)."""
    echo("shopper simulator:")
    _, fid = fit_simulator(data_dir, enc_dir, out, cfg.simulator, reuse=True)
    echo(fidelity_markdown(fid))
    where = "reused (same inputs)" if fid.get("reused") else f"{fid['timing_s']:.1f} s"
    echo(f"  wrote {out} ({where})\n")
    return out


def agents_stage(
    cfg: RunConfig, data_dir: Path, enc_dir: Path, sim_dir: Path, out: Path, echo: Echo = print
) -> dict[str, Any]:
    """Train the RL agents, evaluate every policy, write results.json / results.md / plots."""
    verify_artifact(sim_dir, "simulator", f"shopsim run CONFIG --out {out}")
    verify_artifact(enc_dir, "encoder", f"shopsim run CONFIG --out {out}")
    sim_meta = json.loads((sim_dir / "simulator.json").read_text())
    reward_key = cfg.reward_key()
    resolved = cfg.resolved()
    key = _stage_key(
        {
            "simulator": sim_meta.get("inputs"),
            "encoder_eval": hash_files([enc_dir / "eval.json"]),
            "config": {k: resolved[k] for k in ("seed", "shop", "agents", "evaluation", "ope")},
            "reward": reward_key,
            "version": __version__,
        }
    )
    if reward_key is None:
        echo("note: the reward callable's source cannot be read, so the agents stage is never reused")
    elif _is_current(out / STAGE_FILE, key, out / "results.json"):
        echo(f"agents: reused {out / 'results.json'} (same simulator, config and reward)")
        report: dict[str, Any] = json.loads((out / "results.json").read_text())
        echo(results_markdown(report))
        return report
    echo("agents and baselines in the simulator:")
    report, timing = train_and_evaluate(cfg, data_dir, enc_dir, sim_dir, out, echo)
    (out / STAGE_FILE).unlink(missing_ok=True)  # the old marker never vouches for new results
    # Wall times vary from run to run: they live beside results.json, so that the same config,
    # seed and thread count give a byte-identical results.json (resumed or not).
    write_text_atomic(out / "timing.json", json.dumps({k: round(v, 1) for k, v in timing.items()}) + "\n")
    write_text_atomic(out / "results.json", json.dumps(report, indent=2) + "\n")
    md = results_markdown(report) + ("\n\n" + ope_markdown(report["ope"]) if "ope" in report else "")
    write_text_atomic(out / "results.md", md + "\n")
    boundary("run:results-written")
    write_plots(report, out, sim_dir)
    if reward_key is not None:
        _mark(out / STAGE_FILE, key, out / "results.json")
    echo(results_markdown(report))
    return report


def train_and_evaluate(
    cfg: RunConfig, data_dir: Path, enc_dir: Path, sim_dir: Path, out: Path, echo: Echo = print
) -> tuple[dict[str, Any], dict[str, float]]:
    """The results report (results.json) — every selected policy on the same test sessions —
    and the seconds each step took (timing.json)."""
    sim = Simulator.load(sim_dir)
    log = SessionLog.load(data_dir)
    names = selected_policies(cfg, impressions=bool(sim.meta.get("impressions")))
    ctx = PolicyContext(cfg.shop.slate_size, seed=cfg.seed, log=log)
    policies, timing = train_policies(cfg, sim, ctx, names, out, echo=echo)
    t0 = time.perf_counter()
    results = evaluate_policies(cfg, sim, policies, out=out, echo=echo)
    timing["evaluate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = deployable_reference(cfg, sim, policies, out, echo)
    timing["choose_reference"] = time.perf_counter() - t0
    offline = offline_metrics(cfg, log, ctx, names, enc_dir) if cfg.evaluation.offline else {}
    report = results_report(cfg, sim, sim_dir, results, offline, reference)
    if cfg.ope.enabled:
        t0 = time.perf_counter()
        report["ope"] = run_ope_stage(
            cfg.ope,
            sim,
            policies,
            shop=cfg.shop_for("test"),
            reward=cfg.reward_fn(),
            seed=cfg.seed,
            truth=results,
            log_dir=data_dir,
            out=out,
        )
        timing["ope"] = time.perf_counter() - t0
    return report, timing


DEPLOYABLE_KINDS = ("supervised", "cf")
"""Kinds of policy the *deployable reference* is chosen from: the rankers a shop runs today."""
MYOPIC_REFERENCE = "click_model_greedy"
"""The *myopic reference*: ranks by the simulator's own click model, an upper bound for myopic ranking."""


def deployable_reference(
    cfg: RunConfig, sim: Simulator, policies: dict[str, Any], out: Path | None = None, echo: Echo = print
) -> dict[str, Any] | None:
    """The best supervised or CF ranker of the run, chosen by its return on **valid** sessions
    (``evaluation.reference_episodes`` of them) — never on the test sessions it is compared on.
    None when the run has no such ranker."""
    candidates = {
        n: p for n, p in policies.items() if REGISTRY[n].kind in DEPLOYABLE_KINDS and REGISTRY[n].deployable
    }
    if not candidates:
        return None
    split = "valid" if len(sim.episodes.get("valid", ())) else "train"
    res = evaluate_policies(
        cfg, sim, candidates, split=split, episodes=cfg.evaluation.reference_episodes, out=out, echo=echo
    )
    returns = {n: float(r.returns.mean()) for n, r in res.items()}
    best = max(returns, key=lambda n: (returns[n], -list(returns).index(n)))  # ties: registry order
    return {
        "name": best,
        "chosen_on": split,
        "episodes": cfg.evaluation.reference_episodes,
        "returns": returns,
    }


def offline_metrics(
    cfg: RunConfig, log: SessionLog, ctx: PolicyContext, names: list[str], enc_dir: Path
) -> dict[str, dict[str, float]]:
    """Held-out next-item Recall@10 / NDCG@10 of the policies that have a next-item model."""
    task = NextItemTask.from_log(log, "test")
    n_items = len(log.items)
    # random: a constant score ties every item, and the expected-rank protocol then gives the
    # exact expected metrics of a uniformly random ranking
    scorers: dict[str, Any] = (
        {"random": lambda hist: np.zeros((len(hist), n_items))} if "random" in names else {}
    )
    scorers |= {n: ctx.next_item_model(n) for n in NEXT_ITEM_MODELS if n in names}
    out: dict[str, dict[str, float]] = {}
    for name, sc in scorers.items():
        s = summarize(task, evaluate_scorer(task, sc), n_boot=cfg.evaluation.offline_n_boot, seed=cfg.seed)
        o = s["overall"]
        out[name] = {"recall@10": o["recall@10"]["value"], "ndcg@10": o["ndcg@10"]["value"]}  # type: ignore[index]
    enc_eval = json.loads((enc_dir / "eval.json").read_text()) if (enc_dir / "eval.json").exists() else {}
    tt = enc_eval.get("models", {}).get(enc_eval.get("final_model", "two_tower_frozen"), {}).get("overall")
    if tt and "bert_two_tower" in names:
        out["bert_two_tower"] = {"recall@10": tt["recall@10"]["value"], "ndcg@10": tt["ndcg@10"]["value"]}
    return out


KINDS_EXTRA = {"ppo_sampled": "rl"}
"""Kinds of result rows that are not registered policies (PPO's sampled slates)."""


def results_report(
    cfg: RunConfig,
    sim: Simulator,
    sim_dir: Path,
    results: dict[str, EpisodeResults],
    offline: dict[str, dict[str, float]],
    reference: dict[str, Any] | None,
) -> dict[str, Any]:
    """results.json (docs/schemas/results.schema.json): per policy its kind, in-simulator summary
    with paired differences to the deployable reference, ``click_model_greedy`` and ``random``
    (when they ran), and offline metrics."""
    fid = json.loads((sim_dir / "fidelity.json").read_text())
    report: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "dataset": sim.meta.get("format", "?"),
        "seed": cfg.seed,
        "reward": cfg.reward_label(),
        "config": cfg.resolved(),
        "references": {
            "deployable": reference["name"] if reference else None,
            "deployable_choice": reference,
            "myopic": MYOPIC_REFERENCE if MYOPIC_REFERENCE in results else None,
        },
        "policies": {},
        "fidelity": fid.get("click", {}).get("held_out", {}).get("auc", {}),
        # Training results depend on torch's thread count in the last bits (reductions are
        # summed in another order), so a result names the count it was produced with.
        "torch_threads": torch.get_num_threads(),
    }
    n_boot = cfg.evaluation.n_boot
    refs = {"deployable": reference["name"] if reference else None, MYOPIC_REFERENCE: MYOPIC_REFERENCE}
    refs["random"] = "random"
    for name, res in results.items():
        kind = KINDS_EXTRA.get(name) or REGISTRY[name].kind
        entry: dict[str, Any] = {"kind": kind, "sim": res.summary(n_boot=n_boot, seed=cfg.seed)}
        for label, ref in refs.items():
            if ref is not None and ref in results:
                entry["sim"][f"minus_{label}"] = paired_difference(
                    res, results[ref], n_boot=n_boot, seed=cfg.seed
                )
        if name in offline:
            entry["offline"] = offline[name]
        report["policies"][name] = entry
    return report
