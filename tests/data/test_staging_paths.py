"""Staging numbers every kept record by its data row, whatever was dropped before it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from shopsim.data.staging import stage_file


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
