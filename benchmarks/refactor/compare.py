"""Compare a quickstart of main before the redesign with one after, field by field.

Usage: ``python compare.py BEFORE AFTER`` (BEFORE in the old layout: rees46/, rees46-encoder/,
rees46-sim/; AFTER in the runner's: data/, encoder/, simulator/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def diff(a: Any, b: Any, path: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    """Paths where two JSON values differ (keys in ``skip`` ignored at any depth)."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in diff(x, y, f"{path}[{i}]", skip)]
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [f"{path}: {str(a)[:70]} -> {str(b)[:70]}"]
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        if k in skip:
            continue
        if k not in a or k not in b:
            out.append(f"{path}.{k}: only {'after' if k not in a else 'before'}")
        else:
            out += diff(a[k], b[k], f"{path}.{k}", skip)
    return out


def main(before: Path, after: Path) -> None:
    rb, ra = load(before / "results.json"), load(after / "results.json")
    rest = ("policies", "fidelity", "config", "timing_s")
    print("results.json policies:", diff(rb["policies"], ra["policies"]) or "identical")
    print("results.json fidelity:", diff(rb["fidelity"], ra["fidelity"]) or "identical")
    print("results.json other keys:", diff(rb, ra, skip=rest))
    print("policy order same:", list(rb["policies"]) == list(ra["policies"]))
    sb, sa = before / "rees46-sim", after / "simulator"
    print("fidelity.json:", diff(load(sb / "fidelity.json"), load(sa / "fidelity.json"), skip=("timing_s",)))
    print("simulator.json:", diff(load(sb / "simulator.json"), load(sa / "simulator.json")))
    for n in ("catalog.npz", "model.npz", "episodes.npz"):
        x, y = np.load(sb / n), np.load(sa / n)
        bad = [k for k in x.files if k not in y.files or not np.array_equal(x[k], y[k])]
        print(n, "arrays differ:", bad, "only after:", sorted(set(y.files) - set(x.files)))
    eb, ea = before / "rees46-encoder", after / "encoder"
    print("eval.json:", diff(load(eb / "eval.json"), load(ea / "eval.json"), skip=("timing_s", "seconds")))
    vb, va = np.load(eb / "item_vectors.npy"), np.load(ea / "item_vectors.npy")
    print("item vectors equal:", np.array_equal(vb, va))
    db, da = before / "rees46", after / "data"
    print("report.json:", diff(load(db / "report.json"), load(da / "report.json"), skip=("timing_s",)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
