"""Source-log formats: how each known log maps onto the canonical schema.

A format stages its files (see :mod:`.staging`) and returns a :class:`Plan`: SQL that yields
*raw canonical* rows (all text, plus ``_row``/``_sub``/``_src`` for ordering and messages and
``_reason`` for rows the format itself rejects), SQL for the item table, and the rules the
shared pipeline (:mod:`.pipeline`) applies. Per-format rules, documented in the README's
"Log formats" table:

* ``rees46`` — one row per event; sessions are ``user_session``; items from the events
  (category, brand, median price).
* ``hm`` — one row per purchased unit; sessions are customer × day; rows of a day keep file
  order (the log has dates only); items from ``articles.csv``.
* ``uci`` — one line per invoice line; sessions are invoices; cancellation invoices (``C…``)
  are dropped as ``cancellation``; non-product lines (postage, fees, manual) as
  ``non_product_line``; lines without CustomerID get the placeholder user ``guest-<InvoiceNo>``.
* ``mind`` — each impression log becomes a session: one ``impression`` row per shown item
  (``slate_id`` = impression id, ``position`` = 1-based slot) and a ``click`` row per clicked
  one; the user's history becomes ``click`` rows in a session ``hist-<user>`` placed one second
  apart just before the user's first impression (MIND records no clock for history); repeated
  copies of the same history on later impressions are dropped as ``repeated_history``.
* ``obd`` — each row is one shown item at one position: an ``impression`` row with its
  propensity, plus a ``click`` row when clicked; each row is its own slate and session (the
  public sample has no slate grouping); the user is a hash of the user features.
* ``events`` — any CSV/Parquet with ``--map canonical=source``; sessions derived by a
  30-minute inactivity gap per user when absent. One ``--map`` per canonical column (two
  sources for one canonical column are an error); one source column may feed several
  canonical columns (e.g. ``--map session_id=imp --map slate_id=imp``).

**Column namespaces.** No source column, whatever its name, can change how the pipeline works:

* staged source columns keep their names, except the staging columns ``_row``/``_src``
  (renamed ``src__row``/``src__src``, see :func:`shopsim.data.staging.free_name`);
* inside the pipeline every extra column (a source column passed through, or an item
  attribute) lives under :data:`EXTRA_NS` (``extra:<name>``, see :func:`extra`), a namespace no
  pipeline column uses, so an extra named ``reason``, ``event``, ``_row``, ``split``, ``start``
  or ``price`` is just data;
* on writing, an extra keeps its own name, unless that name is a canonical column
  (:data:`~shopsim.data.schema.EVENT_COLUMNS` for events.parquet,
  :data:`~shopsim.data.schema.ITEM_COLUMNS` for items.parquet) or already written: then it is
  written as ``src_<name>`` (the prefix repeated until free; :func:`output_names`). E.g. an
  unmapped source column ``event`` (with ``--map event=action``) is written as ``src_event``.

Values (paths, formats, event names) go into SQL as quoted literals (:func:`lit`) and
identifiers through :func:`q`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from shopsim.data.schema import EVENT_TYPES
from shopsim.data.staging import (
    MAX_FIELD_BYTES,
    MAX_FIELD_LINES,
    SOURCE_PREFIX,
    StagedTable,
    free_name,
    is_parquet,
    stage_file,
)
from shopsim.errors import ShopsimError

RAW_COLUMNS: tuple[str, ...] = (
    "session_id",
    "user_id",
    "ts_raw",
    "item_id",
    "event_raw",
    "price_raw",
    "quantity_raw",
    "position_raw",
    "slate_id",
    "propensity_raw",
)
"""Text columns every format's raw SQL yields (besides ``_row``, ``_sub``, ``_src``,
``_reason`` and its extra columns)."""

CANONICAL_OF_RAW: dict[str, str] = {
    "ts_raw": "timestamp",
    "event_raw": "event",
    "price_raw": "price",
    "quantity_raw": "quantity",
    "position_raw": "position",
    "propensity_raw": "propensity",
}

MAPPABLE: tuple[str, ...] = (
    "session_id",
    "user_id",
    "timestamp",
    "item_id",
    "event",
    "price",
    "position",
    "slate_id",
    "propensity",
    "quantity",
    "category",
)
"""Canonical names ``--map`` accepts (``category`` describes items)."""

EXTRA_NS = "extra:"
"""Namespace of extra (pass-through) columns inside the pipeline; no pipeline column contains ``:``."""


def extra(name: str) -> str:
    """The pipeline's (unquoted) name of extra column ``name``."""
    return EXTRA_NS + name


def output_names(extras: Iterable[str], reserved: Iterable[str]) -> dict[str, str]:
    """Extra column → the name it is written under: itself, or ``src_<name>`` (repeated) when the
    name is ``reserved`` (the canonical columns) or taken by an earlier extra."""
    taken = set(reserved)
    out: dict[str, str] = {}
    for name in extras:
        new = free_name(name, taken, SOURCE_PREFIX)
        taken.add(new)
        out[name] = new
    return out


def parse_column_map(pairs: Iterable[str | tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """``--map canonical=source`` pairs → canonical → source; two pairs for one canonical column
    are an error (the CLI's ``--map`` list goes through here).

    :raises ShopsimError: on a pair without ``=`` or a canonical column given twice.
    """
    if isinstance(pairs, Mapping):
        return dict(pairs)
    out: dict[str, str] = {}
    for pair in pairs:
        if isinstance(pair, str):
            canon, sep, source = pair.partition("=")
            if not sep or not canon.strip() or not source.strip():
                raise ShopsimError(f"--map {pair!r}: expected canonical=source, e.g. --map item_id=sku")
        else:
            canon, source = pair
        canon, source = canon.strip(), source.strip()
        if canon in out and out[canon] != source:
            raise ShopsimError(
                f"--map {canon}={out[canon]} and --map {canon}={source}: two source columns for "
                f"canonical column {canon!r}; keep one"
            )
        out[canon] = source
    return out


DUPLICATE_POLICIES = ("drop", "keep")
MISSING_ITEM_POLICIES = ("drop", "keep")


@dataclass
class PrepareOptions:
    """Options of ``shopsim data prepare`` (all but ``format`` optional)."""

    format: str
    """Source format: one of :data:`FORMATS`."""
    items: Path | None = None
    """Item table file (``hm``: articles.csv; ``events``: any CSV/Parquet with ``item_id``)."""
    column_map: dict[str, str] = field(default_factory=dict)
    """``events`` only: canonical column → source column. Also accepts the ``--map`` pairs
    (``["event=action", …]`` or ``[("event", "action"), …]``): two for one canonical column are
    an error (see :func:`parse_column_map`)."""
    default_event: str | None = None
    """``events`` only: event type for rows whose event column is absent or empty."""
    text_cols: list[str] | None = None
    """``events`` only: columns whose values, joined, form an item's text."""
    duplicates: str | None = None
    """``drop`` exact duplicate rows (counted) or ``keep`` them; default per format."""
    missing_items: str | None = None
    """Events whose item is not in the item table: ``drop`` (counted) or ``keep`` (the item is
    added without metadata, counted); default per format."""
    session_gap_minutes: float = 30.0
    """Inactivity gap that starts a new session when the log has no session id."""
    timestamp_format: str | None = None
    """strptime format tried first when parsing timestamps (e.g. ``%d/%m/%Y %H:%M``)."""
    timestamp_unit: str | None = None
    """Read integer timestamps as Unix time in ``s``/``ms``/``us`` instead of an order key."""
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train/valid/test fractions of sessions, by session start time."""
    max_field_lines: int = MAX_FIELD_LINES
    """A record of a text source may span at most this many lines (a quoted field with line
    breaks); a longer one is an unbalanced quote: its first line is dropped as ``malformed_row``."""
    max_field_bytes: int = MAX_FIELD_BYTES
    """A record spanning several lines may hold at most this many bytes (same rule)."""

    def __post_init__(self) -> None:
        self.column_map = parse_column_map(self.column_map)
        if self.format not in FORMATS:
            raise ShopsimError(f"unknown format {self.format!r}; choose one of: {', '.join(FORMATS)}")
        if self.duplicates is not None and self.duplicates not in DUPLICATE_POLICIES:
            raise ShopsimError(f"--duplicates must be drop or keep, not {self.duplicates!r}")
        if self.missing_items is not None and self.missing_items not in MISSING_ITEM_POLICIES:
            raise ShopsimError(f"--missing-items must be drop or keep, not {self.missing_items!r}")
        if self.default_event is not None and self.default_event not in EVENT_TYPES:
            raise ShopsimError(
                f"--default-event {self.default_event!r} is not an event type; "
                f"use one of: {', '.join(EVENT_TYPES)}"
            )
        if (
            len(self.split) != 3
            or not all(isinstance(f, int | float) and math.isfinite(f) and f >= 0 for f in self.split)
            or abs(sum(self.split) - 1) > 1e-6
        ):
            raise ShopsimError(
                f"--split {','.join(map(str, self.split))} must be three non-negative fractions "
                "summing to 1, e.g. 0.8,0.1,0.1"
            )
        gap = self.session_gap_minutes
        if not isinstance(gap, int | float) or not math.isfinite(gap) or gap <= 0:
            raise ShopsimError(f"--session-gap {gap} must be a positive, finite number of minutes, e.g. 30")
        for name, value in (
            ("max_field_lines", self.max_field_lines),
            ("max_field_bytes", self.max_field_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ShopsimError(f"{name} {value!r} must be a positive whole number")
        if self.timestamp_unit not in (None, "s", "ms", "us"):
            raise ShopsimError(f"--timestamp-unit must be s, ms or us, not {self.timestamp_unit!r}")
        for key in self.column_map:
            if key not in MAPPABLE:
                raise ShopsimError(
                    f"--map {key}=…: {key!r} is not a canonical column; use one of: {', '.join(MAPPABLE)}"
                )
        if self.format != "events":
            given = [
                flag
                for flag, value in (
                    ("--map", self.column_map),
                    ("--default-event", self.default_event),
                    ("--text-cols", self.text_cols),
                )
                if value
            ]
            if given:
                raise ShopsimError(
                    f"{', '.join(given)} only apply to --format events; "
                    f"format {self.format!r} knows its columns"
                )


@dataclass
class Plan:
    """What a format hands to the shared pipeline."""

    raw_sql: str
    """SELECT yielding ``_row, _sub, _src, _reason`` + :data:`RAW_COLUMNS` + ``extras``."""
    extras: list[str]
    """Extra event columns written to events.parquet."""
    item_attrs: list[str]
    """Extra raw columns used only to build the item table (not written with the events)."""
    items_sql: str
    """SELECT yielding ``item_id, text, category, price_raw`` + extra item columns, ``_row``.
    May read the table ``kept`` (the events that survived) when ``external_items`` is False."""
    external_items: bool
    """True when items come from their own file, so events may name unknown items."""
    source_columns: dict[str, tuple[str, str]]
    """Raw column → (file, source column name), for messages."""
    main_file: Path
    duplicates: str = "drop"
    missing_items: str = "keep"
    derive_sessions: bool = False
    ts_formats: list[str] = field(default_factory=list)
    notes: dict[str, int | float | str] = field(default_factory=dict)
    notes_sql: dict[str, str] = field(default_factory=dict)
    """Facts about the source to report, as scalar SQL over the staged tables."""


class StageContext:
    """Stages files into a DuckDB connection as views named by the caller."""

    def __init__(self, con: duckdb.DuckDBPyConnection, work: Path) -> None:
        self.con = con
        self.work = work
        self.staged: dict[str, StagedTable] = {}
        self.item_views: set[str] = set()
        self.limits: dict[str, int] = {}
        """``max_field_lines``/``max_field_bytes`` for every file staged (set from the options)."""

    def stage(
        self,
        view: str,
        path: Path,
        *,
        required: list[str] | None = None,
        fix: str = "",
        items: bool = False,
        **kwargs: object,
    ) -> StagedTable:
        """Stage ``path`` as view ``view`` (with a constant ``_src`` column); ``items`` marks an
        item table (its malformed lines count as item drops, not event drops)."""
        dest = self.work / f"{view}.parquet"
        table = stage_file(path, dest, **(self.limits | kwargs))  # type: ignore[arg-type]
        missing = [c for c in (required or []) if c not in table.columns]
        if missing:
            raise ShopsimError(
                f"{path}: missing column(s) {', '.join(map(repr, missing))} "
                f"(found: {', '.join(table.columns[:12])}{', …' if len(table.columns) > 12 else ''})"
                + (f"; {fix}" if fix else "")
            )
        # a view cannot take bound parameters: the file names go in as quoted literals
        self.con.execute(
            f"CREATE VIEW {q(view)} AS SELECT *, {lit(str(path))} AS _src FROM read_parquet({lit(str(dest))})"
        )
        self.staged[view] = table
        if items:
            self.item_views.add(view)
        return table

    def tables(self, *, items: bool) -> list[StagedTable]:
        """The staged event tables (``items=False``) or item tables (``items=True``)."""
        return [t for v, t in self.staged.items() if (v in self.item_views) == items]


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote a text value as an SQL string literal (where DuckDB takes no bound parameter:
    views, ``COPY … TO``, ``SET``)."""
    if "\x00" in value:
        raise ShopsimError(f"{value!r}: contains a NUL character")
    return "'" + value.replace("'", "''") + "'"


def mode_of(col: str) -> str:
    """The most frequent value of column ``col`` (unquoted name) per group; ties go to the value
    seen first in the source (``_row``, ``_sub``), so reruns agree."""
    return f"mode({q(col)} ORDER BY _row, _sub)"


def col_or_null(name: str, columns: list[str]) -> str:
    """``NULLIF(TRIM(name), '')`` when the column exists, else ``NULL``."""
    return f"NULLIF(TRIM({q(name)}), '')" if name in columns else "CAST(NULL AS VARCHAR)"


def _find(src: Path, names: list[str], what: str, flag: str = "") -> Path:
    """Resolve ``src`` (a file, or a folder holding one of ``names``)."""
    if not src.exists():
        raise ShopsimError(f"{src}: no such file or directory; check the path")
    if src.is_file():
        return src
    for name in names:
        if (src / name).is_file():
            return src / name
    raise ShopsimError(
        f"{src}: no {what} found (looked for {', '.join(names)}); "
        f"pass the file itself{' or ' + flag if flag else ''}"
    )


def _raw_select(
    *,
    session: str = "NULL",
    user: str = "NULL",
    ts: str = "NULL",
    item: str = "NULL",
    event: str = "NULL",
    price: str = "NULL",
    quantity: str = "NULL",
    position: str = "NULL",
    slate: str = "NULL",
    propensity: str = "NULL",
    row: str = "_row",
    sub: str = "0",
    src: str = "_src",
    reason: str = "NULL",
    extras: dict[str, str] | None = None,
) -> str:
    exprs = [session, user, ts, item, event, price, quantity, position, slate, propensity]
    cols = [f"CAST({e} AS VARCHAR) AS {c}" for e, c in zip(exprs, RAW_COLUMNS, strict=True)]
    extra_cols = [f"{e} AS {q(extra(n))}" for n, e in (extras or {}).items()]
    head = [
        f"CAST({row} AS BIGINT) AS _row",
        f"CAST({sub} AS BIGINT) AS _sub",
        f"{src} AS _src",
        f"CAST({reason} AS VARCHAR) AS _reason",
    ]
    return "SELECT " + ", ".join(head + cols + extra_cols)


# --------------------------------------------------------------------------- rees46
def plan_rees46(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
    """REES46 "eCommerce behavior data from multi category store" (events.csv)."""
    path = _find(src, ["events.csv", "events.csv.gz", "2019-Oct.csv"], "REES46 events file")
    need = ["event_time", "event_type", "product_id", "user_id", "user_session", "price"]
    st = ctx.stage("src", path, required=need, fix="is this a REES46 events file?")
    c = st.columns
    raw = (
        _raw_select(
            session="NULLIF(TRIM(user_session), '')",
            user="NULLIF(TRIM(user_id), '')",
            ts="event_time",
            item="NULLIF(TRIM(product_id), '')",
            event="event_type",
            price="price",
            extras={
                "category_id": col_or_null("category_id", c),
                "category_code": col_or_null("category_code", c),
                "brand": col_or_null("brand", c),
            },
        )
        + " FROM src"
    )
    code, brand = mode_of(extra("category_code")), mode_of(extra("brand"))
    items = f"""
        SELECT item_id,
               concat_ws(' ', replace({code}, '.', ' '), {brand}) AS text,
               {mode_of(extra("category_id"))} AS category,
               CAST(median(price) AS VARCHAR) AS price_raw,
               {code} AS {q(extra("category_code"))},
               {brand} AS {q(extra("brand"))},
               min(_row) AS _row
        FROM kept GROUP BY item_id"""
    return Plan(
        raw_sql=raw,
        extras=[],
        item_attrs=["category_id", "category_code", "brand"],
        items_sql=items,
        external_items=False,
        source_columns=_cols(
            path,
            session_id="user_session",
            user_id="user_id",
            ts_raw="event_time",
            item_id="product_id",
            event_raw="event_type",
            price_raw="price",
        ),
        main_file=path,
        duplicates="drop",
    )


# --------------------------------------------------------------------------- hm
def plan_hm(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
    """H&M Personalized Fashion Recommendations (transactions_train.csv + articles.csv)."""
    path = _find(src, ["transactions_train.csv", "transactions_train.csv.gz"], "H&M transactions")
    items_path = opts.items or path.parent / "articles.csv"
    if not items_path.exists():
        raise ShopsimError(
            f"{items_path}: no such file; H&M needs articles.csv beside the transactions or --items PATH"
        )
    need = ["t_dat", "customer_id", "article_id", "price"]
    st = ctx.stage("src", path, required=need, fix="is this H&M transactions_train.csv?")
    ctx.stage("src_items", items_path, required=["article_id"], fix="is this H&M articles.csv?", items=True)
    ic = ctx.staged["src_items"].columns
    text_parts = [
        col_or_null(n, ic)
        for n in (
            "prod_name",
            "product_type_name",
            "colour_group_name",
            "department_name",
            "detail_desc",
        )
    ]
    extra_item_cols = [
        "prod_name",
        "product_type_name",
        "product_group_name",
        "colour_group_name",
        "department_name",
        "index_group_name",
        "section_name",
        "garment_group_name",
        "detail_desc",
    ]
    raw = (
        _raw_select(
            session="NULLIF(TRIM(customer_id), '') || ':' || TRIM(t_dat)",
            user="NULLIF(TRIM(customer_id), '')",
            ts="t_dat",
            item="NULLIF(TRIM(article_id), '')",
            event="'purchase'",
            price="price",
            quantity="'1'",
            extras={"sales_channel_id": col_or_null("sales_channel_id", st.columns)},
        )
        + " FROM src"
    )
    items = (
        "SELECT NULLIF(TRIM(article_id), '') AS item_id, "
        f"concat_ws('. ', {', '.join(text_parts)}) AS text, "
        f"{col_or_null('product_group_name', ic)} AS category, "
        "CAST(NULL AS VARCHAR) AS price_raw, "
        + ", ".join(f"{col_or_null(n, ic)} AS {q(extra(n))}" for n in extra_item_cols)
        + ", _row FROM src_items"
    )
    return Plan(
        raw_sql=raw,
        extras=["sales_channel_id"],
        item_attrs=[],
        items_sql=items,
        external_items=True,
        source_columns=_cols(
            path,
            session_id="customer_id",
            user_id="customer_id",
            ts_raw="t_dat",
            item_id="article_id",
            price_raw="price",
        ),
        main_file=path,
        # One row per purchased unit: identical rows are several units, not double logging.
        duplicates="keep",
        missing_items="drop",
    )


# --------------------------------------------------------------------------- uci
NON_PRODUCT_CODES: tuple[str, ...] = (
    "POST",
    "DOT",
    "M",
    "D",
    "S",
    "B",
    "C2",
    "CRUK",
    "PADS",
    "BANK CHARGES",
    "AMAZONFEE",
)
"""UCI Online Retail stock codes that are postage, fees, discounts or manual adjustments."""


def plan_uci(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
    """UCI Online Retail (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, …)."""
    path = _find(
        src,
        ["online_retail_sample.csv", "Online Retail.csv", "online_retail.csv"],
        "UCI Online Retail CSV",
    )
    need = ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    st = ctx.stage("src", path, required=need, fix="is this the UCI Online Retail CSV?")
    codes = ", ".join(f"'{c}'" for c in NON_PRODUCT_CODES)
    raw = (
        _raw_select(
            session="NULLIF(TRIM(InvoiceNo), '')",
            # No CustomerID (guest checkout): a placeholder user per invoice, so guests are
            # neither dropped nor merged into one giant user.
            user="COALESCE(regexp_replace(NULLIF(TRIM(CustomerID), ''), '\\.0+$', ''), "
            "'guest-' || TRIM(InvoiceNo))",
            ts="InvoiceDate",
            item="NULLIF(TRIM(StockCode), '')",
            event="'purchase'",
            price="UnitPrice",
            quantity="Quantity",
            reason=(
                "CASE WHEN upper(TRIM(InvoiceNo)) LIKE 'C%' THEN 'cancellation' "
                f"WHEN upper(TRIM(StockCode)) IN ({codes}) THEN 'non_product_line' "
                "WHEN TRY_CAST(Quantity AS BIGINT) <= 0 THEN 'nonpositive_quantity' END"
            ),
            extras={
                "description": col_or_null("Description", st.columns),
                "country": col_or_null("Country", st.columns),
            },
        )
        + " FROM src"
    )
    items = f"""
        SELECT item_id, {mode_of(extra("description"))} AS text, CAST(NULL AS VARCHAR) AS category,
               CAST(median(price) AS VARCHAR) AS price_raw, min(_row) AS _row
        FROM kept GROUP BY item_id"""
    return Plan(
        raw_sql=raw,
        extras=["country"],
        item_attrs=["description"],
        items_sql=items,
        external_items=False,
        source_columns=_cols(
            path,
            session_id="InvoiceNo",
            user_id="CustomerID",
            ts_raw="InvoiceDate",
            item_id="StockCode",
            price_raw="UnitPrice",
            quantity_raw="Quantity",
        ),
        main_file=path,
        # Invoice lines: an identical line twice on one invoice is two scans, not a logging error.
        duplicates="keep",
        ts_formats=["%m/%d/%Y %H:%M"],
        notes_sql={
            "invoices": "SELECT count(DISTINCT InvoiceNo) FROM src",
            "cancellation_lines": "SELECT count(*) FROM src WHERE upper(TRIM(InvoiceNo)) LIKE 'C%'",
            "lines_without_customer_id (user = guest-<InvoiceNo>)": (
                "SELECT count(*) FROM src WHERE NULLIF(TRIM(CustomerID), '') IS NULL"
            ),
            "customers": "SELECT count(DISTINCT NULLIF(TRIM(CustomerID), '')) FROM src",
        },
    )


# --------------------------------------------------------------------------- mind
MIND_BEHAVIOR_COLUMNS = ["imp_id", "user_id", "time", "history", "impressions"]
MIND_NEWS_COLUMNS = [
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]
MIND_TIME = "%m/%d/%Y %I:%M:%S %p"


MIND_TOKEN_ITEM = "regexp_extract(tok, '^(.+)-[01]$', 1)"
MIND_TOKEN_LABEL = "regexp_extract(tok, '-([01])$', 1)"
"""The item and the click label (``1`` clicked, ``0`` not) of a MIND impression token ``ITEM-1``."""


def plan_mind(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
    """Microsoft News (MIND) behaviors.tsv + news.tsv (no header lines)."""
    path = _find(src, ["behaviors.tsv"], "MIND behaviors.tsv")
    news = opts.items or path.parent / "news.tsv"
    ctx.stage("src", path, delimiter="\t", names=MIND_BEHAVIOR_COLUMNS, quoted=False)
    items = _mind_items_sql(ctx, news)
    _mind_views(ctx.con)
    return Plan(
        raw_sql=_mind_raw_sql(),
        extras=[],
        item_attrs=[],
        items_sql=items,
        external_items=True,
        source_columns=_cols(
            path,
            session_id="imp_id",
            user_id="user_id",
            ts_raw="time",
            item_id="impressions",
        ),
        main_file=path,
        duplicates="drop",
        # news.tsv covers few of the shown items in public subsets: keep their events.
        missing_items="keep",
        ts_formats=[MIND_TIME],
        notes_sql={
            "impression_logs": "SELECT count(*) FROM src",
            "shown_items": "SELECT count(*) FROM mind_imp",
            "clicks": f"SELECT count(*) FROM mind_imp WHERE {MIND_TOKEN_LABEL} = '1'",
        },
        notes={"rows_in_unit": "shown item, click, or history entry"},
    )


def _mind_items_sql(ctx: StageContext, news: Path) -> str:
    """Stage news.tsv when present; the item SQL (empty without it)."""
    if news.exists():
        ctx.stage("src_news", news, delimiter="\t", names=MIND_NEWS_COLUMNS, quoted=False, items=True)
        return """SELECT NULLIF(TRIM(news_id), '') AS item_id,
                          concat_ws('. ', NULLIF(TRIM(title), ''), NULLIF(TRIM(abstract), '')) AS text,
                          NULLIF(TRIM(category), '') AS category,
                          CAST(NULL AS VARCHAR) AS price_raw,
                          NULLIF(TRIM(subcategory), '') AS "extra:subcategory",
                          NULLIF(TRIM(title), '') AS "extra:title", _row
                   FROM src_news"""
    return """SELECT CAST(NULL AS VARCHAR) AS item_id, CAST(NULL AS VARCHAR) AS text,
                          CAST(NULL AS VARCHAR) AS category, CAST(NULL AS VARCHAR) AS price_raw,
                          CAST(NULL AS VARCHAR) AS "extra:subcategory",
                          CAST(NULL AS VARCHAR) AS "extra:title",
                          CAST(0 AS BIGINT) AS _row
                   WHERE false"""


def _mind_views(con: duckdb.DuckDBPyConnection) -> None:
    """``mind_imp``: one row per shown token (1-based ``pos``); ``mind_hist``: one row per
    history item (``hpos`` of ``n``), with the user's first impression time."""
    con.execute(
        """CREATE VIEW mind_imp AS
            SELECT _row, _src, imp_id, user_id, time,
                   unnest(toks) AS tok, unnest(range(1, len(toks) + 1)) AS pos
            FROM (SELECT *, string_split(TRIM(impressions), ' ') AS toks FROM src
                  WHERE NULLIF(TRIM(impressions), '') IS NOT NULL)"""
    )
    con.execute(
        f"""CREATE VIEW mind_hist AS
            SELECT _row, _src, user_id, first_time, rank_in_user,
                   unnest(h) AS item, unnest(range(1, len(h) + 1)) AS hpos, len(h) AS n
            FROM (SELECT *, string_split(TRIM(history), ' ') AS h,
                         row_number() OVER (PARTITION BY user_id ORDER BY _row) AS rank_in_user,
                         min(try_strptime(time, '{MIND_TIME}')) OVER (PARTITION BY user_id)
                             AS first_time
                  FROM src WHERE NULLIF(TRIM(history), '') IS NOT NULL)"""
    )


def _mind_raw_sql() -> str:
    """History clicks, then one impression row per shown token, then a click row per clicked one."""
    tok_item, tok_label = MIND_TOKEN_ITEM, MIND_TOKEN_LABEL
    shown: dict[str, Any] = {  # an impression row and its click row share all but event and order
        "session": "TRIM(imp_id)",
        "user": "NULLIF(TRIM(user_id), '')",
        "ts": "time",
        "item": f"NULLIF({tok_item}, '')",
        "position": "pos",
        "slate": "TRIM(imp_id)",
    }
    imp = (
        _raw_select(
            **shown,
            event="'impression'",
            sub="pos",
            reason=f"CASE WHEN {tok_label} = '' THEN 'bad_impression_token' END",
        )
        + " FROM mind_imp"
    )
    clk = (
        _raw_select(**shown, event="'click'", sub="1000000 + pos") + f" FROM mind_imp WHERE {tok_label} = '1'"
    )
    hist = (
        _raw_select(
            session="'hist-' || TRIM(user_id)",
            user="NULLIF(TRIM(user_id), '')",
            ts="strftime(first_time - to_seconds(n - hpos + 1), '%Y-%m-%d %H:%M:%S')",
            item="NULLIF(TRIM(item), '')",
            event="'click'",
            sub="-1000000 + hpos",
            reason="CASE WHEN rank_in_user > 1 THEN 'repeated_history' END",
        )
        + " FROM mind_hist"
    )
    return f"{hist} UNION ALL {imp} UNION ALL {clk}"


# --------------------------------------------------------------------------- obd
def plan_obd(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
    """Open Bandit Dataset (ZOZOTOWN): ``all.csv`` + ``item_context.csv``, one folder per
    logging policy (``random/``, ``bts/``) or a single policy's folder/file."""
    folders = _obd_folders(src)
    selects = []
    affinities: list[str] = []
    user_feats: list[str] = []
    for i, (policy, csv_path) in enumerate(folders):
        st = ctx.stage(f"src_{i}", csv_path, required=OBD_REQUIRED, fix="is this an OBD all.csv?")
        # the user columns of the last policy name the extras (the policies share one layout)
        user_feats = [c for c in st.columns if c.startswith("user_feature_")]
        affinities = [c for c in st.columns if c.startswith("user-item_affinity_")]
        selects += _obd_selects(f"src_{i}", policy, user_feats, affinities)
    ctx_files = [p.parent / "item_context.csv" for _, p in folders]
    ctx_file = next((p for p in ctx_files if p.exists()), None)
    if opts.items is not None:
        ctx_file = opts.items
    items = _obd_items_sql(ctx, ctx_file)
    return Plan(
        raw_sql=" UNION ALL ".join(selects),
        extras=["logging_policy", *user_feats, *affinities],
        item_attrs=[],
        items_sql=items,
        external_items=True,
        source_columns=_cols(
            folders[0][1],
            ts_raw="timestamp",
            item_id="item_id",
            position_raw="position",
            propensity_raw="propensity_score",
        ),
        main_file=folders[0][1],
        duplicates="drop",
        missing_items="keep",
        notes={"logging_policies": ",".join(p for p, _ in folders)},
        notes_sql={f"impressions[{p}]": f"SELECT count(*) FROM src_{i}" for i, (p, _) in enumerate(folders)}
        | {
            f"clicks[{p}]": f"SELECT count(*) FROM src_{i} WHERE TRIM(click) = '1'"
            for i, (p, _) in enumerate(folders)
        },
    )


OBD_REQUIRED = ["timestamp", "item_id", "position", "click", "propensity_score"]


def _obd_folders(src: Path) -> list[tuple[str, Path]]:
    """(logging policy, all.csv) of an OBD file, policy folder or campaign folder of policies."""
    if not src.exists():
        raise ShopsimError(f"{src}: no such file or directory; check the path")
    if src.is_file():
        return [(src.parent.name or "policy", src)]
    if (src / "all.csv").is_file():
        return [(src.name, src / "all.csv")]
    folders = sorted((d.name, d / "all.csv") for d in src.iterdir() if (d / "all.csv").is_file())
    if not folders:
        raise ShopsimError(
            f"{src}: no all.csv found (looked in the folder and its sub-folders); "
            "point at an Open Bandit Dataset campaign folder"
        )
    return folders


def _obd_selects(view: str, policy: str, user_feats: list[str], affinities: list[str]) -> list[str]:
    """Raw SELECTs of one policy's log: an impression row per line, a click row per clicked one."""
    pol = lit(policy)[1:-1]  # spliced inside the literals below
    user_hash = (
        "'u-' || substr(md5(concat_ws('|', " + ", ".join(map(q, user_feats)) + ")), 1, 12)"
        if user_feats
        else "'u-unknown'"
    )
    extras = {"logging_policy": f"'{pol}'"}
    extras.update({c: q(c) for c in user_feats + affinities})
    return [
        _raw_select(
            session=f"'{pol}-' || _row",
            user=user_hash,
            ts="timestamp",
            item="NULLIF(TRIM(item_id), '')",
            event=f"'{event}'",
            position="position",
            slate=f"'{pol}-' || _row",
            propensity="propensity_score",
            sub=str(sub),
            extras=extras,
        )
        + f" FROM {view}{where}"
        for event, sub, where in (("impression", 0, ""), ("click", 1, " WHERE TRIM(click) = '1'"))
    ]


def _obd_items_sql(ctx: StageContext, ctx_file: Path | None) -> str:
    """Stage item_context.csv when there is one; the item SQL (empty without it)."""
    if ctx_file is None:
        return (
            "SELECT CAST(NULL AS VARCHAR) AS item_id, CAST(NULL AS VARCHAR) AS text, "
            "CAST(NULL AS VARCHAR) AS category, CAST(NULL AS VARCHAR) AS price_raw, "
            "CAST(0 AS BIGINT) AS _row WHERE false"
        )
    ic = ctx.stage("src_items", ctx_file, required=["item_id"], items=True).columns
    feats = [c for c in ic if c.startswith("item_feature_")]
    return (
        "SELECT NULLIF(TRIM(item_id), '') AS item_id, CAST(NULL AS VARCHAR) AS text, "
        f"{col_or_null('item_feature_1', ic)} AS category, "
        "CAST(NULL AS VARCHAR) AS price_raw"
        + "".join(f", {q(c)} AS {q(extra(c))}" for c in feats)
        + ", _row FROM src_items"
    )


# --------------------------------------------------------------------------- events
def plan_events(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
    """Any event log (CSV/TSV/Parquet) with ``--map canonical=source``."""
    if not src.exists():
        raise ShopsimError(f"{src}: no such file; check the path")
    delim = "\t" if src.suffix.lower() == ".tsv" or src.name.lower().endswith(".tsv.gz") else ","
    st = ctx.stage("src", src, delimiter=delim)
    cols = st.columns
    mapping = _map_event_columns(src, cols, opts)
    text_cols = opts.text_cols or []
    used = set(mapping.values())
    # unmapped source column → its extra name (a source column named 'category' yields to the
    # mapped category when --map category=… names another column)
    taken = {"category"} if "category" in mapping else set()
    extras: dict[str, str] = {}
    for c in cols:
        if c not in used:
            extras[c] = free_name(c, taken | set(cols)) if c in taken else c
            taken.add(extras[c])
    if opts.items is None:
        _check_text_cols(src, text_cols, cols)
    event_extras = list(extras.values()) + (["category"] if "category" in mapping else [])
    if opts.items is not None:
        items = _items_from_file(ctx, opts.items, opts, mapping, text_cols)
    else:
        items = _items_from_events(mapping, extras, text_cols)
    return Plan(
        raw_sql=_events_raw_sql(st, mapping, extras, opts.default_event),
        extras=event_extras,
        item_attrs=[],
        items_sql=items,
        external_items=opts.items is not None,
        source_columns=_cols(
            src,
            **{
                raw_name: mapping[CANONICAL_OF_RAW.get(raw_name, raw_name)]
                for raw_name in RAW_COLUMNS
                if CANONICAL_OF_RAW.get(raw_name, raw_name) in mapping
            },
        ),
        main_file=src,
        duplicates="drop",
        missing_items="drop",
        derive_sessions="session_id" not in mapping,
        ts_formats=[opts.timestamp_format] if opts.timestamp_format else [],
    )


def _found(cols: list[str]) -> str:
    """The first columns of a file, for messages."""
    return f"{', '.join(cols[:12])}{', …' if len(cols) > 12 else ''}"


def _map_event_columns(src: Path, cols: list[str], opts: PrepareOptions) -> dict[str, str]:
    """Canonical column → source column: ``--map`` first, else a column of the canonical name.

    :raises ShopsimError: when a mapped column is absent or a required one is not found.
    """
    mapping: dict[str, str] = {}
    for canon in MAPPABLE:
        source = opts.column_map.get(canon, canon)
        if source in cols:
            mapping[canon] = source
        elif canon in opts.column_map:
            raise ShopsimError(f"{src}: --map {canon}={source}: no column {source!r} (found: {_found(cols)})")
    required = ["user_id", "timestamp", "item_id"] + ([] if opts.default_event else ["event"])
    missing = [c for c in required if c not in mapping]
    if missing:
        hint = " or --default-event EVENT" if "event" in missing else ""
        raise ShopsimError(
            f"{src}: required column(s) {', '.join(missing)} not found "
            f"(found: {_found(cols)}); "
            f"name them with --map canonical=source, e.g. --map {missing[0]}=<your column>{hint}"
        )
    return mapping


def _check_text_cols(path: Path, text_cols: list[str], cols: list[str]) -> None:
    """Every ``--text-cols`` column must exist in ``path``."""
    bad = [c for c in text_cols if c not in cols]
    if bad:
        raise ShopsimError(f"{path}: --text-cols {', '.join(bad)}: no such column(s) (found: {_found(cols)})")


def _events_raw_sql(
    st: StagedTable, mapping: dict[str, str], extras: dict[str, str], default_event: str | None
) -> str:
    """The raw SELECT of an ``events`` log: mapped columns, unmapped ones as extras."""

    def m(canon: str) -> str:
        return f"NULLIF(TRIM({q(st.sql(mapping[canon]))}), '')" if canon in mapping else "NULL"

    event = m("event")
    if default_event:
        event = f"COALESCE({event}, {lit(default_event)})"
    return (
        _raw_select(
            session=m("session_id"),
            user=m("user_id"),
            ts=m("timestamp"),
            item=m("item_id"),
            event=event,
            price=m("price"),
            quantity=m("quantity"),
            position=m("position"),
            slate=m("slate_id"),
            propensity=m("propensity"),
            extras={name: f"NULLIF(TRIM({q(st.sql(c))}), '')" for c, name in extras.items()}
            | ({"category": m("category")} if "category" in mapping else {}),
        )
        + " FROM src"
    )


def _items_from_file(
    ctx: StageContext, path: Path, opts: PrepareOptions, mapping: dict[str, str], text_cols: list[str]
) -> str:
    """Stage an ``events`` log's ``--items`` file; its item SQL (text = the joined ``--text-cols``)."""
    ist = ctx.stage("src_items", path, items=True)
    icols = ist.columns
    id_col = next((c for c in ("item_id", mapping["item_id"]) if c in icols), None)
    if id_col is None:
        raise ShopsimError(
            f"{path}: no item id column (looked for 'item_id' and {mapping['item_id']!r}); rename the column"
        )
    _check_text_cols(path, text_cols, icols)
    cat_col = opts.column_map.get("category", "category")
    price_col = opts.column_map.get("price", "price")
    other = [c for c in icols if c not in {id_col, cat_col, price_col}]
    text = (
        "concat_ws(' | ', " + ", ".join(f"NULLIF(TRIM({q(ist.sql(c))}), '')" for c in text_cols) + ")"
        if text_cols
        else "CAST(NULL AS VARCHAR)"
    )
    staged = [ist.sql(c) for c in icols]

    def col(c: str) -> str:
        return col_or_null(ist.sql(c), staged) if c in icols else "CAST(NULL AS VARCHAR)"

    return (
        f"SELECT {col(id_col)} AS item_id, {text} AS text, "
        f"{col(cat_col)} AS category, {col(price_col)} AS price_raw"
        + "".join(f", {col(c)} AS {q(extra(c))}" for c in other)
        + ", _row FROM src_items"
    )


_KEPT_COLUMN_OF_CANONICAL = {
    "session_id": "session_id",
    "user_id": "user_id",
    "timestamp": "ts_raw",
    "item_id": "item_id",
    "event": "event_raw",
    "price": "price_raw",
    "position": "position_raw",
    "slate_id": "slate_id",
    "propensity": "propensity_raw",
    "quantity": "quantity_raw",
    "category": extra("category"),
}
"""Where the table ``kept`` holds each mappable canonical column's source text."""


def _items_from_events(mapping: dict[str, str], extras: dict[str, str], text_cols: list[str]) -> str:
    """Item SQL of an ``events`` log without an item file: per item, the most frequent text
    columns and category (ties: the first seen) and the median price of its kept events."""
    source_of = {src: _KEPT_COLUMN_OF_CANONICAL[canon] for canon, src in mapping.items()}
    source_of.update({c: extra(name) for c, name in extras.items()})
    text = (
        "concat_ws(' | ', " + ", ".join(mode_of(source_of[c]) for c in text_cols) + ")"
        if text_cols
        else "CAST(NULL AS VARCHAR)"
    )
    cat = mode_of(extra("category")) if "category" in mapping else "CAST(NULL AS VARCHAR)"
    return (
        f"SELECT item_id, {text} AS text, {cat} AS category, "
        "CAST(median(price) AS VARCHAR) AS price_raw, min(_row) AS _row "
        "FROM kept GROUP BY item_id"
    )


def _cols(path: Path, **raw_to_source: str) -> dict[str, tuple[str, str]]:
    return {raw: (str(path), source) for raw, source in raw_to_source.items()}


Planner = Callable[[StageContext, Path, PrepareOptions], Plan]


def _with_limits(planner: Planner) -> Planner:
    """The planner, staging its files with the options' record limits."""

    @functools.wraps(planner)
    def plan(ctx: StageContext, src: Path, opts: PrepareOptions) -> Plan:
        ctx.limits = {"max_field_lines": opts.max_field_lines, "max_field_bytes": opts.max_field_bytes}
        return planner(ctx, src, opts)

    return plan


FORMATS: dict[str, Planner] = {
    name: _with_limits(planner)
    for name, planner in (
        ("rees46", plan_rees46),
        ("hm", plan_hm),
        ("uci", plan_uci),
        ("mind", plan_mind),
        ("obd", plan_obd),
        ("events", plan_events),
    )
}
"""Known source formats → planner."""

FORMATS_WITH_IMPRESSIONS: frozenset[str] = frozenset({"mind", "obd"})
"""Formats whose logs always record what was shown (impression rows with positions); an
``events`` log has impressions when its event column contains ``impression``."""

__all__ = [
    "EXTRA_NS",
    "FORMATS",
    "FORMATS_WITH_IMPRESSIONS",
    "Plan",
    "PrepareOptions",
    "StageContext",
    "extra",
    "is_parquet",
    "lit",
    "output_names",
    "parse_column_map",
]
