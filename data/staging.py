"""Stream a source file (CSV, TSV, gzip'd or not, or Parquet) into a staging Parquet file.

Every column is read as text (nothing is guessed, so nothing is mangled) and a ``_row`` column
records the 1-based data row (record) in the source file (header not counted), so later errors
and drop examples can point at the exact row. Memory stays bounded: the file is read and
written in blocks, never whole.

**No line is lost silently.** A text file is first split into records by a line scanner that
follows the CSV parser's quoting rules (a ``"`` opens a quoted field only at the start of a
field; ``""`` inside one is a literal quote; a quoted field may hold line breaks). Every
physical line (ended by ``\\n``, ``\\r\\n`` or ``\\r``) is then exactly one of: the header, a
blank line (which the parser skips), or a line of a record; :class:`LineCounts` records the
counts and ``lines_in == header_lines + blank_lines + record_lines`` is checked. Each record is
kept or dropped with a reason (:data:`STAGING_DROP_REASONS`):

* ``malformed_row`` — the record's field count differs from the header's, or a quoted field
  runs away: it is still open after :data:`MAX_FIELD_LINES` lines or :data:`MAX_FIELD_BYTES`
  bytes (or at the end of the file). A runaway record is dropped as its *first line only*;
  scanning resumes on the next line, so one unbalanced quote costs one row, not the rest of
  the file. Both limits are options (``PrepareOptions.max_field_lines`` / ``max_field_bytes``).
* ``bad_encoding`` — the record is not valid UTF-8. The choice: such rows are dropped and
  counted (a file that is mostly Latin-1 then ends with every row dropped and the message
  says to re-encode it, e.g. ``iconv -f latin1 -t utf-8``). A header that is not UTF-8, or a
  NUL byte in the first block (binary data), is one error line instead.

**Fast path.** While no record is open, a stretch of lines holding no ``"`` (when quoting is on),
no ``\\r`` and no NUL, and valid UTF-8, needs no line-by-line scan: its lines are counted in bulk
and handed to the CSV parser as they are, whose invalid-row handler reports the records of the
wrong width (then located exactly). Only the lines around the other bytes go through the
scanner, so a quote-free file is staged at about the parser's own speed; both paths give the
same tables, row numbers and line counts (see :class:`_Scanner`).

Records spanning several lines are counted (``multiline_records``) and the first few are listed
with their line range. Unreadable files (permission denied, truncated or corrupt gzip) are one
:class:`~shopsim.errors.ShopsimError` line naming the file.

**Column names.** A source column keeps its name in the staged table unless that name is one
of the staging columns (:data:`STAGING_COLUMNS`: ``_row``, and ``_src`` added by the views);
such a column is staged as ``src_<name>`` (prefix repeated until the name is free) — see
:func:`free_name` — so no source column can replace the row numbers or the file name.
"""

from __future__ import annotations

import codecs
import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopsim.errors import ShopsimError

BLOCK_SIZE = 8 << 20

MAX_FIELD_LINES = 100
"""Default bound on the lines one record (one quoted field running over line breaks) may span."""
MAX_FIELD_BYTES = 1 << 20
"""Default bound on the bytes of a record spanning several lines."""

STAGING_COLUMNS: frozenset[str] = frozenset({"_row", "_src"})
"""Columns the staging adds; a source column of that name is renamed (see :func:`free_name`)."""

SOURCE_PREFIX = "src_"
"""Prefix given to a source column whose name is already taken by a pipeline column."""

STAGING_DROP_REASONS: dict[str, str] = {
    "malformed_row": "the record has the wrong number of fields, or a quoted field runs over "
    "more than the allowed lines/bytes (an unbalanced quote): the first line is dropped",
    "bad_encoding": "the record is not valid UTF-8 text",
}
"""Reasons a source record is dropped while staging (the pipeline counts them with the rest)."""

EXAMPLES_KEPT = 5


def free_name(name: str, taken: Iterable[str] | set[str], prefix: str = SOURCE_PREFIX) -> str:
    """``name``, or ``prefix + name`` (prefix repeated) until it is not in ``taken``."""
    taken = set(taken)
    while name in taken:
        name = prefix + name
    return name


@dataclass
class LineCounts:
    """How the physical lines of a text source were accounted for."""

    lines_in: int = 0
    header_lines: int = 0
    blank_lines: int = 0
    record_lines: int = 0
    records: int = 0
    multiline_records: int = 0
    multiline_examples: list[tuple[int, int]] = field(default_factory=list)
    """(first line, last line) of the first multi-line records (1-based physical lines)."""

    @property
    def reconciled(self) -> bool:
        """Every physical line is the header, a blank line or a line of a record."""
        return self.lines_in == self.header_lines + self.blank_lines + self.record_lines


@dataclass
class StagedTable:
    """A source file copied to Parquet with all columns as strings plus ``_row``."""

    source: Path
    parquet: Path
    columns: list[str]
    """Source column names (an empty header name becomes ``_unnamed_<i>``)."""
    rows: int
    malformed_rows: list[int] = field(default_factory=list)
    """Data rows (1-based) whose field count did not match the header, or whose quoted field
    ran away; skipped and counted."""
    bad_encoding_rows: list[int] = field(default_factory=list)
    """Data rows (1-based) that are not valid UTF-8; skipped and counted."""
    sql_names: dict[str, str] = field(default_factory=dict)
    """Source column → its column name in the staged table (itself unless it was taken)."""
    lines: LineCounts | None = None
    """Line accounting of a text source (``None`` for Parquet)."""
    drop_lines: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Physical line range of the first few dropped rows (row → (first line, last line))."""

    def __post_init__(self) -> None:
        if not self.sql_names:
            self.sql_names = {c: c for c in self.columns}

    def sql(self, column: str) -> str:
        """The staged table's name of source column ``column``."""
        return self.sql_names.get(column, column)

    def line_report(self) -> dict[str, Any]:
        """This file's entry of report.json's ``lines`` block."""
        dropped = {"malformed_row": len(self.malformed_rows), "bad_encoding": len(self.bad_encoding_rows)}
        entry: dict[str, Any] = {"file": str(self.source)}
        if self.lines is None:
            entry |= {"kind": "parquet", "records": self.rows, "records_kept": self.rows}
            entry["reconciled"] = True
            return entry
        lc = self.lines
        entry |= {
            "kind": "text",
            "lines_in": lc.lines_in,
            "header_lines": lc.header_lines,
            "blank_lines": lc.blank_lines,
            "record_lines": lc.record_lines,
            "records": lc.records,
            "records_kept": self.rows,
            "records_dropped": {k: v for k, v in dropped.items() if v},
            "multiline_records": lc.multiline_records,
            "multiline_examples": [list(r) for r in lc.multiline_examples],
            "dropped_examples": [
                {"row": row, "lines": list(span)} for row, span in sorted(self.drop_lines.items())
            ],
            "reconciled": lc.reconciled and lc.records == self.rows + sum(dropped.values()),
        }
        return entry


def is_parquet(path: Path) -> bool:
    """True when ``path`` names a Parquet file (by extension)."""
    return path.suffix.lower() in {".parquet", ".pq"}


def read_header(path: Path, delimiter: str) -> list[str]:
    """Return the column names in the first line of a (possibly compressed) text file."""
    import csv

    with _open_source(path) as raw:
        first = _first_line(path, raw)
    return next(csv.reader([first], delimiter=delimiter))


def stage_file(
    path: Path,
    dest: Path,
    *,
    delimiter: str = ",",
    names: list[str] | None = None,
    quoted: bool = True,
    max_field_lines: int = MAX_FIELD_LINES,
    max_field_bytes: int = MAX_FIELD_BYTES,
    block_size: int = BLOCK_SIZE,
    fast_path: bool = True,
) -> StagedTable:
    """Copy ``path`` to ``dest`` (Parquet) with every column as text and a ``_row`` column.

    :param path: source file: ``.csv``/``.tsv`` (optionally ``.gz``/``.bz2``/``.zst``) or
        ``.parquet``.
    :param dest: the staging Parquet file to write.
    :param delimiter: field separator of a text file.
    :param names: column names for a file without a header line (MIND's TSVs).
    :param quoted: whether ``"`` quotes fields (False for MIND, whose text has bare quotes).
    :param max_field_lines: a record may span at most this many lines (see the module docstring).
    :param max_field_bytes: a record spanning several lines may hold at most this many bytes.
    :param block_size: bytes read (and parsed) at a time.
    :param fast_path: pass stretches of plain lines to the parser in bulk (see :class:`_Scanner`);
        ``False`` scans every line exactly (the same result, slower; for tests).
    :return: what was staged.
    :raises ShopsimError: if the file is missing, empty, binary or unreadable.
    """
    _check_source(path)
    if is_parquet(path):
        return _stage_parquet(path, dest)
    import csv

    with _open_source(path) as raw:
        if names is None:
            first = _first_line(path, raw)
            header = next(csv.reader([first], delimiter=delimiter))
        else:
            header = list(names)
        if len(set(header)) != len(header):
            dup = next(c for c in header if header.count(c) > 1)
            raise ShopsimError(f"{path}: column {dup!r} appears twice in the header; rename one")
        # pyarrow rejects an empty column name; give it a stable placeholder (pandas index columns).
        colnames = [c if c else f"_unnamed_{i}" for i, c in enumerate(header)]
        sql_names = _staged_names(colnames)
    with _open_source(path) as raw:
        scanner = _Scanner(
            path,
            raw,
            colnames,
            delimiter,
            quoted,
            names is None,
            max_field_lines,
            max_field_bytes,
            block_size=block_size,
            fast=fast_path,
        )
        rows = _write_tables(dest, scanner.tables(), [sql_names[c] for c in colnames], block_size)
    scanner.finish(rows)
    return StagedTable(
        path,
        dest,
        colnames,
        rows,
        sorted(scanner.malformed),
        sorted(scanner.bad_encoding),
        sql_names,
        scanner.counts,
        scanner.drop_lines,
    )


def _staged_names(colnames: list[str]) -> dict[str, str]:
    """Source column → staged name: itself, unless a staging column takes it."""
    taken = set(colnames) | STAGING_COLUMNS
    out: dict[str, str] = {}
    for c in colnames:
        if c in STAGING_COLUMNS:
            new = free_name(c, taken)
            taken.add(new)
            out[c] = new
        else:
            out[c] = c
    return out


def _check_source(path: Path) -> None:
    """A source must be an existing, non-empty, readable file."""
    if not path.exists():
        raise ShopsimError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ShopsimError(f"{path}: is a directory; expected a file")
    if not os.access(path, os.R_OK):
        raise ShopsimError(f"{path}: permission denied; make the file readable (chmod +r) or copy it")
    if path.stat().st_size == 0:
        raise ShopsimError(f"{path}: the file is empty; expected a header line and data rows")


class _Source:
    """A decompressed byte stream of a source file, closed deterministically, whose read
    errors (corrupt or truncated compression) are one line naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.stream = pa.input_stream(str(path), compression="detect")
        except PermissionError:
            raise ShopsimError(f"{path}: permission denied; make the file readable (chmod +r)") from None
        except (OSError, pa.ArrowException) as exc:
            raise ShopsimError(f"{path}: cannot be opened ({_first_msg_line(exc)})") from None

    def read(self, n: int) -> bytes:
        try:
            return bytes(self.stream.read(n))
        except (OSError, EOFError, pa.ArrowException) as exc:
            raise ShopsimError(
                f"{path_hint(self.path)} cannot be read ({_first_msg_line(exc)}); "
                "is the file complete (a truncated or corrupt download)?"
            ) from None

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self.stream.close()


def path_hint(path: Path) -> str:
    """``PATH:`` as messages start."""
    return f"{path}:"


def _open_source(path: Path) -> _Source:
    return _Source(path)


NUL = b"\x00"


def _refuse_binary(path: Path, head: bytes) -> None:
    """A NUL byte near the start means binary data (an image, a compressed file without its
    extension): one line, instead of rows dropped one by one."""
    if NUL in head:
        raise ShopsimError(
            f"{path}: binary data, not delimited text (NUL byte at offset {head.index(NUL)}); "
            "pass a CSV/TSV (compressed files need a .gz/.bz2/.zst extension) or a Parquet file"
        )


def _first_line(path: Path, raw: _Source) -> str:
    """The header line, decoded; binary or non-UTF-8 data is one line with the fix."""
    head = raw.read(1 << 16)
    _refuse_binary(path, head)
    while b"\n" not in head and b"\r" not in head:
        more = raw.read(1 << 16)
        if not more:
            break
        head += more
    line = head.splitlines()[0] if head.splitlines() else b""
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ShopsimError(
            f"{path}: line 1 (the header) is not UTF-8 text (byte {exc.start}); "
            "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT"
        ) from None
    if not text.strip():
        raise ShopsimError(f"{path}: the file is empty; expected a header line and data rows")
    return text


class _Scanner:
    """Splits the source into records as the CSV parser would, keeps the good ones and
    accounts for every physical line (see the module docstring).

    The file is read in blocks cut at a line end. While no record is open, a stretch of lines
    with no byte that needs the exact scanner (a ``"`` when quoting is on, ``\\r``, NUL) that is
    also valid UTF-8 is a *fast run*: each of its lines is a blank line or a one-line record, so
    it goes to the CSV parser as it is and is accounted for in bulk (lines by ``\\n``, records by
    the parser, blank lines as the difference, wrong field counts by the parser's invalid-row
    handler and then located exactly). Every other line goes through the exact line scanner
    (:meth:`_line`); after such a line the scanner stays exact until the next special byte is
    at least ``block_size // 128`` bytes away. Both paths keep, drop and number records alike
    (tests/data/test_staging_paths.py)."""

    def __init__(
        self,
        path: Path,
        raw: _Source,
        colnames: list[str],
        delimiter: str,
        quoted: bool,
        has_header: bool,
        max_lines: int,
        max_bytes: int,
        *,
        block_size: int = BLOCK_SIZE,
        fast: bool = True,
    ) -> None:
        self.path = path
        self.raw = raw
        self.colnames = colnames
        self.n_delims = len(colnames) - 1
        self.delimiter = delimiter
        self.delim = delimiter.encode()
        self.quoted = quoted
        self.has_header = has_header
        self.max_lines = max(1, int(max_lines))
        self.max_bytes = max(1, int(max_bytes))
        self.block_size = max(1, int(block_size))
        self.fast = fast
        self.min_run = self.block_size // 128
        self.specials = [b'"', b"\r", NUL] if quoted else [b"\r", NUL]
        self.counts = LineCounts()
        self.malformed: list[int] = []
        self.bad_encoding: list[int] = []
        self.drop_lines: dict[int, tuple[int, int]] = {}
        self.kept = 0
        self.exact_lines = 0
        """Physical lines that went through the exact scanner (the rest took the fast path)."""
        self._pending: list[tuple[bytes, int]] = []
        # the exact scanner's open record
        self._rec: list[bytes] = []
        self._rec_start = self._rec_bytes = self._delims = 0
        self._in_quote = False
        # records the exact scanner kept, not yet parsed, and their data-row numbers
        self._out: list[bytes] = []
        self._out_rows: list[int] = []
        self._out_bytes = 0

    # ------------------------------------------------------------------ blocks
    def tables(self) -> Iterator[pa.Table]:
        """The kept records as tables of text columns plus ``_row``, in file order."""
        carry = b""
        first = True
        header = self.has_header
        while True:
            # the binary check always sees the first 64 KiB, whatever the block size
            block = self.raw.read(max(self.block_size, 1 << 16) if first else self.block_size)
            if first:
                _refuse_binary(self.path, block[: 1 << 16])
            first = False
            eof = not block
            if eof:
                pieces = [(carry, 0, len(carry))]
            else:
                # cut after the block's last line end; a trailing '\r' may be the first half of '\r\n'
                limit = len(block) - 1 if block.endswith(b"\r") else len(block)
                nl = block.rfind(b"\n", 0, limit)
                end = max(nl, block.rfind(b"\r", nl + 1, limit)) + 1
                if not end:  # no line ends in this block yet
                    carry += block
                    continue
                # the line begun in the last block is completed on its own, so the block itself
                # is scanned in place (no copy of it)
                pieces = [(block, 0, end)]
                if carry:
                    if carry.endswith(b"\r"):
                        j = 1 if block.startswith(b"\n") else 0
                    else:
                        j = _line_end(block, 0, end)
                    pieces = [(carry + block[:j], 0, len(carry) + j), (block, j, end)]
                carry = block[end:]
            for buf, pos, stop in pieces:
                if header and pos < stop:
                    pos = _line_end(buf, pos, stop)
                    self.counts.lines_in = self.counts.header_lines = 1
                    header = False
                yield from self._chunk(buf, pos, stop)
            if eof:
                break
        # the end of the file inside a quoted field: a runaway too
        while self._rec or self._pending:
            if self._pending:
                self._line(*self._pending.pop())
            else:
                self._runaway(self._rec, self._rec_start)
                self._reset()
        yield from self._flush()

    def _chunk(self, buf: bytes, pos: int, stop: int) -> Iterator[pa.Table]:
        """Account for the whole lines of ``buf[pos:stop]``."""
        nxt = dict.fromkeys(self.specials, -1)
        lc = self.counts
        while pos < stop or self._pending:
            if self.fast and self._idle():
                end = self._fast_end(buf, pos, stop, nxt)
                if end > pos:
                    yield from self._flush()
                    yield from self._fast(buf, pos, end)
                    pos = end
            while self._pending or pos < stop:
                if self._pending:
                    line, number = self._pending.pop()
                else:
                    e = _line_end(buf, pos, stop)
                    line, pos = buf[pos:e], e
                    lc.lines_in += 1
                    number = lc.lines_in
                    self.exact_lines += 1
                self._line(line, number)
                if self._out_bytes >= self.block_size:
                    yield from self._flush()
                # back to the fast path once the next special byte is far enough ahead
                if (
                    self.fast
                    and self._idle()
                    and self._next_special(buf, pos, stop, nxt) >= pos + self.min_run
                ):
                    break

    def _idle(self) -> bool:
        return not self._rec and not self._pending

    def _next_special(self, buf: bytes, pos: int, stop: int, nxt: dict[bytes, int]) -> int:
        """Offset of the next byte in ``buf[pos:stop]`` that needs the exact scanner (or ``stop``)."""
        for b, at in nxt.items():
            if at < pos:
                found = buf.find(b, pos, stop)
                nxt[b] = found if found >= 0 else stop
        return min(nxt.values())

    def _fast_end(self, buf: bytes, pos: int, stop: int, nxt: dict[bytes, int]) -> int:
        """The end of the fast run of whole lines from ``pos`` (``pos`` when there is none)."""
        s = self._next_special(buf, pos, stop, nxt)
        end = stop if s >= stop else max(pos, buf.rfind(b"\n", pos, s) + 1)
        if end > pos and np.frombuffer(buf, np.uint8, end - pos, pos).max() >= 0x80:
            try:
                codecs.utf_8_decode(memoryview(buf)[pos:end], "strict", True)
            except UnicodeDecodeError as exc:
                # the lines before the first non-UTF-8 byte's line stay fast
                end = max(pos, buf.rfind(b"\n", pos, pos + exc.start) + 1)
        return end

    def _fast(self, buf: bytes, pos: int, end: int) -> Iterator[pa.Table]:
        """Account for and parse the fast run ``buf[pos:end]`` (see the class docstring)."""
        lc = self.counts
        run = np.frombuffer(buf, np.uint8, end - pos, pos)
        lines = int(np.count_nonzero(run == 10)) + int(run[-1] != 10)
        table, invalid = self._parse(memoryview(buf)[pos:end], fast=True)
        ok = table.num_rows if table is not None else 0
        records = ok + len(invalid)
        first_row, first_line = lc.records + 1, lc.lines_in + 1
        rows = np.arange(first_row, first_row + records, dtype=np.int64)
        if invalid:
            bad, bad_lines = self._wrong_width(run, records)
            numbers = [n for n in invalid if n is not None]
            if len(bad) != len(invalid) or (len(numbers) == len(invalid) and bad.tolist() != sorted(numbers)):
                raise ShopsimError(  # pragma: no cover - a scanner bug, not user input
                    f"{path_hint(self.path)} the line scanner and the CSV parser disagree on the field "
                    f"counts near line {first_line}; please report this file"
                )
            for ordinal, line in zip(bad.tolist(), bad_lines.tolist(), strict=True):
                row = first_row + ordinal - 1
                self.malformed.append(row)
                if len(self.drop_lines) < EXAMPLES_KEPT:
                    self.drop_lines[row] = (first_line + line, first_line + line)
            rows = np.delete(rows, bad - 1)
        lc.lines_in += lines
        lc.blank_lines += lines - records
        lc.records += records
        lc.record_lines += records
        self.kept += ok
        if table is not None:
            yield table.append_column("_row", pa.array(rows))

    def _wrong_width(self, a: np.ndarray, records: int) -> tuple[np.ndarray, np.ndarray]:
        """The 1-based ordinals of the records of fast run ``a`` (its bytes) whose field count is
        wrong, and their 0-based line offsets in the run."""
        ends = np.flatnonzero(a == 10)
        if a[-1] != 10:
            ends = np.append(ends, len(a))
        starts = np.concatenate(([0], ends[:-1] + 1))
        delims = np.flatnonzero(a == self.delim[0])
        per_line = np.searchsorted(delims, ends) - np.searchsorted(delims, starts)
        lines = np.flatnonzero(ends > starts)  # blank lines hold no record
        if len(lines) != records:  # pragma: no cover - a scanner bug, not user input
            raise ShopsimError(
                f"{path_hint(self.path)} the line scanner counted {len(lines)} records in a block where the "
                f"CSV parser read {records}; please report this file"
            )
        bad = np.flatnonzero(per_line[lines] != self.n_delims)
        return bad + 1, lines[bad]

    def _flush(self) -> Iterator[pa.Table]:
        """Parse the records the exact scanner kept so far."""
        if not self._out:
            return
        data, rows = b"".join(self._out), np.asarray(self._out_rows, dtype=np.int64)
        self._out, self._out_rows, self._out_bytes = [], [], 0
        table, _ = self._parse(data, fast=False)
        if table is None or table.num_rows != len(rows):  # pragma: no cover - a scanner bug
            raise ShopsimError(
                f"{self.path}: the line scanner kept {len(rows)} records but the CSV parser read "
                f"{0 if table is None else table.num_rows}; please report this file"
            )
        yield table.append_column("_row", pa.array(rows))

    def _parse(self, data: bytes | memoryview, *, fast: bool) -> tuple[pa.Table | None, list[int | None]]:
        """Parse whole records with every column as text; return the table (``None`` when the
        data holds no record) and the parser's numbers of the rows of the wrong width (skipped;
        only a fast run may have them: the exact scanner drops them first)."""
        invalid: list[int | None] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            if not fast:  # pragma: no cover - the scanner drops these first
                raise ShopsimError(
                    f"{self.path}: the CSV parser rejected a record the line scanner accepted "
                    f"({row.text[:80]!r}); please report this file"
                )
            invalid.append(row.number)
            return "skip"

        try:
            table = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=pacsv.ReadOptions(
                    column_names=self.colnames,
                    # one block: no record can straddle a block boundary
                    block_size=max(1 << 20, len(data) + 1),
                    use_threads=False,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    quote_char='"' if self.quoted else False,
                    invalid_row_handler=on_invalid,
                    # a fast run has no quote, so no line break inside a value
                    newlines_in_values=self.quoted and not fast,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(self.colnames, pa.string()),
                    # Only an empty field is missing: pyarrow's default list would also turn
                    # text such as "NA", "null" or "n/a" into missing values silently.
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return None, invalid
            raise ShopsimError(f"{self.path}: cannot be parsed ({_first_msg_line(exc)})") from None
        return table, invalid

    # ------------------------------------------------------------------ records
    def _line(self, line: bytes, number: int) -> None:
        """The exact scanner: account for physical line ``number`` (with its line end)."""
        content = line.rstrip(b"\r\n")
        rec = self._rec
        if not rec:
            if not content:
                self.counts.blank_lines += 1
                return
            self._rec_start, self._rec_bytes, self._delims = number, 0, 0
        rec.append(line)
        self._rec_bytes += len(line)
        if self.quoted and (self._in_quote or b'"' in content):
            self._in_quote, d = _scan(content, self._in_quote, self.delim[0])
        else:
            d = content.count(self.delim)
        self._delims += d
        if self._in_quote:
            if len(rec) >= self.max_lines or self._rec_bytes > self.max_bytes:
                self._runaway(rec, self._rec_start)
                self._reset()
            return
        if self._close(rec, self._rec_start, number, self._delims):
            self._out.append(b"".join(rec))
            self._out_rows.append(self.counts.records)
            self._out_bytes += self._rec_bytes
        self._reset()

    def _reset(self) -> None:
        self._rec, self._in_quote = [], False

    def _runaway(self, rec: list[bytes], start: int) -> None:
        """Drop the record's first line as ``malformed_row``; queue the rest for re-scanning."""
        self.counts.records += 1
        self.counts.record_lines += 1
        self._drop(self.malformed, start, start)
        # pending is popped from the end: push the rest of the lines in reverse order
        self._pending.extend((line, start + k) for k, line in reversed(list(enumerate(rec[1:], 1))))

    def _close(self, rec: list[bytes], start: int, end: int, delims: int) -> bool:
        """Account for a complete record; True when it is kept."""
        lc = self.counts
        lc.records += 1
        lc.record_lines += len(rec)
        if len(rec) > 1:
            lc.multiline_records += 1
            if len(lc.multiline_examples) < EXAMPLES_KEPT:
                lc.multiline_examples.append((start, end))
        if delims != self.n_delims:
            self._drop(self.malformed, start, end)
            return False
        try:
            for part in rec:
                part.decode("utf-8")
        except UnicodeDecodeError:
            self._drop(self.bad_encoding, start, end)
            return False
        self.kept += 1
        return True

    def _drop(self, into: list[int], start: int, end: int) -> None:
        row = self.counts.records
        into.append(row)
        if len(self.drop_lines) < EXAMPLES_KEPT:
            self.drop_lines[row] = (start, end)

    def finish(self, rows: int) -> None:
        """The tables must hold exactly the records the scanner kept."""
        if rows != self.kept:  # pragma: no cover - a scanner bug, not user input
            raise ShopsimError(
                f"{self.path}: the line scanner kept {self.kept} records but the CSV parser read {rows}; "
                "please report this file"
            )


def _line_end(data: bytes, pos: int, stop: int) -> int:
    """The offset after the physical line starting at ``pos`` (ended by ``\\n``, ``\\r\\n`` or ``\\r``,
    as :meth:`bytes.splitlines` splits), at most ``stop``."""
    j = data.find(b"\n", pos, stop)
    k = data.find(b"\r", pos, j if j >= 0 else stop)
    if k >= 0:
        return k + 2 if k + 1 < stop and data[k + 1] == 10 else k + 1
    return j + 1 if j >= 0 else stop


def _scan(line: bytes, in_quote: bool, delim: int) -> tuple[bool, int]:
    """Scan one line as the CSV parser does; return (still inside quotes, delimiters outside quotes).

    A quote opens a quoted field only at a field's start; inside, ``""`` is a literal quote and
    a single quote closes it (the rest of the field up to the delimiter is plain text)."""
    quote = 34  # '"'
    n = len(line)
    i = 0
    delims = 0
    state = 2 if in_quote else 0  # 0 field start, 1 plain field, 2 quoted
    while i <= n:
        if state == 0:
            if i < n and line[i] == quote:
                state, i = 2, i + 1
                continue
            state = 1
        if state == 1:
            j = line.find(delim, i)
            if j < 0:
                return False, delims
            delims += 1
            i, state = j + 1, 0
            continue
        j = line.find(quote, i)
        if j < 0:
            return True, delims
        if j + 1 < n and line[j + 1] == quote:
            i = j + 2
            continue
        i, state = j + 1, 1
    return False, delims


def _write_tables(dest: Path, tables: Iterator[pa.Table], names: list[str], block_size: int) -> int:
    """Write the scanner's tables to ``dest`` under the staged column names; return the rows.

    Small tables (fast runs between lines the exact scanner took) are gathered into row groups
    of about ``block_size`` bytes."""
    rows = 0
    schema = pa.schema([(c, pa.string()) for c in names] + [("_row", pa.int64())])
    pending: list[pa.Table] = []
    pending_bytes = 0
    # no min/max statistics for the text columns: nothing filters on them, and they cost a
    # fifth of the writing time
    with pq.ParquetWriter(str(dest), schema, write_statistics=["_row"]) as writer:
        for table in tables:
            table = table.rename_columns([*names, "_row"])
            rows += table.num_rows
            pending.append(table)
            pending_bytes += table.nbytes
            if pending_bytes >= block_size:
                writer.write_table(pa.concat_tables(pending))
                pending, pending_bytes = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending))
    return rows


def _stage_parquet(path: Path, dest: Path) -> StagedTable:
    try:
        source = pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShopsimError(f"{path}: cannot be read as Parquet ({_first_msg_line(exc)})") from None
    names = list(source.schema_arrow.names)
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise ShopsimError(f"{path}: column {dup!r} appears twice; rename one")
    sql_names = _staged_names(names)
    schema = pa.schema([(sql_names[c], pa.string()) for c in names] + [("_row", pa.int64())])
    rows = 0
    try:
        with pq.ParquetWriter(str(dest), schema) as writer:
            for batch in source.iter_batches(batch_size=1 << 16):
                # Arrow's text form of timestamps is ISO 8601 with the zone, which the parser reads.
                cols = [batch.column(i).cast(pa.string()) for i in range(batch.num_columns)]
                cols.append(pa.array(np.arange(rows + 1, rows + batch.num_rows + 1, dtype=np.int64)))
                rows += batch.num_rows
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ShopsimError(f"{path}: cannot be read as Parquet ({_first_msg_line(exc)})") from None
    finally:
        source.close()
    return StagedTable(path, dest, names, rows, sql_names=sql_names)


def _first_msg_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = [
    "MAX_FIELD_BYTES",
    "MAX_FIELD_LINES",
    "STAGING_DROP_REASONS",
    "LineCounts",
    "StagedTable",
    "free_name",
    "is_parquet",
    "stage_file",
]
