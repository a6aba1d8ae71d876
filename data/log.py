"""Reading a prepared log back: :class:`SessionLog` and its human summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from shopsim.artifacts import verify_artifact
from shopsim.data.schema import SPLITS, validate_events, validate_items
from shopsim.errors import ShopsimError


@dataclass
class SessionLog:
    """A prepared, validated shop log: canonical events and items plus the prepare report."""

    events: pd.DataFrame
    items: pd.DataFrame
    report: dict[str, Any]

    @classmethod
    def load(cls, directory: Path | str) -> SessionLog:
        """Load ``events.parquet``, ``items.parquet`` and ``report.json`` from ``directory``.

        The folder's manifest is verified first (:func:`shopsim.artifacts.verify_artifact`).

        :raises ShopsimError: if the folder was not written by ``shopsim data prepare``, is
            incomplete, or a file changed since.
        """
        d = Path(directory)
        rebuild = f"shopsim data prepare SRC --format … --out {d}"
        for name in ("events.parquet", "items.parquet", "report.json"):
            if d.is_dir() and not (d / name).exists():  # the plainest message for the common mistake
                raise ShopsimError(f"{d}: no {name}; create the folder with `{rebuild}`")
        verify_artifact(d, "log", rebuild)

        def bad(name: str) -> ShopsimError:
            return ShopsimError(f"{d}: file {name} cannot be read; rebuild it with `{rebuild}`")

        try:
            events = pd.read_parquet(d / "events.parquet")
        except Exception:  # any reader failure of a verified file is one line
            raise bad("events.parquet") from None
        try:
            items = pd.read_parquet(d / "items.parquet")
        except Exception:
            raise bad("items.parquet") from None
        validate_events(events, where=str(d / "events.parquet"))
        validate_items(items, where=str(d / "items.parquet"))
        try:
            report = json.loads((d / "report.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            raise bad("report.json") from None
        if not isinstance(report, dict):
            raise bad("report.json")
        return cls(events=events, items=items, report=report)

    def split(self, name: str) -> pd.DataFrame:
        """The events of one split (``train``, ``valid`` or ``test``), in event order."""
        if name not in SPLITS:
            raise ShopsimError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return self.events[self.events["split"] == name]


def format_summary(report: dict[str, Any]) -> str:
    """A short human summary of a prepare report (what ``data prepare``/``inspect`` print)."""
    s = report["summary"]
    lines = [f"{report['format']} ← {report['source']}"]
    dropped = report["dropped"]
    drop_txt = "; dropped " + ", ".join(f"{r} {n:,}" for r, n in dropped.items()) if dropped else ""
    lines.append(f"  rows in {report['rows_in']:,} → events out {report['rows_out']:,}{drop_txt}")
    lines.append(
        f"  sessions {s['sessions']:,} · users {s['users']:,} · items {s['items']:,} "
        f"({s['items_with_events']:,} with events)"
    )
    lines.append("  events: " + " · ".join(f"{e} {n:,}" for e, n in s["events_by_type"].items()))
    in_types = {k: v for k, v in report.get("events_in_by_type", {}).items()}
    if in_types and in_types != s["events_by_type"]:
        lines.append("  source rows by type: " + " · ".join(f"{e} {n:,}" for e, n in in_types.items()))
    items = report["items"]
    lines.append(
        f"  items with text: {s['items_with_text_share']:.1%} "
        f"({items['with_text']:,} of {items['items_out']:,})"
        + (
            f"; {items['added_without_metadata']:,} added without metadata"
            if items["added_without_metadata"]
            else ""
        )
        + (
            "; item rows dropped: " + ", ".join(f"{r} {n:,}" for r, n in items["dropped"].items())
            if items["dropped"]
            else ""
        )
    )
    sp = s["splits"]
    lines.append(
        "  split by session start: "
        + " / ".join(f"{k} {v['sessions']:,}" for k, v in sp.items())
        + " sessions"
    )
    lines.append(f"  time: {s['time_range'][0]} → {s['time_range'][1]}")
    notes = {k: v for k, v in report.get("notes", {}).items()}
    if notes:
        lines.append(
            "  notes: "
            + "; ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in notes.items())
        )
    return "\n".join(lines)
