"""The shared preparation pipeline: staged source → canonical events/items + report.

Steps (all in DuckDB over on-disk tables, so memory stays bounded on large logs):

1. the format's raw SQL (:mod:`.formats`) → parse timestamps, events, numbers;
2. classify every row: kept, or dropped with one reason (see :data:`DROP_REASONS`);
3. drop exact duplicates (per-format default, ``--duplicates``);
4. derive sessions where the log has none (30-minute inactivity gap per user);
5. build the item table; add or drop events whose item the table lacks;
6. split sessions by start time into train/valid/test; write Parquet + report.json.

Invariant, checked before anything is written: ``rows_in == rows_out + sum(dropped)``; and for
every text source, ``lines_in == header_lines + blank_lines + record_lines`` (report.json's
``lines`` block, see :mod:`.staging`), so no line and no row vanishes.

Numbers: ``price`` and ``propensity`` must be finite (``NaN``/``inf`` are ``bad_price`` /
``bad_propensity``); ``quantity`` and ``position`` must be whole numbers (``2.7`` is
``bad_quantity``, not 3; an integer written as ``3.0`` or ``1e3`` is read as that integer); a
negative quantity (a return or cancellation line) is ``negative_quantity``.

SQL: identifiers go through :func:`~.formats.q`, values through bound parameters where DuckDB
takes them and otherwise through :func:`~.formats.lit`; extension auto-install/auto-load are
off and the configuration is locked after :func:`_connect`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from shopsim import __version__, artifacts
from shopsim.artifacts import write_artifact
from shopsim.data.formats import (
    FORMATS,
    RAW_COLUMNS,
    Plan,
    PrepareOptions,
    StageContext,
    extra,
    lit,
    output_names,
    q,
)
from shopsim.data.schema import EVENT_COLUMNS, EVENT_SYNONYMS, EVENT_TYPES, ITEM_COLUMNS
from shopsim.errors import ShopsimError

DROP_REASONS: dict[str, str] = {
    "malformed_row": "the record has the wrong number of fields, or its quoted field runs over more than "
    "max_field_lines lines / max_field_bytes bytes (an unbalanced quote; its first line is dropped)",
    "bad_encoding": "the record is not valid UTF-8 text (re-encode the file, e.g. iconv -f latin1 -t utf-8)",
    "missing_user_id": "no user id",
    "missing_item_id": "no item id",
    "missing_session_id": "no session id (and the format does not derive one)",
    "bad_timestamp": "timestamp cannot be parsed",
    "unknown_event": "event type is not one of impression/view/click/cart/purchase (or a synonym)",
    "bad_price": "price is not a finite number (text, NaN, inf)",
    "negative_price": "price below zero",
    "bad_quantity": "quantity is not a whole number (text, 2.7, NaN, inf)",
    "negative_quantity": "quantity below zero: a return or cancellation line, not an event "
    "(e.g. UCI Online Retail exported as --format events)",
    "bad_position": "position is not a whole number ≥ 1 (text, 0, 0.6, NaN, inf)",
    "bad_propensity": "propensity is not a finite number in (0, 1]",
    "duplicate_row": "exact copy of an earlier row (formats whose rows are events)",
    "unknown_item": "item is missing from the item table (--missing-items drop)",
    "cancellation": "UCI cancellation invoice (InvoiceNo starting with C)",
    "non_product_line": "UCI postage/fee/manual line, not a product",
    "nonpositive_quantity": "quantity ≤ 0 on a non-cancellation line",
    "repeated_history": "MIND: the same user's history repeated on a later impression",
    "bad_impression_token": "MIND: impression token is not ITEM-0 or ITEM-1",
}
"""Every reason a source row can be dropped for; report.json counts rows per reason."""

# Which raw column a drop reason is about (for the example in the report and messages).
_REASON_COLUMN = {
    "missing_user_id": "user_id",
    "missing_item_id": "item_id",
    "missing_session_id": "session_id",
    "bad_timestamp": "ts_raw",
    "unknown_event": "event_raw",
    "bad_price": "price_raw",
    "negative_price": "price_raw",
    "bad_quantity": "quantity_raw",
    "negative_quantity": "quantity_raw",
    "nonpositive_quantity": "quantity_raw",
    "bad_position": "position_raw",
    "bad_propensity": "propensity_raw",
    "unknown_item": "item_id",
}

MEMORY_LIMIT = os.environ.get("SHOPSIM_DUCKDB_MEMORY", "2GB")


@dataclass
class PrepareResult:
    """What ``prepare`` produced (also written to ``report.json``)."""

    format: str
    source: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int]
    examples: dict[str, dict[str, Any]]
    events_in_by_type: dict[str, int]
    items: dict[str, Any]
    summary: dict[str, Any]
    notes: dict[str, Any]
    options: dict[str, Any]
    timing_s: float
    shopsim_version: str = __version__
    outputs: dict[str, str] = field(default_factory=dict)
    lines: dict[str, Any] = field(default_factory=dict)
    """Line accounting per source file (``files``: lines_in, header/blank/record lines, records
    kept and dropped, multi-line records with their line ranges) and ``reconciled``."""

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


def prepare(src: Path | str, options: PrepareOptions, out: Path | str | None) -> PrepareResult:
    """Turn a source log into canonical ``events.parquet`` + ``items.parquet`` + ``report.json``.

    :param src: the source file or folder.
    :param options: format and options (see :class:`PrepareOptions`).
    :param out: output folder; ``None`` computes the report without writing (``inspect``).
    :return: the report.
    :raises ShopsimError: on input that cannot be used (one-line message).
    """
    start = time.perf_counter()
    src = Path(src)

    def run_in(work: Path, out_dir: Path | None) -> PrepareResult:
        # the DuckDB database and spill files live in ``work``, removed afterwards
        work.mkdir(parents=True, exist_ok=True)
        try:
            con = _connect(work)
            try:
                ctx = StageContext(con, work)
                plan = FORMATS[options.format](ctx, src, options)
                return _run(con, ctx, plan, options, src, work, out_dir)
            finally:
                con.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    if out is None:
        with tempfile.TemporaryDirectory(prefix="shopsim-prep-") as tmp:
            result = run_in(Path(tmp), None)
        result.timing_s = round(time.perf_counter() - start, 3)
        return result
    final = Path(out)
    # Written into a temporary folder beside --out and swapped in when complete (shopsim.artifacts);
    # the work folder lives inside it, so a killed run's is swept with it. A folder an older
    # shopsim wrote (no manifest) holds only these names and may be replaced.
    old_files = ("events.parquet", "items.parquet", "report.json", "stage.json", "shopsim-prep-*")
    with write_artifact(
        final, "log", stage="prepare", replaces=old_files, inputs={"source": str(src)}
    ) as tmp_out:
        result = run_in(tmp_out / "shopsim-prep-work", tmp_out)
        # the report names the folder the files end up in, not the temporary one
        result.outputs = {k: str(final / Path(v).name) for k, v in result.outputs.items()}
        artifacts.boundary("prepare:tables-written")
        result.timing_s = round(time.perf_counter() - start, 3)
        (tmp_out / "report.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
        artifacts.boundary("prepare:report-written")
    return result


def _connect(work: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for one prepare, its database and spill files inside ``work``."""
    # no extension is installed or loaded behind the user's back (a crafted file must not
    # make DuckDB fetch code); the settings are locked once made
    con = duckdb.connect(
        str(work / "prep.duckdb"),
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    con.execute("SET TimeZone = 'UTC'")
    # SET takes no bound parameters: the values go in as quoted literals
    con.execute(f"SET memory_limit = {lit(MEMORY_LIMIT)}")
    con.execute(f"SET temp_directory = {lit(str(work / 'spill'))}")
    _progress_bar_off(con)
    con.execute("SET lock_configuration = true")
    return con


def _progress_bar_off(con: duckdb.DuckDBPyConnection) -> None:
    """Turn DuckDB's progress bar off, also inside a Jupyter kernel that lacks ipywidgets."""
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException as exc:
        # In a Jupyter kernel without ipywidgets DuckDB refuses to change any progress-bar
        # setting, even to turn it off ("Could not change the progress bar setting because:
        # 'required package 'ipywidgets' is missing…'"); it has already switched the bar off
        # itself there, so the wanted state holds and prepare carries on. Any other error is real.
        if "progress bar" not in str(exc):
            raise


# --------------------------------------------------------------------------- pipeline
def _run(
    con: duckdb.DuckDBPyConnection,
    ctx: StageContext,
    plan: Plan,
    opts: PrepareOptions,
    src: Path,
    work: Path,
    out_dir: Path | None,
) -> PrepareResult:
    """The pipeline of the module docstring, stage by stage, over the staged source."""
    rows_in, staging_drops, staging_examples = _count_source_rows(con, ctx, plan)
    integer_ts = _integer_timestamps(con, opts)
    _parse(con, plan, opts, integer_ts)
    # Items first when they come from their own file: events may then name unknown items.
    items_in, item_drops = _stage_external_items(con, ctx, plan)
    missing_items = opts.missing_items or plan.missing_items
    _classify(con, plan, check_item=plan.external_items and missing_items == "drop")
    _fail_if_unusable(con, plan)
    dropped, examples = _drops(con, plan, staging_drops, staging_examples)
    duplicates = opts.duplicates or plan.duplicates
    _keep_rows(con, plan, duplicates, dropped, examples)
    rows_out = _scalar(con, "SELECT count(*) FROM kept")
    _check_accounting(plan, rows_in, rows_out, dropped, examples)
    if plan.derive_sessions:
        _derive_sessions(con, integer_ts, opts.session_gap_minutes)
    if not plan.external_items:
        items_in = _build_derived_items(con, plan)
    items_added = _build_items(con)
    _split_sessions(con, opts.split)
    summary = _summary(con, integer_ts)
    items_info = _items_info(con, items_in, item_drops, items_added)
    notes = _notes(con, plan, opts, integer_ts)
    outputs = _write_outputs(con, plan, out_dir) if out_dir is not None else {}
    opt_dict = asdict(opts)
    opt_dict["items"] = str(opts.items) if opts.items else None
    opt_dict["duplicates"] = duplicates
    opt_dict["missing_items"] = missing_items
    return PrepareResult(
        format=opts.format,
        source=str(src),
        rows_in=rows_in,
        rows_out=rows_out,
        dropped=dict(sorted(dropped.items())),
        examples=examples,
        events_in_by_type=_events_in_by_type(con),
        items=items_info,
        summary=summary,
        notes=notes,
        options=opt_dict,
        timing_s=0.0,
        outputs=outputs,
        lines=_lines_report(ctx),
    )


def _count_source_rows(
    con: duckdb.DuckDBPyConnection, ctx: StageContext, plan: Plan
) -> tuple[int, dict[str, int], dict[str, dict[str, Any]]]:
    """Create the ``raw`` view; return the source rows (kept at staging + dropped there), the
    staging drops by reason and the first example of each (file, row, physical lines)."""
    con.execute(f"CREATE VIEW raw AS {plan.raw_sql}")
    # every event file counts (OBD has one per logging policy), not just the first
    event_tables = ctx.tables(items=False)
    drops: dict[str, int] = {}
    examples: dict[str, dict[str, Any]] = {}
    for reason, attr in (("malformed_row", "malformed_rows"), ("bad_encoding", "bad_encoding_rows")):
        n = sum(len(getattr(t, attr)) for t in event_tables)
        if n:
            drops[reason] = n
            t = next(t for t in event_tables if getattr(t, attr))
            row = getattr(t, attr)[0]
            examples[reason] = {"file": str(t.source), "row": row}
            if row in t.drop_lines:
                examples[reason]["lines"] = list(t.drop_lines[row])
    rows_in = _scalar(con, "SELECT count(*) FROM raw") + sum(drops.values())
    if rows_in == 0:
        raise ShopsimError(f"{plan.main_file}: no data rows (only a header?); nothing to prepare")
    return rows_in, drops, examples


def _lines_report(ctx: StageContext) -> dict[str, Any]:
    """report.json's ``lines`` block: every staged file's line accounting."""
    files = [t.line_report() for t in ctx.staged.values()]
    return {"files": files, "reconciled": all(f["reconciled"] for f in files)}


def _parse(con: duckdb.DuckDBPyConnection, plan: Plan, opts: PrepareOptions, integer_ts: bool) -> None:
    """Create the ``parsed`` view: ``raw`` plus typed timestamp, event and numbers."""
    ts_sql = _timestamp_sql(
        "ts_raw",
        [*([opts.timestamp_format] if opts.timestamp_format else []), *plan.ts_formats],
        integer_ts,
        opts.timestamp_unit,
    )
    event_sql = _event_sql("event_raw")
    con.execute(
        f"""CREATE VIEW parsed AS SELECT *,
              {ts_sql} AS ts,
              {event_sql} AS event,
              {_finite_sql("price_raw")} AS price,
              {_whole_sql("quantity_raw")} AS quantity,
              {_whole_sql("position_raw")} AS position,
              {_finite_sql("propensity_raw")} AS propensity
            FROM raw"""
    )


def _finite_sql(col: str) -> str:
    """The number in text column ``col``; NULL when it is not a finite number (NaN, inf)."""
    return f"CASE WHEN isfinite(TRY_CAST({col} AS DOUBLE)) THEN TRY_CAST({col} AS DOUBLE) END"


def _whole_sql(col: str) -> str:
    """The integer in text column ``col``; NULL unless it is a whole number (``2.7`` and ``NaN``
    are not; ``3.0`` is 3). Digits are read exactly, beyond a double's precision."""
    d = f"TRY_CAST({col} AS DOUBLE)"
    return (
        rf"CASE WHEN regexp_full_match(TRIM({col}), '[+-]?[0-9]+') THEN TRY_CAST(TRIM({col}) AS BIGINT) "
        f"WHEN isfinite({d}) AND {d} = trunc({d}) AND abs({d}) < 9.2e18 THEN CAST({d} AS BIGINT) END"
    )


def _stage_external_items(
    con: duckdb.DuckDBPyConnection, ctx: StageContext, plan: Plan
) -> tuple[int, dict[str, int]]:
    """Build ``items_src`` from the format's item file, if it has one; return the item lines
    read and the item drops by reason (nothing yet for items derived from the events)."""
    item_drops: dict[str, int] = {}
    if not plan.external_items:
        return 0, item_drops
    items_in = _build_external_items(con, plan, item_drops)
    for reason, attr in (("malformed_row", "malformed_rows"), ("bad_encoding", "bad_encoding_rows")):
        bad_item_lines = sum(len(getattr(t, attr)) for t in ctx.tables(items=True))
        if bad_item_lines:
            item_drops[reason] = bad_item_lines
            items_in += bad_item_lines
    return items_in, item_drops


def _classify(con: duckdb.DuckDBPyConnection, plan: Plan, *, check_item: bool) -> None:
    """Create ``classified``: every parsed row with its drop ``reason`` (NULL when kept)."""
    unknown_item_rule = "WHEN item_id NOT IN (SELECT item_id FROM items_src) THEN 'unknown_item'"
    con.execute(
        f"""CREATE TABLE classified AS SELECT p.*, CASE
              WHEN _reason IS NOT NULL THEN _reason
              WHEN user_id IS NULL THEN 'missing_user_id'
              WHEN item_id IS NULL THEN 'missing_item_id'
              WHEN session_id IS NULL AND NOT {plan.derive_sessions} THEN 'missing_session_id'
              WHEN ts IS NULL THEN 'bad_timestamp'
              WHEN event IS NULL THEN 'unknown_event'
              WHEN price_raw IS NOT NULL AND price IS NULL THEN 'bad_price'
              WHEN price < 0 THEN 'negative_price'
              WHEN quantity_raw IS NOT NULL AND quantity IS NULL THEN 'bad_quantity'
              WHEN quantity < 0 THEN 'negative_quantity'
              WHEN position_raw IS NOT NULL AND (position IS NULL OR position < 1)
                THEN 'bad_position'
              WHEN propensity_raw IS NOT NULL
                   AND (propensity IS NULL OR propensity <= 0 OR propensity > 1)
                THEN 'bad_propensity'
              {unknown_item_rule if check_item else ""}
            END AS reason
            FROM parsed p"""
    )


def _drops(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    staging_drops: dict[str, int],
    staging_examples: dict[str, dict[str, Any]],
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Rows dropped per reason so far (staging + classification) and an example of each."""
    dropped = {
        str(r): int(n)
        for r, n in con.execute(
            "SELECT reason, count(*) FROM classified WHERE reason IS NOT NULL GROUP BY reason"
        ).fetchall()
    }
    dropped.update(staging_drops)
    examples = _examples(con, plan, dropped)
    examples.update(staging_examples)
    return dropped, examples


def _keep_rows(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    duplicates: str,
    dropped: dict[str, int],
    examples: dict[str, dict[str, Any]],
) -> None:
    """Create ``kept``: the rows without a drop reason, exact duplicates dropped (and counted in
    ``dropped``/``examples``) when ``duplicates`` is ``drop``."""
    if duplicates != "drop":
        con.execute("CREATE TABLE kept AS SELECT * FROM classified WHERE reason IS NULL")
        return
    # an exact duplicate agrees on every canonical column (but the split, not yet assigned)
    key = [_internal(c) for c in EVENT_COLUMNS if c != "split"] + [
        extra(c) for c in (*plan.extras, *plan.item_attrs)
    ]
    con.execute(
        f"""CREATE TABLE kept AS SELECT * EXCLUDE (_dup) FROM (
              SELECT *, row_number() OVER (
                PARTITION BY {", ".join(q(c) for c in key)} ORDER BY _row, _sub) AS _dup
              FROM classified WHERE reason IS NULL) WHERE _dup = 1"""
    )
    valid = _scalar(con, "SELECT count(*) FROM classified WHERE reason IS NULL")
    n_dup = valid - _scalar(con, "SELECT count(*) FROM kept")
    if n_dup:
        dropped["duplicate_row"] = n_dup
        first = con.execute(
            "SELECT min(_row) FROM classified c WHERE reason IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM kept k WHERE k._row = c._row AND k._sub = c._sub AND k._src = c._src)"
        ).fetchone()
        examples["duplicate_row"] = {
            "file": str(plan.main_file),
            "row": first[0] if first else None,
        }


def _check_accounting(
    plan: Plan, rows_in: int, rows_out: int, dropped: dict[str, int], examples: dict[str, dict[str, Any]]
) -> None:
    """Every source row is kept or dropped once; a log with no usable row is an error."""
    if rows_in != rows_out + sum(dropped.values()):  # pragma: no cover - a bug, not user input
        raise AssertionError(f"row accounting broken: {rows_in} != {rows_out} + {dropped}")
    if rows_out == 0:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(dropped.items(), key=lambda x: -x[1]))
        ex = next(iter(examples.values()), {})
        where = (
            f" (first: {ex.get('file')} row {ex.get('row')}, "
            f"column {ex.get('column')!r} = {ex.get('value')!r})"
            if ex
            else ""
        )
        raise ShopsimError(
            f"{plan.main_file}: no usable rows — all {rows_in:,} dropped ({reasons}){where}; "
            "fix the column or pass the right --format/--map"
        )


def _build_items(con: duckdb.DuckDBPyConnection) -> int:
    """Create ``items``: ``items_src`` plus the kept events' unknown items (no metadata), prices
    filled from the events' median; return how many items were added that way."""
    items_added = _scalar(
        con,
        "SELECT count(DISTINCT item_id) FROM kept WHERE item_id NOT IN (SELECT item_id FROM items_src)",
    )
    con.execute(
        """CREATE TABLE items AS
           WITH ev_price AS (SELECT item_id, median(price) AS p FROM kept GROUP BY item_id)
           SELECT i.* REPLACE (NULLIF(TRIM(i.text), '') AS text,
                               COALESCE(i.price, ev_price.p) AS price)
           FROM (SELECT * FROM items_src
                 UNION ALL BY NAME
                 SELECT DISTINCT item_id FROM kept
                 WHERE item_id NOT IN (SELECT item_id FROM items_src)) i
           LEFT JOIN ev_price USING (item_id)
           ORDER BY i.item_id"""
    )
    return items_added


def _items_info(
    con: duckdb.DuckDBPyConnection, items_in: int, item_drops: dict[str, int], items_added: int
) -> dict[str, Any]:
    """The ``items`` block of the report."""
    return {
        "items_in": items_in,
        "items_out": _scalar(con, "SELECT count(*) FROM items"),
        "dropped": item_drops,
        "added_without_metadata": items_added,
        "with_text": _scalar(con, "SELECT count(*) FROM items WHERE text IS NOT NULL"),
        "without_events": _scalar(
            con, "SELECT count(*) FROM items WHERE item_id NOT IN (SELECT item_id FROM kept)"
        ),
    }


def _notes(
    con: duckdb.DuckDBPyConnection, plan: Plan, opts: PrepareOptions, integer_ts: bool
) -> dict[str, Any]:
    """The ``notes`` block of the report: the format's facts and how sessions and time were read."""
    notes: dict[str, Any] = dict(plan.notes)
    for name, sql in plan.notes_sql.items():
        notes[name] = _scalar(con, sql)
    if plan.derive_sessions:
        notes["sessions_derived"] = (
            f"{opts.session_gap_minutes:g}-minute inactivity gap per user"
            if not integer_ts
            else "one session per user (integer order keys have no clock)"
        )
    notes["timestamp"] = "integer order key" if integer_ts else "datetime (UTC)"
    return notes


def _write_outputs(con: duckdb.DuckDBPyConnection, plan: Plan, out_dir: Path) -> dict[str, str]:
    """Write events.parquet (canonical columns, then the format's extras, in canonical order)
    and items.parquet; return the ``outputs`` block (report.json is written by the caller)."""
    # extras keep their names, or src_<name> when that is a canonical column (formats docstring)
    event_cols = [
        *(f"{'s' if c == 'split' else 'e'}.{q(_internal(c))} AS {q(c)}" for c in EVENT_COLUMNS),
        *(f"e.{q(extra(c))} AS {q(name)}" for c, name in output_names(plan.extras, EVENT_COLUMNS).items()),
    ]
    order = "s.start, s.first_row, s.session_id, e.ts, e._row, e._sub"
    final_sql = (
        f"SELECT {', '.join(event_cols)} FROM kept e JOIN sess s ON e.session_id = s.session_id "
        f"ORDER BY {order}"
    )
    # the item table's columns in their order; extras under their own names (or src_<name>)
    stored = [str(c[0]) for c in con.execute("SELECT * FROM items LIMIT 0").description or []]
    item_extras = [c[len(extra("")) :] for c in stored if c.startswith(extra(""))]
    names = {extra(c): name for c, name in output_names(item_extras, ITEM_COLUMNS).items()}
    item_cols = [f"{q(c)} AS {q(names[c])}" if c in names else q(c) for c in stored]
    ev_path, it_path = out_dir / "events.parquet", out_dir / "items.parquet"
    # COPY … TO takes no bound parameter for its file: the path goes in as a quoted literal
    con.execute(f"COPY ({final_sql}) TO {lit(str(ev_path))} (FORMAT parquet, COMPRESSION zstd)")
    con.execute(
        f"COPY (SELECT {', '.join(item_cols)} FROM items) TO {lit(str(it_path))} "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    return {
        "events": str(ev_path),
        "items": str(it_path),
        "report": str(out_dir / "report.json"),
    }


def _events_in_by_type(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Source rows per parsed event type (``unknown`` when unparsable), in funnel order."""
    counts = dict(
        con.execute("SELECT COALESCE(event, 'unknown'), count(*) FROM classified GROUP BY 1").fetchall()
    )
    return {e: int(counts[e]) for e in (*EVENT_TYPES, "unknown") if e in counts}


def _internal(column: str) -> str:
    """Name of a canonical column inside the pipeline (``timestamp`` is ``ts`` there)."""
    return "ts" if column == "timestamp" else column


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _integer_timestamps(con: duckdb.DuckDBPyConnection, opts: PrepareOptions) -> bool:
    """True when every non-empty timestamp is an integer (an order key or Unix time)."""
    n, ints = con.execute(
        r"""SELECT count(ts_raw), count(*) FILTER (WHERE regexp_full_match(TRIM(ts_raw), '-?\d+'))
            FROM raw"""
    ).fetchone() or (0, 0)
    return bool(n) and n == ints and opts.timestamp_unit is None


def _timestamp_sql(col: str, formats: list[str], integer: bool, unit: str | None) -> str:
    if integer:
        return f"TRY_CAST(TRIM({col}) AS BIGINT)"
    if unit is not None:
        div = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
        unix = f"CAST(to_timestamp(TRY_CAST(TRIM({col}) AS DOUBLE) / {div}) AT TIME ZONE 'UTC' AS TIMESTAMP)"
        return f"CASE WHEN regexp_full_match(TRIM({col}), '-?[0-9.]+') THEN {unix} END"
    tries = [f"CAST(try_strptime(TRIM({col}), {lit(f)}) AS TIMESTAMP)" for f in formats]
    # ISO 8601 with or without a zone ('… UTC', '+00:00', 'Z'), read as UTC.
    tries.append(f"CAST(TRY_CAST(TRIM({col}) AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP)")
    return "COALESCE(" + ", ".join(tries) + ")"


def _event_sql(col: str) -> str:
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in EVENT_SYNONYMS.items())
    return f"CASE lower(TRIM({col})) {whens} ELSE NULL END"


def _fail_if_unusable(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """Whole-column failures are mistakes (wrong format or mapping), not bad rows."""
    checks = [
        (
            "ts_raw",
            "ts",
            "timestamp",
            "pass --timestamp-format (strptime, e.g. %d/%m/%Y %H:%M) or map the right column",
        ),
        (
            "event_raw",
            "event",
            "event type",
            f"use event names {', '.join(EVENT_TYPES)} (or synonyms), or --default-event EVENT",
        ),
        ("price_raw", "price", "price", "map a numeric price column or none"),
    ]
    for raw_col, parsed_col, what, fix in checks:
        row = con.execute(
            f"""SELECT count({raw_col}), count({parsed_col}) FILTER (WHERE {raw_col} IS NOT NULL),
                       arg_min({raw_col}, _row) FILTER (WHERE {raw_col} IS NOT NULL),
                       min(_row) FILTER (WHERE {raw_col} IS NOT NULL)
                FROM classified WHERE _reason IS NULL"""
        ).fetchone()
        if row is None:
            continue
        given, ok, value, first = row
        if given and not ok:
            file, column = plan.source_columns.get(raw_col, (str(plan.main_file), raw_col))
            values = ""
            if raw_col == "event_raw":
                found = [
                    str(v[0])
                    for v in con.execute(
                        f"SELECT DISTINCT {raw_col} FROM classified WHERE {raw_col} IS NOT NULL LIMIT 5"
                    ).fetchall()
                ]
                values = f"; values found: {', '.join(found)}"
            raise ShopsimError(
                f"{file}: column {column!r}: no row has a usable {what} "
                f"(row {first}: {value!r}){values}; {fix}"
            )


def _examples(
    con: duckdb.DuckDBPyConnection, plan: Plan, dropped: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """The first source row of each drop reason, with the offending column and value."""
    out: dict[str, dict[str, Any]] = {}
    for reason in dropped:
        if reason in ("malformed_row", "bad_encoding"):
            continue
        raw_col = _REASON_COLUMN.get(reason)
        value_sql = raw_col if raw_col else "NULL"
        row = con.execute(
            f"SELECT _src, _row, {value_sql} FROM classified WHERE reason = ? ORDER BY _row, _sub LIMIT 1",
            [reason],
        ).fetchone()
        if row is None:
            continue
        _file, column = plan.source_columns.get(raw_col or "", (row[0], raw_col))
        ex: dict[str, Any] = {"file": row[0], "row": int(row[1])}
        if raw_col:
            ex["column"] = column
            ex["value"] = row[2]
        out[reason] = ex
    return out


def _build_external_items(con: duckdb.DuckDBPyConnection, plan: Plan, drops: dict[str, int]) -> int:
    con.execute(f"CREATE TABLE items_raw AS {plan.items_sql}")
    n_in = _scalar(con, "SELECT count(*) FROM items_raw")
    missing = _scalar(con, "SELECT count(*) FROM items_raw WHERE item_id IS NULL")
    con.execute(
        f"""CREATE TABLE items_src AS SELECT * EXCLUDE (_rank, price_raw, _row),
                  {_finite_sql("price_raw")} AS price FROM (
              SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY _row) AS _rank
              FROM items_raw WHERE item_id IS NOT NULL) WHERE _rank = 1"""
    )
    dup = n_in - missing - _scalar(con, "SELECT count(*) FROM items_src")
    if missing:
        drops["missing_item_id"] = missing
    if dup:
        drops["duplicate_item_id"] = dup
    return n_in


def _build_derived_items(con: duckdb.DuckDBPyConnection, plan: Plan) -> int:
    con.execute(
        f"""CREATE TABLE items_src AS SELECT * EXCLUDE (price_raw, _row),
                   TRY_CAST(price_raw AS DOUBLE) AS price FROM ({plan.items_sql})"""
    )
    return _scalar(con, "SELECT count(*) FROM items_src")


def _derive_sessions(con: duckdb.DuckDBPyConnection, integer_ts: bool, gap_minutes: float) -> None:
    if integer_ts:
        # An order key has no clock: a user's whole log is one session.
        con.execute("UPDATE kept SET session_id = user_id || '#1'")
        return
    con.execute(
        f"""CREATE TABLE kept2 AS SELECT * REPLACE (
              user_id || '#' || CAST(sum(_new) OVER (PARTITION BY user_id ORDER BY ts, _row, _sub
                                     ROWS UNBOUNDED PRECEDING) AS VARCHAR) AS session_id)
            FROM (SELECT * EXCLUDE (session_id), CAST(NULL AS VARCHAR) AS session_id,
                         CASE WHEN lag(ts) OVER w IS NULL
                                   OR ts - lag(ts) OVER w > INTERVAL {float(gap_minutes) * 60} SECOND
                              THEN 1 ELSE 0 END AS _new
                  FROM kept WINDOW w AS (PARTITION BY user_id ORDER BY ts, _row, _sub))"""
    )
    con.execute("DROP TABLE kept")
    con.execute("ALTER TABLE kept2 RENAME TO kept")
    con.execute("ALTER TABLE kept DROP COLUMN _new")


def _split_sessions(con: duckdb.DuckDBPyConnection, fractions: tuple[float, float, float]) -> None:
    """Assign whole sessions to train/valid/test by start time (ties broken by source order)."""
    train, valid, _ = fractions
    con.execute(
        f"""CREATE TABLE sess AS
            SELECT session_id, start, first_row,
                   CASE WHEN rk <= round(n * {train}) THEN 'train'
                        WHEN rk <= round(n * {train + valid}) THEN 'valid'
                        ELSE 'test' END AS split
            FROM (SELECT *, row_number() OVER (ORDER BY start, first_row, session_id) AS rk,
                         count(*) OVER () AS n
                  FROM (SELECT session_id, min(ts) AS start, min(_row) AS first_row
                        FROM kept GROUP BY session_id))"""
    )


def _summary(con: duckdb.DuckDBPyConnection, integer_ts: bool) -> dict[str, Any]:
    by_type = dict(con.execute("SELECT event, count(*) FROM kept GROUP BY event").fetchall())
    row = con.execute(
        "SELECT count(DISTINCT session_id), count(DISTINCT user_id), count(DISTINCT item_id), "
        "min(ts), max(ts) FROM kept"
    ).fetchone()
    assert row is not None
    n_items = _scalar(con, "SELECT count(*) FROM items")
    with_text = _scalar(con, "SELECT count(*) FROM items WHERE text IS NOT NULL")
    splits = {
        s: {"sessions": int(ns), "events": int(ne)}
        for s, ns, ne in con.execute(
            "SELECT split, count(*), sum(n) FROM sess "
            "JOIN (SELECT session_id, count(*) AS n FROM kept GROUP BY session_id) USING (session_id) "
            "GROUP BY split"
        ).fetchall()
    }
    return {
        "events": int(sum(by_type.values())),
        "sessions": int(row[0]),
        "users": int(row[1]),
        "items_with_events": int(row[2]),
        "items": n_items,
        "events_by_type": {e: int(by_type.get(e, 0)) for e in EVENT_TYPES if by_type.get(e)},
        "items_with_text_share": round(with_text / n_items, 4) if n_items else 0.0,
        "splits": {s: splits.get(s, {"sessions": 0, "events": 0}) for s in ("train", "valid", "test")},
        "time_range": [str(row[3]), str(row[4])],
    }


__all__ = ["DROP_REASONS", "RAW_COLUMNS", "PrepareResult", "prepare"]
