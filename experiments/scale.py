"""``shopsim bench --catalog 10000,100000,1000000``: the simulator at catalog scale.

For each catalog size I, with ``events_per_item`` × I events (10M at 1M items):

1. **generate** a shop (:func:`shopsim.data.generated.write_generated_shop`: items CSV + events CSV);
2. **prepare** it (``shopsim data prepare --format events --items``, DuckDB, streaming): rows/s;
3. **encode**: the encoder's two towers *without text* (``use_text=False``: category, brand and
   price-band embeddings + item-ID embeddings, the :class:`~shopsim.encoders.finetune.TwoTower`
   of ``shopsim encode``), trained for a fixed number of steps with a sampled softmax (each
   step's targets, last items and ``negatives`` random items as candidates) — ``shopsim encode``'s
   full-catalog softmax and full-catalog valid Recall@10 per epoch are O(I) per step and out of
   reach at 1M items on 2 cores; the vectors' quality does not enter the speed figures;
4. **fit** the simulator (``fit_simulator``, default configuration): wall time, peak RSS;
5. **step**: ``ShopperEnv`` and ``ShopperVecEnv`` (B = 256) at N = 100, k = 10 under uniformly
   random slates: median of 5 timed runs after a warm-up.

Every stage runs in its own child process (``python -m shopsim.experiments.scale STAGE``), so
each peak RSS (``ru_maxrss``) is that stage's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shopsim.errors import ShopsimError

SCALE_SEED = 0
ENCODER_STEPS = 60
"""Sampled-softmax steps of the scale encoder (a time box: every step runs the item tower over
the whole catalog)."""
ENCODER_NEGATIVES = 4096
FIT_CONFIG: dict[str, Any] = {"max_sessions": 2_000, "baselines": False}
"""The scale bench's simulator fit: the default configuration except that the response models,
the calibration and the fidelity replay see at most 2,000 valid / test sessions (their cost
grows with the events, not the catalog; the catalog still uses every event) and the fidelity
report's comparison models (popularity-, metadata-, history-only) are not fitted."""
STEP_RUNS = 5
VEC_ENVS = 256


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kB


def _stage_generate(root: Path, n_items: int, n_events: int) -> dict[str, Any]:
    from shopsim.data.generated import write_generated_shop

    t0 = time.perf_counter()
    shop = write_generated_shop(root / "shop", n_items, n_events, seed=SCALE_SEED)
    return {
        "generate_s": round(time.perf_counter() - t0, 1),
        "events": shop.n_events,
        "sessions": shop.n_sessions,
        "events_csv_mb": round(shop.events_path.stat().st_size / 2**20, 1),
    }


def _stage_prepare(root: Path) -> dict[str, Any]:
    from shopsim.data import SessionLog, prepare
    from shopsim.data.formats import PrepareOptions

    shop = root / "shop"
    t0 = time.perf_counter()
    res = prepare(
        shop / "events.csv", PrepareOptions(format="events", items=shop / "items.csv"), root / "data"
    )
    wall = time.perf_counter() - t0
    log = SessionLog.load(root / "data")
    return {
        "prepare_s": round(wall, 1),
        "prepare_rows_per_s": round(res.rows_in / wall),
        "events_out": int(res.rows_out),
        "items_out": len(log.items),
        "train_events": int((log.events["split"] == "train").sum()),
    }


def train_scale_encoder(
    data_dir: Path, out: Path, *, steps: int = ENCODER_STEPS, seed: int = SCALE_SEED
) -> dict[str, Any]:
    """Train and save (as an ``encoder`` folder ``out``) the attribute + ID towers without text,
    with a sampled softmax for ``steps`` steps (see the module docstring)."""
    import torch

    from shopsim.artifacts import write_artifact
    from shopsim.data import SessionLog
    from shopsim.encoders.finetune import EncoderConfig, EncoderTrainer
    from shopsim.encoders.train import FROZEN, TrainedEncoder, save_encoder

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = EncoderConfig(use_text=False, progress=False, seed=seed)
    log = SessionLog.load(data_dir)
    t0 = time.perf_counter()
    text = np.zeros((len(log.items), 0), np.float32)
    trainer = EncoderTrainer(log, cfg, text)
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(trainer.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_pairs, n_items = len(trainer.train_task), len(log.items)
    losses = []
    t0 = time.perf_counter()
    trainer.model.train()
    for _ in range(steps):
        rows = rng.choice(n_pairs, min(cfg.batch_size, n_pairs), replace=False)
        last = [trainer.train_task.histories[r][-1] for r in rows]
        cand = np.unique(
            np.r_[trainer.train_task.targets[rows], last, rng.integers(0, n_items, ENCODER_NEGATIVES)]
        )
        loss = trainer._loss(rows, trainer.cat.text_vecs, cand)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - t0
    trainer.best_valid = float("nan")
    result = TrainedEncoder(
        trainer=trainer,
        text_vecs=text,
        text_cache_hit=False,
        text_decision={"mode": "off", "use_text": False},
        valid_recall={},
        final=FROZEN,
        timing_s={"setup": round(setup_s, 2), "train": round(train_s, 2)},
    )
    with write_artifact(out, "encoder", stage="encode", inputs={"scale_bench": True, "steps": steps}) as tmp:
        save_encoder(result, cfg, tmp)
    return {
        "encoder": "TwoTower without text (attributes + IDs), sampled softmax",
        "encoder_steps": steps,
        "encoder_negatives": ENCODER_NEGATIVES,
        "encoder_loss_first_last": [round(losses[0], 3), round(losses[-1], 3)] if losses else [],
        "encoder_setup_s": round(setup_s, 1),
        "encoder_train_s": round(train_s, 1),
    }


def _stage_encode(root: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = train_scale_encoder(root / "data", root / "encoder")
    out["encode_s"] = round(time.perf_counter() - t0, 1)
    return out


def _stage_fit(root: Path) -> dict[str, Any]:
    from shopsim.envs.fitting.fit import SimulatorConfig, fit_simulator

    cfg = SimulatorConfig(**FIT_CONFIG)
    t0 = time.perf_counter()
    sim, report = fit_simulator(root / "data", root / "encoder", root / "sim", cfg, progress=False)
    wall = time.perf_counter() - t0
    return {
        "fit_s": round(wall, 1),
        "fit_config": FIT_CONFIG,
        "fit_click_auc": report["click"]["held_out"]["auc"]["simulator"],
        "embedding_neighbours": sim.meta.get("catalog", {}).get("embedding_neighbours"),
        "catalog_npz_mb": round((root / "sim" / "catalog.npz").stat().st_size / 2**20, 1),
    }


def step_times(
    simulator: Path,
    *,
    n_candidates: int = 100,
    slate_size: int = 10,
    seconds: float = 2.0,
    split: str = "train",
) -> dict[str, Any]:
    """Median µs per step of ``ShopperEnv`` and per batched step of ``ShopperVecEnv`` (B =
    :data:`VEC_ENVS`) under uniformly random slates (5 timed runs after a warm-up run), in the
    observation mode the agents train with (``TRAINING_OBSERVATION``: no candidate-vector copy)."""
    from shopsim.agents.training import TRAINING_OBSERVATION
    from shopsim.envs.env import ShopperEnv
    from shopsim.envs.vec_env import ShopperVecEnv

    def median(run: Any) -> float:
        run()
        return float(np.median([run() for _ in range(STEP_RUNS)]))

    env = ShopperEnv(
        simulator,
        n_candidates=n_candidates,
        slate_size=slate_size,
        split=split,
        observation=TRAINING_OBSERVATION,
    )
    env.core.precompute_start_pages()
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(4096)]

    def single() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / STEP_RUNS:
            _, _, term, trunc, _ = env.step(actions[n % len(actions)])
            n += 1
            if term or trunc:
                env.reset()
        return (time.perf_counter() - t0) / n * 1e6

    single_us = median(single)
    vec = ShopperVecEnv(
        simulator,
        VEC_ENVS,
        n_candidates=n_candidates,
        slate_size=slate_size,
        seed=0,
        split=split,
        observation=TRAINING_OBSERVATION,
    )
    vec.core._start_cache = env.core._start_cache  # same simulator and split: share the first pages
    vec.reset()
    rng = np.random.default_rng(0)
    acts = [rng.integers(0, n_candidates, (VEC_ENVS, slate_size)) for _ in range(16)]

    def batched() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / STEP_RUNS:
            vec.step(acts[n % len(acts)])
            n += 1
        return (time.perf_counter() - t0) / n * 1e6

    vec_us = median(batched)
    return {
        "step_n_candidates": n_candidates,
        "step_slate_size": slate_size,
        "env_step_us": round(single_us, 1),
        f"vec{VEC_ENVS}_step_us": round(vec_us, 1),
        f"vec{VEC_ENVS}_steps_per_s": round(VEC_ENVS / vec_us * 1e6),
    }


def _stage_step(root: Path) -> dict[str, Any]:
    """Step times starting from the train sessions (as training does; their number grows with
    the log, and beyond the engine's first-page cache resets compute their first page) and from
    the test sessions (at most ``FIT_CONFIG["max_sessions"]``, all cached: the catalog's share)."""
    out = step_times(root / "sim")
    test = step_times(root / "sim", split="test")
    out.update({f"{k}_test": v for k, v in test.items() if k.endswith(("_us", "_per_s"))})
    from shopsim.envs.model.simulator import Simulator

    sim = Simulator.load(root / "sim")
    out["train_sessions"] = len(sim.episodes["train"])
    out["test_sessions"] = len(sim.episodes["test"])
    return out


STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "generate": _stage_generate,
    "prepare": _stage_prepare,
    "encode": _stage_encode,
    "fit": _stage_fit,
    "step": _stage_step,
}


BUILD_STAGES = ("generate", "prepare", "encode", "fit")
"""The stages run per size before the step stage (which runs for every size at the end)."""


def _child(stage: str, root: Path, *args: int) -> dict[str, Any]:
    """Run ``stage`` in a child process; its figures plus wall time and its own peak RSS
    (``STAGE_peak_rss_mb``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "shopsim.experiments.scale", stage, str(root), *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"scale bench {stage} failed: {proc.stderr.strip()[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out[f"{stage}_wall_s"] = round(wall, 1)
    out[f"{stage}_peak_rss_mb"] = out.pop("peak_rss_mb")
    print(f"scale {root.name}: {stage} done {out}", file=sys.stderr, flush=True)
    return out


def bench_catalog_scale(
    sizes: list[int], *, events_per_item: int = 10, work: Path | None = None, keep: bool = False
) -> dict[str, Any]:
    """Generate, prepare, encode, fit and step a shop of each catalog size (module docstring).

    :param work: folder for the generated shops (default: a temporary folder).
    :param keep: keep each size's folder (default: removed once measured).
    """
    base = Path(tempfile.mkdtemp(prefix="shopsim-scale-")) if work is None else Path(work)
    results: list[dict[str, Any]] = []
    roots: list[Path] = []
    try:
        for n_items in sizes:
            root = base / f"items_{n_items}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            roots.append(root)
            row: dict[str, Any] = {"items": n_items, "events_requested": events_per_item * n_items}
            for stage in BUILD_STAGES:
                extra = (n_items, events_per_item * n_items) if stage == "generate" else ()
                row.update(_child(stage, root, *extra))
            for name in ("shop", "data", "encoder"):  # only the simulator is stepped below
                if not keep:
                    shutil.rmtree(root / name, ignore_errors=True)
            results.append(row)
        # step times last and back to back, so every size is timed under the same machine load
        for row, root in zip(results, roots, strict=True):
            row.update(_child("step", root))
    finally:
        if not keep:
            for root in roots:
                shutil.rmtree(root, ignore_errors=True)
            if work is None:
                shutil.rmtree(base, ignore_errors=True)
    return scale_summary(results)


def scale_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON of the scale bench: per-size rows and the step-time ratios largest / smallest."""
    out: dict[str, Any] = {
        "what": "shopsim bench --catalog: generated shops, events ≈ 10 × items; 1 thread; see "
        "shopsim.experiments.scale",
        "machine": {"cpus": os.cpu_count()},
        "sizes": results,
    }
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        out["step_time_ratio"] = {
            "sizes": [lo["items"], hi["items"]],
            "env": round(hi["env_step_us"] / lo["env_step_us"], 3),
            f"vec{VEC_ENVS}": round(hi[f"vec{VEC_ENVS}_step_us"] / lo[f"vec{VEC_ENVS}_step_us"], 3),
        }
        if "env_step_us_test" in lo and "env_step_us_test" in hi:
            out["step_time_ratio"]["env_test"] = round(hi["env_step_us_test"] / lo["env_step_us_test"], 3)
            out["step_time_ratio"][f"vec{VEC_ENVS}_test"] = round(
                hi[f"vec{VEC_ENVS}_step_us_test"] / lo[f"vec{VEC_ENVS}_step_us_test"], 3
            )
    return out


def scale_table(report: dict[str, Any]) -> str:
    """The README table of a scale-bench JSON (one row per catalog size)."""
    v = f"vec{VEC_ENVS}"
    head = (
        "| items | events | prepare rows/s | encode s | fit s | fit peak RSS GB | neighbours | recall@M "
        f"| env step µs (train / test starts) | {v} step µs (train / test starts) |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in report["sizes"]:
        nb = r.get("embedding_neighbours") or {}
        recall = nb.get("recall_at_m")
        lines.append(
            f"| {r['items']:,} | {r['events']:,} | {r['prepare_rows_per_s']:,} | {r['encode_s']} "
            f"| {r['fit_s']} | {r['fit_peak_rss_mb'] / 1024:.2f} | {nb.get('kind', '?')} "
            f"| {'—' if recall is None else recall} | {r['env_step_us']} / {r.get('env_step_us_test', '—')} "
            f"| {r[f'{v}_step_us']} / {r.get(f'{v}_step_us_test', '—')} |"
        )
    text = head + "\n".join(lines) + "\n"
    if "step_time_ratio" in report:
        q = report["step_time_ratio"]
        text += (
            f"\nStep time ratio {q['sizes'][1]:,} / {q['sizes'][0]:,} items: env {q['env']}, {v} {q[v]} "
            f"(train starts); env {q.get('env_test', '—')}, {v} {q.get(f'{v}_test', '—')} (test starts).\n"
        )
    return text


def parse_sizes(text: str) -> list[int]:
    """``--catalog`` sizes: comma-separated item counts, each at least 1,000 (``1e6`` style ok)."""
    try:
        sizes = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ShopsimError(
            f"--catalog {text}: expected comma-separated item counts, e.g. 10000,100000"
        ) from None
    if not sizes or min(sizes) < 1000:
        raise ShopsimError(f"--catalog {text}: every catalog size must be at least 1,000 items")
    return sizes


STEP_NOTE = (
    "Step times: N = 100, k = 10, uniformly random slates, the training observation mode, 1 thread. "
    "*Test starts*: shoppers start from the (capped) test sessions, whose first pages are all cached — "
    "the catalog's share of a step. *Train starts*: from every train session, as training does; "
    "beyond the engine's 50,000-page first-page cache each reset draws its first page, so this "
    "figure also grows with the number of logged sessions (short generated sessions reset often).\n"
)


def write_scale_report(report: dict[str, Any], out: Path) -> None:
    """Write ``out/scale.json`` and ``out/README.md`` (its table, from :func:`scale_table`)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    readme = (
        "# Catalog scale\n\n"
        "Generated by `shopsim bench --catalog SIZES --catalog-out DIR` "
        "(`shopsim.experiments.scale`) from `scale.json`; edit neither by hand.\n\n"
        + scale_table(report)
        + "\n"
        + STEP_NOTE
        + "".join(f"\n* {note}" for note in report.get("notes", []))
        + "\n"
    )
    (out / "README.md").write_text(readme)


def main(argv: list[str] | None = None) -> int:
    """Child entry point: ``python -m shopsim.experiments.scale STAGE ROOT [ARGS]``; prints the
    stage's figures and its own peak RSS as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m shopsim.experiments.scale")
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("root", type=Path)
    parser.add_argument("args", nargs="*", type=int)
    a = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    result = STAGES[a.stage](a.root, *a.args)
    result["peak_rss_mb"] = _peak_mb()
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
