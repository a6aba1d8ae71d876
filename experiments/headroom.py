"""Does RL have headroom over the rankers a shop runs today? One table across shops and rewards.

``shopsim headroom RUN_DIR... --out DIR`` reads finished run folders (``shopsim run``), groups
them by (shop, reward) — the ``dataset`` and ``reward`` of their results.json — with one run per
seed, and writes ``headroom.json``, ``headroom.md`` (one table with its caption) and
``plots/curves.png`` / ``plots/headroom.png``. Per group:

* **Δ against both references**, for PPO (``ppo``) and SlateQ (``dqn``): the paired difference
  of session returns against the *deployable reference* (the run's best supervised/CF ranker,
  chosen on valid sessions) and the *myopic reference* (``click_model_greedy``). Each run gives
  one paired Δ (its ``sim.minus_<ref>``, or recomputed from ``evaluation/test/*.npz``); the group's
  value is the **mean over seeds** and its 95% interval is the **Student-t interval over the
  seed-level Δs with n − 1 degrees of freedom** (:func:`t_interval`). Every seed evaluates on its
  own draw of test sessions and trains its own agents, so the spread of the seed-level Δs holds
  the session noise and the seed-to-seed noise together. With one seed there is no such spread:
  the interval falls back to that run's paired session bootstrap and the table marks ``n=1``.
* **The measured dynamics** that decide whether planning can pay (:func:`run_dynamics`): mean
  session length (real test sessions), the pooled leave hazard per step (steps 1–10 of the
  train sessions), the continuation probability after a purchase step, the basket lift (median
  lift of the item pairs bought together ≥ 2 times, and how many such pairs; basket logs only)
  and category stickiness (share of consecutive interactions in the same category, and that
  share over the one expected from category popularity). They come from the simulator's
  ``fidelity.json`` (measured on the train split by :mod:`shopsim.envs.model.dynamics`), or
  from the prepared log when the fidelity report predates them.
* **The training budget** (env steps of PPO and SlateQ, parallel envs, seeds) and a **plateau
  check** of every learning curve ``models/<agent>.curve.json`` (:func:`plateau`).
* **The verdict** (:func:`verdict`): the Δ interval against the deployable reference entirely
  above 0 for PPO or SlateQ → "RL pays"; entirely below 0 for both → "RL loses"; otherwise
  "ties". The "because …" names at most two dynamics chosen by a fixed rule
  (:data:`DYNAMICS_RULES`), the same for every shop. A verdict is marked *provisional* when a
  condition of a fair comparison fails: fewer than :data:`MIN_SEEDS` seeds, unequal PPO and
  SlateQ budgets, or a curve that has not plateaued.

Nothing here tunes anything: the budgets, simulators and seeds are the runs' own.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as _sp_stats

from shopsim.artifacts import write_text_atomic
from shopsim.errors import ShopsimError
from shopsim.plots import pyplot, save_figure
from shopsim.stats import paired_difference_ci, t_mean_ci

SCHEMA = "shopsim.headroom/1"
"""Version of headroom.json's layout."""

METHODS = {"ppo": "PPO", "dqn": "SlateQ"}
"""The RL agents compared (policy name in results.json → how the table names it)."""

REFERENCES = ("deployable", "myopic")
"""The two references every Δ is taken against (results.json ``references``)."""

MYOPIC_DEFAULT = "click_model_greedy"
MIN_SEEDS = 3
"""Seeds a verdict needs before it is final (fewer: marked provisional)."""

PLATEAU_WINDOW = 0.2
"""The plateau check compares the last 20% of training steps with the 20% before them."""
PLATEAU_LEVEL = 0.95
"""… and calls a curve plateaued when the rise is within the two-sided 95% Student-t margin of the
difference of the windows' means (df = n_last + n_before − 2) …"""
PLATEAU_REL = 0.02
"""… or within 2% of the earlier window's level (smoothed curves have a tiny standard error)."""


# ---------------------------------------------------------------------- the maths
t_interval = t_mean_ci
"""Mean of seed-level values and its Student-t interval (n − 1 df): :func:`shopsim.stats.t_mean_ci`."""


def combine_seeds(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The group's Δ from the seed-level paired Δs (``{"diff", "ci95"}`` each).

    ≥ 2 seeds: mean over seeds with the Student-t interval over seeds (``method: "t"``); one
    seed: its own paired session-bootstrap interval (``method: "session-bootstrap"``)."""
    diffs = [float(d["diff"]) for d in per_seed]
    if len(diffs) == 1:
        lo, hi = per_seed[0].get("ci95") or (float("nan"), float("nan"))
        return {"mean": diffs[0], "ci95": [float(lo), float(hi)], "n": 1, "method": "session-bootstrap"}
    m, lo, hi = t_interval(diffs)
    return {"mean": m, "ci95": [lo, hi], "n": len(diffs), "method": "t"}


def sign_of(ci: Sequence[float]) -> int:
    """+1 when the interval lies entirely above 0, −1 entirely below, 0 otherwise (or unknown)."""
    lo, hi = float(ci[0]), float(ci[1])
    if math.isnan(lo) or math.isnan(hi):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def plateau(curve: dict[str, Any] | None) -> dict[str, Any]:
    """Has a learning curve stopped rising?

    The points (``steps``, ``return_mean``) with steps in the last :data:`PLATEAU_WINDOW` of
    training are compared with those in the window before: ``rise`` = mean(last) − mean(before),
    ``se`` = √(var(last)/n_last + var(before)/n_before) from the points' own scatter. The curve
    has plateaued when ``rise ≤ max(t·se, PLATEAU_REL·|mean(before)|)`` with ``t`` the 97.5%
    Student-t quantile at n_last + n_before − 2 df (the rise is within the curve's own noise);
    a fall counts as plateaued (more training would not raise it). Fewer than 2 points in either window: not
    judged (``plateaued: None``)."""
    if not curve or not curve.get("steps"):
        return {"plateaued": None, "why": "no learning curve"}
    # a window with no finished episode logs its mean as null
    s = np.array([np.nan if v is None else v for v in curve["steps"]], np.float64)
    r = np.array([np.nan if v is None else v for v in curve.get("return_mean") or []], np.float64)
    if len(r) != len(s):
        return {"plateaued": None, "why": f"curve has {len(s)} steps but {len(r)} returns"}
    keep = np.isfinite(s) & np.isfinite(r)
    s, r = s[keep], r[keep]
    if len(s) == 0:
        return {"plateaued": None, "why": "no learning curve"}
    total = float(s.max())
    last = r[s > total * (1 - PLATEAU_WINDOW)]
    before = r[(s > total * (1 - 2 * PLATEAU_WINDOW)) & (s <= total * (1 - PLATEAU_WINDOW))]
    if len(last) < 2 or len(before) < 2:
        return {"plateaued": None, "why": f"too few curve points ({len(s)}) to judge", "steps": total}
    rise = float(last.mean() - before.mean())
    se = float(math.sqrt(last.var(ddof=1) / len(last) + before.var(ddof=1) / len(before)))
    q = float(_sp_stats.t.ppf(0.5 + PLATEAU_LEVEL / 2, len(last) + len(before) - 2))
    tol = max(q * se, PLATEAU_REL * abs(float(before.mean())))
    return {
        "plateaued": bool(rise <= tol),
        "rise": rise,
        "se": se,
        "tolerance": tol,
        "last_mean": float(last.mean()),
        "steps": total,
    }


# ---------------------------------------------------------------------- dynamics and the rule
@dataclass(frozen=True)
class DynamicsRule:
    """One measured dynamic and when it speaks for or against planning (fixed for every shop)."""

    key: str
    favour_at: float
    """the dynamic favours RL when its value is at least this …"""
    against_below: float
    """… and speaks against it when below this (between the two: neutral)"""
    favour: str
    against: str


DYNAMICS_RULES: tuple[DynamicsRule, ...] = (
    DynamicsRule(
        "session_length",
        5.0,
        3.0,
        "long sessions (mean {session_length:.1f} steps{hazard}): what a page shows shapes later pages",
        "short sessions (mean {session_length:.1f} steps{hazard}): little future to plan for",
    ),
    DynamicsRule(
        "continuation_after_purchase",
        0.5,
        0.2,
        "shoppers go on after a purchase ({continuation_after_purchase:.2f} continue)",
        "a purchase mostly ends the session (only {continuation_after_purchase:.2f} continue)",
    ),
    DynamicsRule(
        "basket_lift",
        2.0,
        1.5,
        "complements to exploit (median lift {basket_lift} over {basket_pairs} pairs bought together ≥ 2×)",
        "few complements ({basket_pairs} pairs bought together ≥ 2×, median lift {basket_lift})",
    ),
    DynamicsRule(
        "category_stickiness",
        3.0,
        1.5,
        "sticky categories ({category_same:.0%} of next steps stay in the category, "
        "×{category_stickiness:.1f} popularity): what is shown steers what comes next",
        "little category stickiness ({category_same:.0%} same category, "
        "×{category_stickiness:.1f} popularity)",
    ),
)
"""The "because …" rule: for each dynamic its strength in favour of planning is
log(value / favour_at) and against it log(against_below / value); basket lift over fewer than
:data:`MIN_PAIRS` pairs counts as against (too few complements to exploit). "RL pays" names the
(at most) two strongest dynamics in favour, "RL loses" and "ties" the two strongest against; a
tie with no dynamic against names those in favour ("ties although …": headroom the agents did not
turn into a gain)."""

MIN_PAIRS = 20
"""Basket lift speaks for RL only over at least this many item pairs bought together ≥ 2 times."""


def _hazard_pooled(table: dict[str, Any]) -> float | None:
    """P(leave at step j | reached j) pooled over the steps of ``leave_hazard_by_step``."""
    ends = reached = 0.0
    for v in table.values():
        if isinstance(v, dict) and v.get("n") and v.get("rate") is not None and math.isfinite(v["rate"]):
            ends += v["rate"] * v["n"]
            reached += v["n"]
    return ends / reached if reached else None


def dynamics_summary(fidelity: dict[str, Any]) -> dict[str, Any]:
    """The headroom table's dynamics from a simulator's fidelity report (None where not measured)."""
    dyn = fidelity.get("dynamics", {}) or {}
    steps = (fidelity.get("replay", {}) or {}).get("steps", {}) or {}
    cont = dyn.get("continuation", {}) or {}
    same = dyn.get("same_category_next", {}) or {}
    bl = dyn.get("basket_lift", {}) or {}
    hz = dyn.get("leave_hazard_by_step")
    hz1 = (hz or {}).get("1", {}).get("rate") if hz else None
    out = {
        "session_length": steps.get("real_mean"),
        "leave_hazard": _hazard_pooled(hz) if hz else None,
        "leave_hazard_step1": hz1,
        "continuation_after_purchase": (cont.get("after_purchase") or {}).get("rate"),
        "continuation_after_other": (cont.get("after_other") or {}).get("rate"),
        "basket_lift": bl.get("median_lift") if bl.get("pairs_bought_together_twice") else None,
        "basket_pairs": bl.get("pairs_bought_together_twice", 0 if bl else None),
        "category_same": same.get("rate"),
        "category_stickiness": same.get("stickiness"),
    }
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def run_dynamics(run: Path) -> dict[str, Any]:
    """:func:`dynamics_summary` of a run folder; measured from ``data/`` (the train split) when
    its ``simulator/fidelity.json`` has no dynamics block."""
    fid_path = run / "simulator" / "fidelity.json"
    fid = _read_json(fid_path) if fid_path.exists() else {}
    if not fid.get("dynamics") and (run / "data").is_dir():
        from shopsim.data import SessionLog
        from shopsim.envs.model.dynamics import measure_dynamics

        log = SessionLog.load(run / "data")
        fid = {**fid, "dynamics": measure_dynamics(log.split("train"), log.items)}
    return dynamics_summary(fid)


def _strengths(dyn: dict[str, Any]) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """(in favour, against): (strength, text) of every dynamic past its threshold."""
    fmt: dict[str, Any] = {k: v for k, v in dyn.items() if v is not None}
    hz = dyn.get("leave_hazard")
    fmt["hazard"] = f", leave hazard {hz:.2f}/step" if hz is not None else ""
    bl = dyn.get("basket_lift")
    fmt["basket_lift"] = f"{bl:.1f}" if bl is not None else "—"
    pro: list[tuple[float, str]] = []
    con: list[tuple[float, str]] = []
    for rule in DYNAMICS_RULES:
        v = dyn.get(rule.key)
        if (
            rule.key == "basket_lift"
            and dyn.get("basket_pairs") is not None
            and dyn["basket_pairs"] < MIN_PAIRS
        ):
            reason = _say(rule.against, fmt, "basket_pairs", dyn["basket_pairs"])
            con.append((math.log(MIN_PAIRS / max(dyn["basket_pairs"], 1)), reason))
            continue
        if v is None or not math.isfinite(v):
            continue
        if v >= rule.favour_at:
            pro.append((math.log(v / rule.favour_at) + 1e-9, _say(rule.favour, fmt, rule.key, v)))
        elif v < rule.against_below:  # a value of 0 is as strong as 0.001 (no log of 0)
            con.append((math.log(rule.against_below / max(v, 1e-3)), _say(rule.against, fmt, rule.key, v)))
    return sorted(pro, key=lambda t: -t[0]), sorted(con, key=lambda t: -t[0])


def _say(template: str, fmt: dict[str, Any], key: str, value: float) -> str:
    """A rule's reason with the measured numbers; the bare value when one of them is missing."""
    try:
        return template.format(**fmt)
    except (KeyError, ValueError, TypeError):
        return f"{key.replace('_', ' ')} {value:.2f}"


def verdict(
    deltas: dict[str, dict[str, Any]],
    dyn: dict[str, Any],
    *,
    seeds: int,
    plateaus: dict[str, bool | None],
    budgets: dict[str, int | None],
) -> dict[str, Any]:
    """The one-line verdict of a group (module docstring; :data:`DYNAMICS_RULES` for "because").

    :param deltas: method → its combined Δ against the deployable reference (:func:`combine_seeds`).
    :param plateaus: method → whether every seed's curve plateaued (None: not judged).
    :param budgets: method → env steps of training.
    """
    signs = {m: sign_of(d["ci95"]) for m, d in deltas.items()}
    if not signs:
        return {
            "word": "not compared",
            "text": "not compared: no Δ of PPO or SlateQ against a deployable reference in these runs "
            "(no RL agent, or no supervised/CF ranker ran).",
            "because": [],
            "qualifiers": [],
            "provisional": True,
        }
    if any(s > 0 for s in signs.values()):
        word = "RL pays"
        lead = max((m for m in signs if signs[m] > 0), key=lambda m: deltas[m]["ci95"][0])
    elif all(s < 0 for s in signs.values()):
        word = "RL loses"
        lead = max(signs, key=lambda m: deltas[m]["ci95"][1])
    else:
        word = "ties"
        lead = max(signs, key=lambda m: deltas[m]["mean"])
    pro, con = _strengths(dyn)
    if word == "RL pays":
        because = [t for _, t in pro[:2]]
        joint = "because " + "; ".join(because) if because else "though no measured dynamic stands out"
    elif con:
        because = [t for _, t in con[:2]]
        joint = "because " + "; ".join(because)
    elif word == "ties" and pro:
        because = [t for _, t in pro[:2]]
        joint = "although " + "; ".join(because) + " (headroom the agents did not turn into a gain)"
    else:
        because = []
        joint = "with no measured dynamic against planning (the agents fall short of the ranker)"
    d = deltas[lead]
    qualifiers = []
    if seeds < MIN_SEEDS:
        qualifiers.append(f"{seeds} seed{'s' if seeds != 1 else ''} < {MIN_SEEDS}")
    steps = {m: b for m, b in budgets.items() if b}
    if len(set(steps.values())) > 1:
        qualifiers.append("unequal budgets: " + " vs ".join(f"{METHODS[m]} {b:,}" for m, b in steps.items()))
    flat = [METHODS[m] for m, p in plateaus.items() if p is False]
    unknown = [METHODS[m] for m, p in plateaus.items() if p is None]
    if flat:
        qualifiers.append("not plateaued: " + ", ".join(flat))
    if unknown:
        qualifiers.append("plateau not judged: " + ", ".join(unknown))
    text = f"{word} ({METHODS[lead]} {_fmt_ci(d)}) {joint}"
    if qualifiers:
        text += f" (provisional: {'; '.join(qualifiers)})"
    return {
        "word": word,
        "lead": lead,
        "because": because,
        "qualifiers": qualifiers,
        "provisional": bool(qualifiers),
        "text": text + ".",
    }


# ---------------------------------------------------------------------- reading runs
@dataclass
class Run:
    """What the headroom table needs from one run folder."""

    path: Path
    shop: str
    reward: str
    seed: int
    config: dict[str, Any]
    config_hash: str
    references: dict[str, str | None]
    deltas: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """method → reference label → {"diff", "ci95", "episodes"}"""
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    budgets: dict[str, int | None] = field(default_factory=dict)
    dynamics: dict[str, Any] = field(default_factory=dict)
    wall_s: float | None = None
    """The whole run's wall time (timing.json ``stages.total``; None for runs before it was kept)."""
    commit: str | None = None
    """The shopsim commit that produced the run (provenance.json)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ShopsimError(f"{path}: cannot be read as JSON ({exc}); rerun the run that wrote it") from exc
    if not isinstance(obj, dict):
        raise ShopsimError(f"{path}: expected a JSON object; rerun the run that wrote it")
    return obj


def config_hash(run: Path) -> str:
    """sha256 of the run's resolved ``config.yaml``, first 12 hex digits ("" when absent)."""
    p = run / "config.yaml"
    return hashlib.sha256(p.read_bytes()).hexdigest()[:12] if p.exists() else ""


def _episodes(run: Path, policy: str) -> np.ndarray | None:
    p = run / "evaluation" / "test" / f"{policy}.npz"
    if not p.exists():
        return None
    with np.load(p) as z:
        return np.asarray(z["returns"], np.float64)


def _delta(
    run: Path, sim: dict[str, Any], method: str, ref_label: str, ref: str | None, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """The run's paired Δ of ``method`` against a reference: results.json's own
    ``minus_<label>`` / ``minus_<name>``, else recomputed from the per-episode arrays."""
    for key in (f"minus_{ref_label}", f"minus_{ref}"):
        d = sim.get(key)
        if isinstance(d, dict) and "diff" in d:
            return {
                "diff": float(d["diff"]),
                "ci95": [float(x) for x in d["ci95"]],
                "episodes": d.get("episodes"),
            }
    if ref is None:
        return None
    a, b = _episodes(run, method), _episodes(run, ref)
    if a is None or b is None:
        return None
    if a.shape != b.shape:
        raise ShopsimError(
            f"{run}/evaluation/test: {method}.npz and {ref}.npz hold different sessions "
            f"({len(a)} vs {len(b)}); rerun the run"
        )
    diff, lo, hi = paired_difference_ci(a, b, n_boot=n_boot, seed=seed)
    return {"diff": diff, "ci95": [lo, hi], "episodes": len(a)}


def load_run(path: Path) -> Run:
    """One finished run folder (results.json, config.yaml, models/*.curve.json, simulator/)."""
    res = _read_json(path / "results.json")
    for key in ("dataset", "reward", "seed", "policies"):
        if key not in res:
            raise ShopsimError(f"{path}/results.json: no '{key}' field; rerun `shopsim run` on it")
    cfg = res.get("config") or {}
    refs_in = res.get("references") or {}
    refs: dict[str, str | None] = {
        "deployable": refs_in.get("deployable"),
        "myopic": refs_in.get("myopic") or (MYOPIC_DEFAULT if MYOPIC_DEFAULT in res["policies"] else None),
    }
    ev = cfg.get("evaluation", {}) or {}
    run = Run(path, str(res["dataset"]), str(res["reward"]), int(res["seed"]), cfg, config_hash(path), refs)
    agents = cfg.get("agents", {}) or {}
    for m in METHODS:
        run.budgets[m] = (agents.get(m) or {}).get("steps")
        entry = res["policies"].get(m)
        if entry is None:
            continue
        run.deltas[m] = {}
        for label in REFERENCES:
            d = _delta(
                path, entry.get("sim", {}), m, label, refs[label], int(ev.get("n_boot", 1000)), run.seed
            )
            if d is not None:
                run.deltas[m][label] = d
        curve_path = path / "models" / f"{m}.curve.json"
        if curve_path.exists():
            run.curves[m] = _read_json(curve_path)
    run.dynamics = run_dynamics(path)
    timing = _read_json(path / "timing.json") if (path / "timing.json").exists() else {}
    total = (timing.get("stages") or {}).get("total") if isinstance(timing.get("stages"), dict) else None
    run.wall_s = float(total) if isinstance(total, int | float) else None
    prov = _read_json(path / "provenance.json") if (path / "provenance.json").exists() else {}
    run.commit = prov.get("commit") if isinstance(prov.get("commit"), str) else None
    return run


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders among ``paths``: each is a run (has results.json) or a folder whose
    sub-folders (one or two levels down) are runs."""
    out: list[Path] = []
    for p in paths:
        if (p / "results.json").is_file():
            out.append(p)
            continue
        found = sorted({r.parent for r in [*p.glob("*/results.json"), *p.glob("*/*/results.json")]})
        if not p.is_dir() or not found:
            raise ShopsimError(
                f"{p}: not a run folder (no results.json in it or below); pass `shopsim run` folders"
            )
        out.extend(found)
    return out


def _without_seeds(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _without_seeds(v) for k, v in x.items() if k not in ("seed", "progress")}
    if isinstance(x, list):
        return [_without_seeds(v) for v in x]
    return x


_ABSENT = object()


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """The dotted key where two configs first differ, with both values (``absent`` when a key
    exists in one only, e.g. runs made by different shopsim versions)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            x, y = a.get(k, _ABSENT), b.get(k, _ABSENT)
            if x != y:
                return _first_difference(x, y, f"{where}.{k}" if where else k)

    def show(v: Any) -> str:
        return "absent" if v is _ABSENT else json.dumps(v, default=str)[:40]

    return f"'{where or '(top level)'}' ({show(a)} vs {show(b)})"


def group_runs(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs by (shop, reward), each group's runs sorted by seed. A group's configs must be equal
    except for their seeds (else their Δs are not replicates of one comparison)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.shop, r.reward), []).append(r)
    for (shop, reward), rs in groups.items():
        rs.sort(key=lambda r: r.seed)
        seeds = [r.seed for r in rs]
        if len(set(seeds)) != len(seeds):
            dup = next(s for s in seeds if seeds.count(s) > 1)
            paths = ", ".join(str(r.path) for r in rs if r.seed == dup)
            raise ShopsimError(
                f"{shop} · {reward}: seed {dup} appears twice ({paths}); pass one run per seed"
            )
        base = _without_seeds(rs[0].config)
        for r in rs[1:]:
            other = _without_seeds(r.config)
            if other != base:
                raise ShopsimError(
                    f"{shop} · {reward}: {rs[0].path} and {r.path} differ in config key "
                    f"{_first_difference(base, other)}, not only in the seed; rerun them with one config "
                    "and shopsim version, or pass them in separate calls"
                )
    return dict(sorted(groups.items()))


# ---------------------------------------------------------------------- the report
def _mean_dynamics(rs: Sequence[Run]) -> dict[str, Any]:
    """The dynamics of a group's runs, averaged (the runs share their log, so these agree unless a
    seed changed the split)."""
    out: dict[str, Any] = {}
    for k in rs[0].dynamics:
        vals = [float(v) for r in rs if (v := r.dynamics.get(k)) is not None]
        m = float(np.mean(vals)) if vals else None
        out[k] = round(m) if m is not None and k == "basket_pairs" else m
    return out


def group_report(rs: Sequence[Run]) -> dict[str, Any]:
    """headroom.json's entry of one (shop, reward) group."""
    first = rs[0]
    methods: dict[str, Any] = {}
    for m in METHODS:
        with_m = [r for r in rs if m in r.deltas]
        if not with_m:
            continue
        entry: dict[str, Any] = {"seeds": [r.seed for r in with_m]}
        for label in REFERENCES:
            per = [r.deltas[m][label] for r in with_m if label in r.deltas[m]]
            if per:
                entry[f"minus_{label}"] = {
                    **combine_seeds(per),
                    "per_seed": [
                        {"seed": r.seed, **r.deltas[m][label]} for r in with_m if label in r.deltas[m]
                    ],
                }
        checks = [{"seed": r.seed, **plateau(r.curves.get(m))} for r in with_m]
        states = [c["plateaued"] for c in checks]
        entry["plateau"] = {
            "plateaued": False if False in states else None if None in states else True,
            "per_seed": checks,
        }
        methods[m] = entry
    dyn = _mean_dynamics(rs)
    budgets = {m: first.budgets.get(m) for m in methods}
    deltas = {m: e["minus_deployable"] for m, e in methods.items() if "minus_deployable" in e}
    agents = first.config.get("agents", {}) or {}
    return {
        "shop": first.shop,
        "reward": first.reward,
        "seeds": [r.seed for r in rs],
        "runs": [str(r.path) for r in rs],
        "config_hashes": [r.config_hash for r in rs],
        "commits": sorted({r.commit[:12] for r in rs if r.commit}),
        "wall_s": [r.wall_s for r in rs],
        "budget": {"env_steps": budgets, "n_envs": agents.get("n_envs")},
        "references": {
            "deployable": [r.references["deployable"] for r in rs],
            "myopic": first.references["myopic"],
        },
        "methods": methods,
        "dynamics": dyn,
        "verdict": verdict(
            deltas,
            dyn,
            seeds=len(rs),
            plateaus={m: e["plateau"]["plateaued"] for m, e in methods.items()},
            budgets=budgets,
        ),
    }


def headroom_report(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """headroom.json of the given run folders (see the module docstring)."""
    runs = [load_run(p) for p in find_runs(run_dirs)]
    return report_of(runs, group_runs(runs))


def report_of(runs: Sequence[Run], groups: dict[tuple[str, str], list[Run]]) -> dict[str, Any]:
    """headroom.json of loaded runs and their groups (:func:`group_runs`)."""
    hashes = sorted(r.config_hash for r in runs)
    return {
        "schema": SCHEMA,
        "interval": (
            "mean over seeds of the per-seed paired Δ of session returns; 95% Student-t interval over "
            "the seed-level Δs (n − 1 df), which covers seeds and sessions; n = 1: the run's paired "
            "session bootstrap"
        ),
        "rules": {
            "verdict": "Δ vs the deployable reference: interval > 0 for PPO or SlateQ → RL pays; < 0 for "
            "both → RL loses; else ties",
            "plateau": f"rise of the mean return over the last {PLATEAU_WINDOW:.0%} of steps vs the "
            f"{PLATEAU_WINDOW:.0%} before ≤ max(t₀.₉₇₅·SE, {PLATEAU_REL:.0%} of the level), SE from the "
            "points' scatter, t at n_last + n_before − 2 df",
            "min_seeds": MIN_SEEDS,
            "dynamics": [
                {"key": d.key, "favour_at": d.favour_at, "against_below": d.against_below}
                for d in DYNAMICS_RULES
            ],
            "basket_min_pairs": MIN_PAIRS,
        },
        "config_hash": hashlib.sha256(" ".join(hashes).encode()).hexdigest()[:12],
        "groups": [group_report(rs) for rs in groups.values()],
    }


def _fmt_ci(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    lo, hi = d["ci95"]
    n1 = " (n=1)" if d.get("n") == 1 else ""
    return f"{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]{n1}"


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _wall(walls: Any) -> str:
    """Mean wall time of the seeds that recorded one, in minutes ("—" when none did)."""
    known = [float(w) for w in (walls or []) if isinstance(w, int | float)]
    if not known:
        return "—"
    return f"{np.mean(known) / 60:.0f} min" + (
        f" ({len(known)} of {len(walls)} seeds)" if len(known) < len(walls) else ""
    )


def _carried(g: dict[str, Any]) -> str:
    if not g.get("carried_from"):
        return ""
    return f" (earlier runs, carried over from {g['carried_from']})"


def _steps(n: Any) -> str:
    return f"{n:,}" if n else "—"


COLUMNS = (
    "shop",
    "reward",
    "seeds",
    "budget (PPO / SlateQ)",
    "PPO − deployable",
    "PPO − myopic",
    "SlateQ − deployable",
    "SlateQ − myopic",
    "session length",
    "leave hazard",
    "cont. after purchase",
    "basket lift (pairs)",
    "category stickiness",
    "plateaued (PPO / SlateQ)",
    "wall time per seed",
    "verdict",
)
"""The columns of the headroom table."""


def headroom_markdown(report: dict[str, Any]) -> str:
    """headroom.md: the caption and the table (one row per shop × reward)."""
    groups = report["groups"]
    seeds = sorted({len(g["seeds"]) for g in groups})
    lines = [
        "RL headroom across shops: PPO and SlateQ against the deployable reference (the run's best "
        "supervised/CF ranker, chosen on valid sessions; its name per seed in brackets) and the myopic "
        "reference (`click_model_greedy`). Δ = mean over seeds of each seed's paired difference of session "
        "returns (the reward of the row) on the same test sessions, with a **95% Student-t interval over "
        "the seed-level Δs (n − 1 df)**, covering seeds and sessions; rows marked n=1 have one seed and use "
        "that run's paired session bootstrap. Budget: env steps of training per agent and seed (PPO and "
        f"SlateQ get equal steps); seeds per row: {', '.join(map(str, seeds))}. Dynamics are measured on "
        "the logs: mean session length (real test sessions), leave hazard per step (pooled over steps 1–10), "
        "continuation after a purchase, basket lift (median over item pairs bought together ≥ 2 times, and "
        "their count), category stickiness (share of next steps in the same category, × its popularity "
        "expectation). Verdict: the Δ interval vs the deployable reference above 0 for either agent → RL "
        f"pays, below 0 for both → RL loses, else ties; provisional with < {MIN_SEEDS} seeds, unequal "
        "budgets or a learning curve that has not plateaued (last 20% of steps vs the 20% before: rise "
        f"≤ max(t₀.₉₇₅·SE, {PLATEAU_REL:.0%} of the level)). The reasons come from one fixed rule "
        "for all shops (shopsim.experiments.headroom.DYNAMICS_RULES).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for g in groups:
        meth, dyn = g["methods"], g["dynamics"]
        deploy = sorted(set(n for n in g["references"]["deployable"] if n))
        budget = g["budget"]["env_steps"]

        def cell(m: str, label: str, meth: dict[str, Any] = meth) -> str:
            return _fmt_ci(meth.get(m, {}).get(f"minus_{label}"))

        def flat(m: str, meth: dict[str, Any] = meth) -> str:
            p = meth.get(m, {}).get("plateau", {}).get("plateaued", "—")
            return {True: "yes", False: "no", None: "?"}.get(p, "—")

        basket = (
            f"{dyn['basket_lift']:.1f} ({dyn['basket_pairs']:,})"
            if dyn.get("basket_lift") is not None
            else (f"— ({dyn['basket_pairs']:,})" if dyn.get("basket_pairs") is not None else "—")
        )
        sticky = (
            f"{dyn['category_same']:.0%} (×{dyn['category_stickiness']:.1f})"
            if dyn.get("category_same") is not None and dyn.get("category_stickiness") is not None
            else "—"
        )
        cells = [
            g["shop"],
            g["reward"],
            str(len(g["seeds"])),
            f"{_steps(budget.get('ppo'))} / {_steps(budget.get('dqn'))}",
            cell("ppo", "deployable"),
            cell("ppo", "myopic"),
            cell("dqn", "deployable"),
            cell("dqn", "myopic"),
            _num(dyn.get("session_length"), ".2f"),
            _num(dyn.get("leave_hazard"), ".2f"),
            _num(dyn.get("continuation_after_purchase"), ".2f"),
            basket,
            sticky,
            f"{flat('ppo')} / {flat('dqn')}",
            _wall(g.get("wall_s")),
            f"{g['verdict']['text']} [deployable: {', '.join(deploy) or '—'}]{_carried(g)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots
COLORS = {"ppo": "#4c72b0", "dqn": "#dd8452"}


def plot_curves(runs_by_group: dict[tuple[str, str], list[Run]], path: Path) -> Path:
    """plots/curves.png: every seed's learning curve of PPO and SlateQ, one panel per shop × reward."""
    plt = pyplot(path)
    n = max(len(runs_by_group), 1)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, ((shop, reward), rs) in zip(axes.flat, runs_by_group.items(), strict=False):
        for m, label in METHODS.items():
            shown = False
            for r in rs:
                c = r.curves.get(m)
                if c and c.get("steps"):
                    ax.plot(
                        c["steps"],
                        [np.nan if v is None else v for v in c["return_mean"]],
                        color=COLORS[m],
                        alpha=0.7,
                        marker="." if len(c["steps"]) < 30 else None,  # a one-point curve shows too
                        label=None if shown else label,
                    )
                    shown = True
        ax.set_title(f"{shop} · {reward} ({len(rs)} seed{'s' if len(rs) != 1 else ''})", fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("training-episode return")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(runs_by_group) :]:
        ax.set_visible(False)
    fig.suptitle("Learning curves of PPO and SlateQ (every seed)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_headroom(report: dict[str, Any], path: Path) -> Path:
    """plots/headroom.png: Δ with its 95% interval per shop × reward and agent, against each reference."""
    plt = pyplot(path)
    rows = [(g, m) for g in report["groups"] for m in METHODS if m in g["methods"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(rows), 1) + 1.4), sharey=True)
    labels = [f"{g['shop']} · {g['reward']} · {METHODS[m]}" for g, m in rows]
    y = np.arange(len(rows))
    for ax, ref in zip(axes, REFERENCES, strict=True):
        for i, (g, m) in enumerate(rows):
            d = g["methods"][m].get(f"minus_{ref}")
            if not d or any(math.isnan(v) for v in d["ci95"]):
                continue
            lo, hi = d["ci95"]
            ax.errorbar(
                d["mean"], i, xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="o", color=COLORS[m], capsize=3
            )
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"Δ session return vs the {ref} reference (95% CI)")
    axes[0].set_yticks(y, labels, fontsize=8)
    fig.suptitle(
        "RL headroom: Δ over seeds and sessions (Student-t over seeds; n=1: session bootstrap)", fontsize=9
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def carried_groups(keep: Path, groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups of an earlier headroom.json whose (shop, reward) none of ``groups`` has, each
    marked ``carried_from`` (their run folders need not exist any more: the entries are kept as
    measured, never recomputed; the curves plot shows only the runs given now)."""
    old = _read_json(keep)
    if old.get("schema") != SCHEMA or not isinstance(old.get("groups"), list):
        raise ShopsimError(f"{keep}: not a {SCHEMA} headroom.json; pass one that `shopsim headroom` wrote")
    have = {(g["shop"], g["reward"]) for g in groups}
    kept = []
    for g in old["groups"]:
        if (g.get("shop"), g.get("reward")) in have:
            continue
        kept.append({**g, "carried_from": g.get("carried_from") or str(keep)})
    return kept


def write_headroom(
    run_dirs: Sequence[Path], out: Path, *, plots: bool = True, keep: Path | None = None
) -> dict[str, Any]:
    """Build the report of ``run_dirs`` and write headroom.json, headroom.md and (with ``plots``)
    plots/curves.png and plots/headroom.png into ``out``.

    :param keep: an earlier headroom.json whose groups for other (shop, reward) pairs are carried
        over as measured (:func:`carried_groups`), so one table can grow shop by shop.
    """
    if out.exists() and not out.is_dir():
        raise ShopsimError(f"{out}: exists and is not a directory; choose another --out")
    runs = [load_run(p) for p in find_runs(run_dirs)]
    groups = group_runs(runs)
    report = report_of(runs, groups)
    if keep is not None:
        report["groups"] = sorted(
            report["groups"] + carried_groups(keep, report["groups"]), key=lambda g: (g["shop"], g["reward"])
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "headroom.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "headroom.md", headroom_markdown(report) + "\n")
    if plots:
        plot_curves(groups, out / "plots" / "curves.png")
        plot_headroom(report, out / "plots" / "headroom.png")
    return report
