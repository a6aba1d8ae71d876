"""Staging numbers every kept record by its data row, whatever was dropped before it, and its fast
path (plain lines handed to the parser in bulk) stages exactly what the line-by-line scanner does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopsim.data.staging import _Scanner, _Source, stage_file
from shopsim.errors import ShopsimError


def _stage(tmp: Path, data: bytes, **kwargs: object) -> tuple[dict[str, list[object]], object]:
    src = tmp / "in.csv"
    src.write_bytes(data)
    staged = stage_file(src, tmp / "staged.parquet", **kwargs)  # type: ignore[arg-type]
    return pq.read_table(tmp / "staged.parquet").to_pydict(), staged


def test_rows_after_a_dropped_row_keep_their_own_numbers(tmp_path: Path) -> None:
    # data rows: 1 kept, 2 wrong width, 3 kept, 4 not UTF-8, 5 kept, 6 kept
    data = b"x,y\ng1,a\nBAD\ng3,c\ng4,caf\xe9\ng5,e\ng6,f\n"
    table, staged = _stage(tmp_path, data)
    assert table["x"] == ["g1", "g3", "g5", "g6"]
    assert table["_row"] == [1, 3, 5, 6]
    assert staged.malformed_rows == [2]  # type: ignore[attr-defined]
    assert staged.bad_encoding_rows == [4]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- fast and exact paths
def _scanner_run(src: Path, block_size: int, *, quoted: bool = True) -> _Scanner:
    with _Source(src) as raw:
        header = raw.read(1 << 16).split(b"\n", 1)[0].decode().split(",")
    with _Source(src) as raw:
        scanner = _Scanner(src, raw, header, ",", quoted, True, 100, 1 << 20, block_size=block_size)
        for _ in scanner.tables():
            pass
    return scanner


def test_quote_free_lines_take_the_fast_path_and_the_rest_the_exact_one(tmp_path: Path) -> None:
    plain = b"".join(b"u%d,2024-01-01,i%d,view\n" % (k, k) for k in range(2000))
    src = tmp_path / "in.csv"
    src.write_bytes(b"user_id,timestamp,item_id,event\n" + plain)
    assert _scanner_run(src, 1 << 20).exact_lines == 0
    # one quoted line in the middle: the exact scanner takes it alone (no other special byte
    # follows), the plain lines on either side stay fast
    src.write_bytes(b"user_id,timestamp,item_id,event\n" + plain + b'u,"2024,01",i,view\n' + plain)
    scanner = _scanner_run(src, 1 << 20)
    assert scanner.exact_lines == 1
    assert (scanner.counts.records, scanner.kept, scanner.malformed) == (4001, 4001, [])
    # a quote is plain text when quoting is off
    assert _scanner_run(src, 1 << 20, quoted=False).exact_lines == 0


MIXED = (
    b"x,y\n"
    b"g1,a\n"  # line 2, row 1: fast
    b"BAD\n"  # line 3, row 2: wrong width inside a fast run
    b"\n"  # line 4: blank
    b'"q,1",b\n'  # line 5, row 3: quoted, exact scanner
    b'"multi\nline",c\n'  # lines 6-7, row 4: a multi-line record
    b"g5,e\r\n"  # line 8, row 5: CRLF, exact scanner
    b"g6,caf\xe9\n"  # line 9, row 6: not UTF-8
    + b"".join(b"p%d,v\n" % k for k in range(50))  # lines 10-59, rows 7-56
    + b"g7,f,extra\n"  # line 60, row 57: wrong width
    b"\n\n"  # lines 61-62: blank
    b"g8,h"  # line 63, row 58: no final line end
)


@pytest.mark.parametrize("block_size", [1, 2, 5, 16, 64, 1 << 20])
def test_mixed_blocks_number_rows_and_lines_exactly(tmp_path: Path, block_size: int) -> None:
    table, staged = _stage(tmp_path, MIXED, block_size=block_size)
    assert table["x"][:5] == ["g1", "q,1", "multi\nline", "g5", "p0"]
    assert table["_row"] == [1, 3, 4, 5, *range(7, 57), 58]
    assert (staged.malformed_rows, staged.bad_encoding_rows) == ([2, 57], [6])  # type: ignore[attr-defined]
    assert staged.drop_lines == {2: (3, 3), 6: (9, 9), 57: (60, 60)}  # type: ignore[attr-defined]
    lines = staged.lines  # type: ignore[attr-defined]
    assert (lines.lines_in, lines.header_lines, lines.blank_lines, lines.record_lines) == (63, 1, 3, 59)
    assert (lines.records, lines.multiline_records, lines.multiline_examples) == (58, 1, [(6, 7)])


FIELD = st.lists(
    st.sampled_from(
        [b"a", b"bc", b"", b" ", b'"', b'""', b'"x,y"', b'"p\nq"', b"\r", b"\xe9", b"\xc3\xa9", b"\x00"]
    ),
    max_size=3,
).map(b"".join)
PLAIN = st.sampled_from([b"v", b"w1", b"", b"abc"])
LINE = st.one_of(
    st.lists(PLAIN, min_size=1, max_size=5).map(b",".join),  # mostly well-formed plain lines
    st.lists(PLAIN, min_size=1, max_size=5).map(b",".join),
    st.lists(FIELD, min_size=1, max_size=5).map(b",".join),
)
END = st.sampled_from([b"\n", b"\n", b"\n", b"\n", b"\r\n", b"\r", b""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ncols=st.integers(1, 4),
    body=st.lists(st.tuples(LINE, END), max_size=30),
    quoted=st.booleans(),
    max_field_lines=st.sampled_from([2, 3, 100]),
    max_field_bytes=st.sampled_from([12, 1 << 20]),
    block_size=st.sampled_from([1, 3, 16, 64, 257]),
)
def test_property_fast_and_exact_paths_stage_the_same(
    ncols: int,
    body: list[tuple[bytes, bytes]],
    quoted: bool,
    max_field_lines: int,
    max_field_bytes: int,
    block_size: int,
) -> None:
    data = b",".join(b"c%d" % i for i in range(ncols)) + b"\n" + b"".join(line + end for line, end in body)
    limits = {"quoted": quoted, "max_field_lines": max_field_lines, "max_field_bytes": max_field_bytes}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for options in ({"fast_path": False}, {"block_size": block_size}, {}):
            try:
                table, staged = _stage(Path(tmp), data, **limits, **options)
            except ShopsimError as exc:
                results.append(("error", str(exc)))
                continue
            results.append(
                (
                    table,
                    staged.rows,  # type: ignore[attr-defined]
                    staged.malformed_rows,  # type: ignore[attr-defined]
                    staged.bad_encoding_rows,  # type: ignore[attr-defined]
                    staged.drop_lines,  # type: ignore[attr-defined]
                    staged.lines,  # type: ignore[attr-defined]
                )
            )
    assert results[1] == results[0]
    assert results[2] == results[0]
    if results[0][0] != "error":
        lines = results[0][5]
        assert lines.reconciled
        assert lines.lines_in == len(data.splitlines())
        assert lines.records == results[0][1] + len(results[0][2]) + len(results[0][3])
