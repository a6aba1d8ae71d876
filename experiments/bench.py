"""Performance figures for ``shopsim bench`` (benchmarks, never timed tests).

- prepare throughput on the bundled REES46 sample (best of 3 runs);
- optionally, steps/s of the single and the batched shopper env of a fitted simulator;
- optionally, prepare on a generated N-row event log in a child process, reporting wall time
  and the child's peak resident memory — the bounded-memory check for large logs.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def bench_prepare_sample(repeats: int = 3) -> dict[str, Any]:
    """Prepare the bundled REES46 sample ``repeats`` times; report the best wall time."""
    from shopsim.data import PrepareOptions, prepare, sample_path

    times = []
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t0 = time.perf_counter()
            r = prepare(sample_path("rees46"), PrepareOptions(format="rees46"), Path(tmp) / str(i))
            times.append(time.perf_counter() - t0)
            rows = r.rows_in
    best = min(times)
    return {
        "prepare_rees46_sample_s": round(best, 3),
        "prepare_rees46_sample_rows": rows,
        "prepare_rees46_rows_per_s": round(rows / best),
    }


def write_generated_log(path: Path, rows: int, seed: int = 0, block: int = 1_000_000) -> None:
    """Write a synthetic event log (user_id, item_id, timestamp, event, price) as CSV."""
    rng = np.random.default_rng(seed)
    events = np.array(["view", "view", "view", "view", "cart", "purchase"])
    start = np.datetime64("2024-01-01T00:00:00")
    written = 0
    with pa.OSFile(str(path), "wb") as sink:
        first = True
        while written < rows:
            n = min(block, rows - written)
            secs = np.sort(rng.integers(0, 30 * 24 * 3600, n)) + written  # roughly increasing
            table = pa.table(
                {
                    "user_id": rng.integers(0, max(rows // 20, 1), n).astype(str),
                    "item_id": rng.integers(0, 200_000, n).astype(str),
                    "timestamp": (start + secs.astype("timedelta64[s]")).astype(str),
                    "event": events[rng.integers(0, len(events), n)],
                    "price": np.round(rng.gamma(2.0, 20.0, n), 2),
                }
            )
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=first))
            first = False
            written += n


def bench_prepare_generated(rows: int) -> dict[str, Any]:
    """Prepare a generated ``rows``-row log in a child process; time and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "log.csv"
        t0 = time.perf_counter()
        write_generated_log(src, rows)
        gen_s = time.perf_counter() - t0
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "shopsim.experiments.cli",
                "data",
                "prepare",
                str(src),
                "--format",
                "events",
                "--out",
                str(Path(tmp) / "out"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise RuntimeError(f"prepare failed: {proc.stderr.strip()[-500:]}")
        return {
            "generated_rows": rows,
            "generated_csv_mb": round(src.stat().st_size / 2**20, 1),
            "generate_s": round(gen_s, 1),
            "prepare_generated_s": round(wall, 1),
            "prepare_generated_rows_per_s": round(rows / wall),
            # ru_maxrss of children is the max over all children so far: only this one here.
            "prepare_generated_peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
        }


def bench_encoder(finetune_steps: int = 5, batch: int = 32) -> dict[str, Any]:
    """Backbone throughput on the bundled REES46 catalog: embedding (inference, length-sorted
    batches) in items/s, and full fine-tuning (forward + backward + step) in texts/s."""
    import torch

    from shopsim.data import PrepareOptions, SessionLog, prepare, sample_path
    from shopsim.encoders.backbone import load_backbone, locate_backbone
    from shopsim.encoders.embed import embed_texts, encode_batch
    from shopsim.encoders.text import item_texts

    with tempfile.TemporaryDirectory() as tmp:
        prepare(sample_path("rees46"), PrepareOptions(format="rees46"), Path(tmp))
        items = SessionLog.load(tmp).items
    texts = item_texts(items, "rees46").tolist()
    tok, bert = load_backbone(locate_backbone())
    t0 = time.perf_counter()
    embed_texts(tok, bert, texts, progress=False)
    embed_s = time.perf_counter() - t0
    unique = sorted(set(texts))
    # fine-tuning on H&M-length texts (~40 tokens) is slower: this measures the bundled catalog
    rng = np.random.default_rng(0)
    bert.train()
    opt = torch.optim.AdamW(bert.parameters(), lr=1e-5)
    t0 = time.perf_counter()
    for _ in range(finetune_steps):
        sample = [unique[i] for i in rng.choice(len(unique), batch, replace=False)]
        loss = encode_batch(tok, bert, sample, 64).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ft_s = time.perf_counter() - t0
    return {
        "embed_items": len(texts),
        "embed_unique_texts": len(unique),
        "embed_s": round(embed_s, 1),
        "embed_items_per_s": round(len(texts) / embed_s, 1),
        "embed_unique_texts_per_s": round(len(unique) / embed_s, 1),
        "finetune_full_texts_per_s": round(finetune_steps * batch / ft_s, 1),
    }


def bench_env(
    simulator: Path, *, n_candidates: int = 100, slate_size: int = 10, seconds: float = 3.0
) -> dict[str, Any]:
    """Steps per second of ``ShopperEnv`` and ``ShopperVecEnv`` under uniformly random slates
    (episodes reset as they end; median of 5 timed runs each, after one warm-up run, with the
    first pages of all logged sessions precomputed — the steady state of a training run)."""
    from shopsim.envs.env import ShopperEnv
    from shopsim.envs.vec_env import ShopperVecEnv

    def median_rate(run: Any) -> float:
        run()  # warm-up (fills the first-page cache of the logged sessions)
        return float(np.median([run() for _ in range(5)]))

    env = ShopperEnv(simulator, n_candidates=n_candidates, slate_size=slate_size)
    t0 = time.perf_counter()
    env.core.precompute_start_pages()
    cache_s = time.perf_counter() - t0
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(4096)]

    def single() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            _, _, term, trunc, _ = env.step(actions[n % len(actions)])
            n += 1
            if term or trunc:
                env.reset()
        return n / (time.perf_counter() - t0)

    figures: dict[str, Any] = {
        "env_items": env.sim.catalog.n_items,
        "env_dim": env.sim.catalog.dim,
        "env_n_candidates": n_candidates,
        "env_slate_size": slate_size,
        "env_start_pages_s": round(cache_s, 2),
        "env_single_steps_per_s": round(median_rate(single)),
    }
    rng = np.random.default_rng(0)
    for b in (64, 256, 1024):
        vec = ShopperVecEnv(simulator, b, n_candidates=n_candidates, slate_size=slate_size, seed=0)
        vec.core._start_cache = env.core._start_cache  # same simulator, same split: share the pages
        vec.reset()
        acts = [rng.integers(0, n_candidates, (b, slate_size)) for _ in range(16)]

        def batched(vec: ShopperVecEnv = vec, acts: list[np.ndarray] = acts, b: int = b) -> float:
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 5:
                vec.step(acts[n % len(acts)])
                n += 1
            return n * b / (time.perf_counter() - t0)

        figures[f"env_vec{b}_steps_per_s"] = round(median_rate(batched))
    best = max(v for k, v in figures.items() if k.startswith("env_vec"))
    figures["env_vec_speedup"] = round(best / figures["env_single_steps_per_s"], 1)
    return figures


def run_benchmarks(rows: int = 0, encoder: bool = False, simulator: Path | None = None) -> dict[str, Any]:
    """All benchmark figures as one flat dict."""
    figures: dict[str, Any] = {}
    if simulator is not None:  # a bad folder fails before a minute of other benchmarks
        from shopsim.envs.model.simulator import Simulator

        Simulator.load(simulator)
    figures.update(bench_prepare_sample())
    if simulator is not None:
        figures.update(bench_env(simulator))
    if rows > 0:
        figures.update(bench_prepare_generated(rows))
    if encoder:
        figures.update(bench_encoder())
    return figures
