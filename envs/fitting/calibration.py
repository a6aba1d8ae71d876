"""Fit stage: calibration of the click and purchase offsets.

Two bisections, each on one offset, replaying logged sessions through the fitted simulator:

* the **click offset** (logs without impressions): sampled negatives fix the ranking of the
  click model, not its level, so the offset makes replayed valid sessions have the logged mean
  number of clicks;
* the **purchase offset** (purchase mode ``model``): replayed sessions get the logged mean
  number of purchases (on valid, or on train when valid has fewer than 10 purchases).
"""

from __future__ import annotations

from typing import Any

from shopsim.envs.fitting.fidelity import replay
from shopsim.envs.model.simulator import Simulator


def calibrate(
    sim: Simulator, *, impressions: bool, enabled: bool, slate_size: int, seed: int
) -> dict[str, Any]:
    """Set ``sim.click_offset`` and ``sim.purchase_offset`` (when ``enabled`` and applicable)
    and return the report (``fidelity.json`` → ``calibration``). The purchase bisection runs
    with the calibrated click offset."""
    calib: dict[str, Any] = {
        "kind": "none (impression log: absolute click rates are measured)",
        "click_offset": 0.0,
    }
    if not impressions and enabled:
        calib = _calibrate_clicks(sim, slate_size=slate_size, seed=seed)
    if sim.purchase_mode == "model" and enabled:
        calib.update(_calibrate_purchases(sim, slate_size=slate_size, seed=seed))
    return calib


def _calibrate_clicks(sim: Simulator, *, slate_size: int, seed: int) -> dict[str, Any]:
    target = float(sim.episodes["valid"].real_clicks.mean())
    b, got = bisect_offset(sim, target, slate_size=slate_size, seed=seed)
    sim.click_offset = b
    return {
        "kind": "calibrated",
        "why": "sampled negatives fix the ranking, not the level: the offset b makes replayed "
        "valid sessions have the logged mean clicks per session",
        "click_offset": round(b, 4),
        "valid_real_clicks_per_session": round(target, 4),
        "valid_sim_clicks_per_session": round(got, 4),
    }


def _calibrate_purchases(sim: Simulator, *, slate_size: int, seed: int) -> dict[str, Any]:
    split = "valid" if sim.episodes["valid"].real_purchases.sum() >= 10 else "train"
    target = float(sim.episodes[split].real_purchases.mean())
    pb, got = bisect_offset(sim, target, slate_size=slate_size, seed=seed, what="purchases", split=split)
    sim.purchase_offset = pb
    return {
        "purchase_offset": round(pb, 4),
        f"{split}_real_purchases_per_session": round(target, 4),
        f"{split}_sim_purchases_per_session": round(got, 4),
    }


def bisect_offset(
    sim: Simulator,
    target: float,
    *,
    slate_size: int,
    seed: int,
    what: str = "clicks",
    split: str = "valid",
) -> tuple[float, float]:
    """Bisection on the click (or purchase) offset so replayed sessions of ``split`` average
    ``target`` clicks (purchases) per session; returns the last offset tried and its mean."""
    lo, hi = -8.0, 8.0
    best = (0.0, float("nan"))
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        kw = {"click_offset": mid} if what == "clicks" else {"purchase_offset": mid}
        res = replay(sim, split, slate_size=slate_size, seed=seed, **kw)  # type: ignore[arg-type]
        got = float((res.clicks if what == "clicks" else res.purchases).mean())
        best = (mid, got)
        if got < target:
            lo = mid
        else:
            hi = mid
    return best
