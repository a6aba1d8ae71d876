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

Records spanning several lines are counted (``multiline_records``) and the first few are listed
with their line range. Unreadable files (permission denied, truncated or corrupt gzip) are one
:class:`~shopsim.errors.ShopsimError` line naming the file.

**Column names.** A source column keeps its name in the staged table unless that name is one
of the staging columns (:data:`STAGING_COLUMNS`: ``_row``, and ``_src`` added by the views);
such a column is staged as ``src_<name>`` (prefix repeated until the name is free) — see
:func:`free_name` — so no source column can replace the row numbers or the file name.
"""

from __future__ import annotations

import contextlib
import io
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
            path, raw, len(colnames), delimiter, quoted, names is None, max_field_lines, max_field_bytes
        )
        reader = _open_csv(path, _RecordStream(scanner.records()), colnames, delimiter, quoted, scanner)
        rows = _write_blocks(path, dest, reader, colnames, sql_names, scanner)
        del reader
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
    accounts for every physical line (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        raw: _Source,
        n_cols: int,
        delimiter: str,
        quoted: bool,
        has_header: bool,
        max_lines: int,
        max_bytes: int,
    ) -> None:
        self.path = path
        self.raw = raw
        self.n_delims = n_cols - 1
        self.delim = delimiter.encode()
        self.quoted = quoted
        self.has_header = has_header
        self.max_lines = max(1, int(max_lines))
        self.max_bytes = max(1, int(max_bytes))
        self.counts = LineCounts()
        self.malformed: list[int] = []
        self.bad_encoding: list[int] = []
        self.drop_lines: dict[int, tuple[int, int]] = {}
        self.kept = 0
        self._pending: list[tuple[bytes, int]] = []

    # ------------------------------------------------------------------ lines
    def _lines(self) -> Iterator[bytes]:
        """Physical lines with their terminators, exactly as in the file."""
        carry = b""
        first = True
        while True:
            block = self.raw.read(BLOCK_SIZE)
            if first:
                _refuse_binary(self.path, block[: 1 << 16])
            first = False
            if not block:
                if carry:
                    yield carry
                return
            data = carry + block
            # keep a trailing '\r' back: it may be the first half of '\r\n'
            cut = len(data) - 1 if data.endswith(b"\r") else len(data)
            parts = data[:cut].splitlines(keepends=True)
            carry = data[cut:]
            if parts and not parts[-1].endswith((b"\n", b"\r")):
                carry = parts.pop() + carry
            yield from parts

    # ------------------------------------------------------------------ records
    def records(self) -> Iterator[bytes]:
        """The bytes of the kept records (with their line ends), in file order."""
        lc = self.counts
        lines = self._lines()
        if self.has_header:
            next(lines, None)
            lc.lines_in = lc.header_lines = 1
        # lines to scan again after a runaway record, as (line, number), the next one last
        pending = self._pending
        rec: list[bytes] = []
        rec_start = rec_bytes = delims = 0
        in_quote = False
        out: list[bytes] = []
        out_bytes = 0
        while True:
            if pending:
                line, number = pending.pop()
            else:
                nxt = next(lines, None)
                if nxt is None:
                    if not rec:
                        break
                    # the end of the file inside a quoted field: a runaway too
                    self._runaway(rec, rec_start)
                    rec, in_quote = [], False
                    continue
                lc.lines_in += 1
                line, number = nxt, lc.lines_in
            content = line.rstrip(b"\r\n")
            if not rec:
                if not content:
                    lc.blank_lines += 1
                    continue
                rec_start, rec_bytes, delims = number, 0, 0
            rec.append(line)
            rec_bytes += len(line)
            if self.quoted and (in_quote or b'"' in content):
                in_quote, d = _scan(content, in_quote, self.delim[0])
            else:
                d = content.count(self.delim)
            delims += d
            if in_quote:
                if len(rec) >= self.max_lines or rec_bytes > self.max_bytes:
                    self._runaway(rec, rec_start)
                    rec, in_quote = [], False
                continue
            if self._close(rec, rec_start, number, delims):
                out.append(b"".join(rec))
                out_bytes += rec_bytes
                if out_bytes >= 1 << 20:
                    yield b"".join(out)
                    out, out_bytes = [], 0
            rec = []
        if out:
            yield b"".join(out)

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

    @property
    def skipped(self) -> list[int]:
        """Data-row numbers of every record dropped so far (for the row numbering)."""
        return sorted(self.malformed + self.bad_encoding)

    def finish(self, rows: int) -> None:
        """The parser must have read exactly the records the scanner kept."""
        if rows != self.kept:  # pragma: no cover - a scanner bug, not user input
            raise ShopsimError(
                f"{self.path}: the line scanner kept {self.kept} records but the CSV parser read {rows}; "
                "please report this file"
            )


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


class _RecordStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (what pyarrow's reader reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _open_csv(
    path: Path,
    stream: _RecordStream,
    colnames: list[str],
    delimiter: str,
    quoted: bool,
    scanner: _Scanner,
) -> pacsv.CSVStreamingReader:
    """A block-wise reader of the scanner's kept records with every column as text."""

    def on_invalid(row: pacsv.InvalidRow) -> str:  # pragma: no cover - the scanner drops these first
        raise ShopsimError(
            f"{path}: the CSV parser rejected a record the line scanner accepted ({row.text[:80]!r}); "
            "please report this file"
        )

    try:
        return pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=colnames,
                block_size=BLOCK_SIZE,
                use_threads=False,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoted else False,
                invalid_row_handler=on_invalid,
                newlines_in_values=quoted,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(colnames, pa.string()),
                # Only an empty field is missing: pyarrow's default list would also turn
                # text such as "NA", "null" or "n/a" into missing values silently.
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except StopIteration:  # pragma: no cover
        raise ShopsimError(f"{path}: cannot be read as delimited text") from None
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return _EmptyReader()
        raise ShopsimError(f"{path}: cannot be read as delimited text ({_first_msg_line(exc)})") from None


class _EmptyReader:
    """The reader of a file whose records were all dropped (or that has none)."""

    def read_next_batch(self) -> pa.RecordBatch:
        raise StopIteration


def _write_blocks(
    path: Path,
    dest: Path,
    reader: pacsv.CSVStreamingReader,
    colnames: list[str],
    sql_names: dict[str, str],
    scanner: _Scanner,
) -> int:
    """Copy every block of ``reader`` to ``dest`` with its ``_row`` numbers; return the rows read.

    The scanner's dropped rows fill up as the reader pulls records, so each block's row numbers
    account for the rows dropped before it."""
    rows = 0
    names = [sql_names[c] for c in colnames]
    writer: pq.ParquetWriter | None = None
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise ShopsimError(f"{path}: cannot be parsed ({_first_msg_line(exc)})") from None
            seen_valid = np.arange(rows + 1, rows + batch.num_rows + 1, dtype=np.int64)
            rows += batch.num_rows
            table = pa.Table.from_arrays(
                [*batch.columns, pa.array(_true_rows(seen_valid, scanner.skipped))], names=[*names, "_row"]
            )
            if writer is None:
                writer = pq.ParquetWriter(str(dest), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        schema = pa.schema([(c, pa.string()) for c in names] + [("_row", pa.int64())])
        pq.write_table(schema.empty_table(), str(dest))
    return rows


def _true_rows(valid_ordinals: np.ndarray, skipped: list[int]) -> np.ndarray:
    """Map the k-th well-formed row to its data-row number, given the skipped rows."""
    if not skipped:
        return valid_ordinals
    s = np.sort(np.asarray(skipped, dtype=np.int64))
    # t[j] - 1 = well-formed rows before the j-th skipped row, which precedes the v-th
    # well-formed row when t[j] <= v.
    t = s - np.arange(len(s))
    return valid_ordinals + np.searchsorted(t, valid_ordinals, side="right")


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
