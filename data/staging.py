"""Stream a source file (CSV, TSV, gzip'd or not, or Parquet) into a staging Parquet file.

Every column is read as text (nothing is guessed, so nothing is mangled) and a ``_row`` column
records the 1-based data row in the source file (header not counted), so later errors and
drop examples can point at the exact row. Memory stays bounded: the file is read and written
in blocks, never whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopsim.errors import ShopsimError

BLOCK_SIZE = 8 << 20


@dataclass
class StagedTable:
    """A source file copied to Parquet with all columns as strings plus ``_row``."""

    source: Path
    parquet: Path
    columns: list[str]
    rows: int
    malformed_rows: list[int] = field(default_factory=list)
    """Data rows (1-based) whose field count did not match the header; skipped and counted."""


def is_parquet(path: Path) -> bool:
    """True when ``path`` names a Parquet file (by extension)."""
    return path.suffix.lower() in {".parquet", ".pq"}


def read_header(path: Path, delimiter: str) -> list[str]:
    """Return the column names in the first line of a (possibly compressed) text file."""
    with pa.input_stream(str(path), compression="detect") as raw:
        first = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace").readline()
    if not first.strip():
        raise ShopsimError(f"{path}: the file is empty; expected a header line and data rows")
    return next(csv.reader([first], delimiter=delimiter))


def stage_file(
    path: Path,
    dest: Path,
    *,
    delimiter: str = ",",
    names: list[str] | None = None,
    quoted: bool = True,
) -> StagedTable:
    """Copy ``path`` to ``dest`` (Parquet) with every column as text and a ``_row`` column.

    :param path: source file: ``.csv``/``.tsv`` (optionally ``.gz``/``.bz2``/``.zst``) or
        ``.parquet``.
    :param dest: the staging Parquet file to write.
    :param delimiter: field separator of a text file.
    :param names: column names for a file without a header line (MIND's TSVs).
    :param quoted: whether ``"`` quotes fields (False for MIND, whose text has bare quotes).
    :return: what was staged.
    :raises ShopsimError: if the file is missing, empty or unreadable.
    """
    _check_source(path)
    if is_parquet(path):
        return _stage_parquet(path, dest)
    header = names if names is not None else read_header(path, delimiter)
    if len(set(header)) != len(header):
        dup = next(c for c in header if header.count(c) > 1)
        raise ShopsimError(f"{path}: column {dup!r} appears twice in the header; rename one")
    # pyarrow rejects an empty column name; give it a stable placeholder (pandas index columns).
    colnames = [c if c else f"_unnamed_{i}" for i, c in enumerate(header)]
    malformed: list[int] = []
    offset = 0 if names is not None else 1

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # row.number is the 1-based physical line; count it and skip the row.
        malformed.append((row.number or 0) - offset)
        return "skip"

    reader = _open_csv(path, colnames, offset, delimiter, quoted, on_invalid)
    rows = _write_blocks(path, dest, reader, colnames, malformed)
    return StagedTable(path, dest, colnames, rows, sorted(malformed))


def _check_source(path: Path) -> None:
    """A source must be an existing, non-empty file."""
    if not path.exists():
        raise ShopsimError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ShopsimError(f"{path}: is a directory; expected a file")
    if path.stat().st_size == 0:
        raise ShopsimError(f"{path}: the file is empty; expected a header line and data rows")


def _open_csv(
    path: Path,
    colnames: list[str],
    offset: int,
    delimiter: str,
    quoted: bool,
    on_invalid: Callable[[pacsv.InvalidRow], str],
) -> pacsv.CSVStreamingReader:
    """A block-wise reader of ``path`` with every column as text; bad lines go to ``on_invalid``."""
    try:
        return pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(
                column_names=colnames,
                skip_rows=offset,
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
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ShopsimError(f"{path}: cannot be read as delimited text ({_first_line(exc)})") from None


def _write_blocks(
    path: Path, dest: Path, reader: pacsv.CSVStreamingReader, colnames: list[str], malformed: list[int]
) -> int:
    """Copy every block of ``reader`` to ``dest`` with its ``_row`` numbers; return the rows read.

    ``malformed`` fills up as the reader skips bad lines, so each block's row numbers account
    for the lines skipped so far.
    """
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise ShopsimError(f"{path}: cannot be parsed ({_first_line(exc)})") from None
            seen_valid = np.arange(rows + 1, rows + batch.num_rows + 1, dtype=np.int64)
            rows += batch.num_rows
            table = pa.Table.from_batches([batch]).append_column(
                "_row", pa.array(_true_rows(seen_valid, malformed))
            )
            if writer is None:
                writer = pq.ParquetWriter(str(dest), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        schema = pa.schema([(c, pa.string()) for c in colnames] + [("_row", pa.int64())])
        pq.write_table(schema.empty_table(), str(dest))
    return rows


def _true_rows(valid_ordinals: np.ndarray, skipped: list[int]) -> np.ndarray:
    """Map the k-th well-formed row to its data-row number, given the skipped rows."""
    if not skipped:
        return valid_ordinals
    s = np.sort(np.asarray(skipped, dtype=np.int64))
    # t[j] = number of well-formed rows before the j-th skipped row.
    t = s - np.arange(len(s))
    return valid_ordinals + np.searchsorted(t, valid_ordinals - 1, side="right")


def _stage_parquet(path: Path, dest: Path) -> StagedTable:
    try:
        source = pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShopsimError(f"{path}: cannot be read as Parquet ({_first_line(exc)})") from None
    names = list(source.schema_arrow.names)
    schema = pa.schema([(c, pa.string()) for c in names] + [("_row", pa.int64())])
    rows = 0
    with pq.ParquetWriter(str(dest), schema) as writer:
        for batch in source.iter_batches(batch_size=1 << 16):
            # Arrow's text form of timestamps is ISO 8601 with the zone, which the parser reads.
            cols = [batch.column(i).cast(pa.string()) for i in range(batch.num_columns)]
            cols.append(pa.array(np.arange(rows + 1, rows + batch.num_rows + 1, dtype=np.int64)))
            rows += batch.num_rows
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    return StagedTable(path, dest, names, rows)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
