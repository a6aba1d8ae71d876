"""Bad input: every case is either a one-line error (exit 2, no traceback) or a counted drop.

The tables below are the documentation of what happens to each kind of bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

CliRunner = Callable[..., tuple[int, str, str]]

HEADER = "user_id,session_id,timestamp,item_id,event,price,position,propensity"
GOOD_ROWS = [
    "u1,s1,2024-01-01 10:00:00,i1,view,10.0,1,0.5",
    "u1,s1,2024-01-01 10:01:00,i2,view,12.5,2,0.25",
    "u1,s1,2024-01-01 10:02:00,i2,purchase,12.5,,",
    "u2,s2,2024-01-02 09:00:00,i1,view,10.0,,",
    "u2,s2,2024-01-02 09:05:00,i3,cart,7.0,,",
    "u3,s3,2024-01-03 12:00:00,i3,view,7.0,,",
]


def write_log(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "log.csv") -> Path:
    path = tmp_path / name
    # a lone surrogate escape stands for a byte that is not UTF-8 (\udce9 is a Latin-1 é)
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode("utf-8", "surrogateescape"))
    return path


def with_row(index: int, row: str) -> list[str]:
    rows = list(GOOD_ROWS)
    rows[index] = row
    return rows


# (case id, rows, extra args, drop reason, (row, column, value) of the example)
DROP_CASES: list[tuple[str, list[str], list[str], str, tuple[int, str | None, str | None]]] = [
    (
        "unparseable timestamp",
        with_row(3, "u2,s2,yesterday,i1,view,10.0,,"),
        [],
        "bad_timestamp",
        (4, "timestamp", "yesterday"),
    ),
    (
        "unparseable price",
        with_row(4, "u2,s2,2024-01-02 09:05:00,i3,cart,cheap,,"),
        [],
        "bad_price",
        (5, "price", "cheap"),
    ),
    (
        "negative price",
        with_row(4, "u2,s2,2024-01-02 09:05:00,i3,cart,-7,,"),
        [],
        "negative_price",
        (5, "price", "-7"),
    ),
    (
        "unknown event type",
        with_row(1, "u1,s1,2024-01-01 10:01:00,i2,wishlist,12.5,2,0.25"),
        [],
        "unknown_event",
        (2, "event", "wishlist"),
    ),
    (
        "missing user id",
        with_row(5, ",s3,2024-01-03 12:00:00,i3,view,7.0,,"),
        [],
        "missing_user_id",
        (6, "user_id", None),
    ),
    (
        "missing item id",
        with_row(5, "u3,s3,2024-01-03 12:00:00,,view,7.0,,"),
        [],
        "missing_item_id",
        (6, "item_id", None),
    ),
    (
        "position below 1",
        with_row(0, "u1,s1,2024-01-01 10:00:00,i1,view,10.0,0,0.5"),
        [],
        "bad_position",
        (1, "position", "0"),
    ),
    (
        "propensity above 1",
        with_row(0, "u1,s1,2024-01-01 10:00:00,i1,view,10.0,1,1.5"),
        [],
        "bad_propensity",
        (1, "propensity", "1.5"),
    ),
    ("duplicate row", [*GOOD_ROWS, GOOD_ROWS[2]], [], "duplicate_row", (7, None, None)),
    *(
        (
            f"non-finite price {v}",
            with_row(4, f"u2,s2,2024-01-02 09:05:00,i3,cart,{v},,"),
            [],
            "bad_price",
            (5, "price", v),
        )
        for v in ("NaN", "nan", "inf", "-inf", "Infinity")
    ),
    *(
        (
            f"non-finite propensity {v}",
            with_row(0, f"u1,s1,2024-01-01 10:00:00,i1,view,10.0,1,{v}"),
            [],
            "bad_propensity",
            (1, "propensity", v),
        )
        for v in ("nan", "inf", "-Infinity")
    ),
    *(
        (
            f"non-integer position {v}",
            with_row(0, f"u1,s1,2024-01-01 10:00:00,i1,view,10.0,{v},0.5"),
            [],
            "bad_position",
            (1, "position", v),
        )
        for v in ("0.6", "1.5", "nan", "inf")
    ),
    (
        "row not UTF-8 (the rest kept)",
        with_row(5, "u3,s3,2024-01-03 12:00:00,i3,vi\udce9w,7.0,,"),
        [],
        "bad_encoding",
        (6, None, None),
    ),
    (
        "unbalanced quote (the rest kept)",
        with_row(1, 'u1,s1,2024-01-01 10:01:00,i2,"view,12.5,2,0.25'),
        [],
        "malformed_row",
        (2, None, None),
    ),
]


@pytest.mark.parametrize(
    ("rows", "args", "reason", "example"),
    [c[1:] for c in DROP_CASES],
    ids=[c[0] for c in DROP_CASES],
)
def test_bad_rows_are_dropped_and_counted(
    tmp_path: Path, cli: CliRunner, rows: list[str], args: list[str], reason: str, example: tuple
) -> None:
    src = write_log(tmp_path, rows)
    out = tmp_path / "out"
    code, stdout, stderr = cli("data", "prepare", src, "--format", "events", "--out", out, *args)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["dropped"] == {reason: 1}
    assert report["rows_in"] == len(rows) == report["rows_out"] + 1
    ex = report["examples"][reason]
    assert ex["row"] == example[0]
    if example[1] is not None:
        assert (ex["column"], ex["value"]) == example[1:]
    assert f"{reason} 1" in stdout


def test_malformed_line_is_counted_with_its_row(tmp_path: Path, cli: CliRunner) -> None:
    rows = with_row(2, "u1,s1,2024-01-01 10:02:00,i2")  # 4 fields instead of 8
    src = write_log(tmp_path, rows)
    code, _, stderr = cli("data", "prepare", src, "--format", "events", "--out", tmp_path / "o")
    assert code == 0, stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["dropped"] == {"malformed_row": 1}
    assert report["examples"]["malformed_row"]["row"] == 3
    assert report["rows_in"] == 6
    assert report["rows_out"] == 5


def test_malformed_rows_do_not_shift_later_row_numbers(tmp_path: Path, cli: CliRunner) -> None:
    rows = list(GOOD_ROWS)
    rows[1] = "u1,s1,broken"
    rows[4] = "u2,s2,2024-01-02 09:05:00,i3,cart,cheap,,"
    src = write_log(tmp_path, rows)
    cli("data", "prepare", src, "--format", "events", "--out", tmp_path / "o")
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["examples"]["bad_price"]["row"] == 5


def test_unknown_item_dropped_or_kept(tmp_path: Path, cli: CliRunner) -> None:
    src = write_log(tmp_path, GOOD_ROWS)
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Red mug\ni2,Blue mug\n")  # i3 missing
    code, _, err = cli(
        "data",
        "prepare",
        src,
        "--format",
        "events",
        "--items",
        items,
        "--text-cols",
        "title",
        "--out",
        tmp_path / "drop",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "drop" / "report.json").read_text())
    assert report["dropped"] == {"unknown_item": 2}
    assert report["examples"]["unknown_item"] == {
        "file": str(src),
        "row": 5,
        "column": "item_id",
        "value": "i3",
    }
    code, _, err = cli(
        "data",
        "prepare",
        src,
        "--format",
        "events",
        "--items",
        items,
        "--missing-items",
        "keep",
        "--out",
        tmp_path / "keep",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "keep" / "report.json").read_text())
    assert report["dropped"] == {}
    assert report["items"]["added_without_metadata"] == 1


def test_duplicate_item_rows_counted(tmp_path: Path, cli: CliRunner) -> None:
    src = write_log(tmp_path, GOOD_ROWS)
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Red mug\ni2,Blue mug\ni3,Plate\ni1,Red mug again\n")
    cli(
        "data",
        "prepare",
        src,
        "--format",
        "events",
        "--items",
        items,
        "--text-cols",
        "title",
        "--out",
        tmp_path / "o",
    )
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["items"]["dropped"] == {"duplicate_item_id": 1}
    assert report["items"]["items_out"] == 3


# (case id, how to build the input, extra args, exact message after "shopsim: error: ")
def _empty(tmp: Path) -> Path:
    (tmp / "empty.csv").write_text("")
    return tmp / "empty.csv"


def _header_only(tmp: Path) -> Path:
    return write_log(tmp, [])


def _no_item_col(tmp: Path) -> Path:
    return write_log(tmp, [r.replace(",i", ",x") for r in GOOD_ROWS], header=HEADER.replace("item_id", "sku"))


def _bad_times(tmp: Path) -> Path:
    return write_log(tmp, [r.replace("2024-01-0", "day ") for r in GOOD_ROWS])


def _bad_events(tmp: Path) -> Path:
    return write_log(
        tmp,
        [
            r.replace(",view,", ",seen,").replace(",cart,", ",seen,").replace(",purchase,", ",seen,")
            for r in GOOD_ROWS
        ],
    )


def _bad_prices(tmp: Path) -> Path:
    rows = [",".join(f if i != 5 else "n/a" for i, f in enumerate(r.split(","))) for r in GOOD_ROWS]
    return write_log(tmp, rows)


def _no_users(tmp: Path) -> Path:
    return write_log(tmp, ["," + r.split(",", 1)[1] for r in GOOD_ROWS])


def _good(tmp: Path) -> Path:
    return write_log(tmp, GOOD_ROWS)


ERROR_CASES: list[tuple[str, Callable[[Path], Path | str], list[str], str]] = [
    (
        "missing file",
        lambda t: t / "nope.csv",
        ["--format", "events"],
        "{src}: no such file; check the path",
    ),
    (
        "empty file",
        _empty,
        ["--format", "events"],
        "{src}: the file is empty; expected a header line and data rows",
    ),
    (
        "header only",
        _header_only,
        ["--format", "events"],
        "{src}: no data rows (only a header?); nothing to prepare",
    ),
    (
        "required column missing after mapping",
        _no_item_col,
        ["--format", "events"],
        "{src}: required column(s) item_id not found (found: user_id, session_id, timestamp, sku, "
        "event, price, position, propensity); name them with --map canonical=source, "
        "e.g. --map item_id=<your column>",
    ),
    (
        "map names an absent column",
        _good,
        ["--format", "events", "--map", "item_id=sku"],
        "{src}: --map item_id=sku: no column 'sku' (found: user_id, session_id, timestamp, item_id, "
        "event, price, position, propensity)",
    ),
    (
        "map without =",
        _good,
        ["--format", "events", "--map", "item_id"],
        "--map 'item_id': expected canonical=source, e.g. --map item_id=sku",
    ),
    (
        "map to unknown canonical",
        _good,
        ["--format", "events", "--map", "colour=c"],
        "--map colour=…: 'colour' is not a canonical column; use one of: session_id, user_id, "
        "timestamp, item_id, event, price, position, slate_id, propensity, quantity, category",
    ),
    (
        "no timestamp parses",
        _bad_times,
        ["--format", "events"],
        "{src}: column 'timestamp': no row has a usable timestamp (row 1: 'day 1 10:00:00'); "
        "pass --timestamp-format (strptime, e.g. %d/%m/%Y %H:%M) or map the right column",
    ),
    (
        "no event type known",
        _bad_events,
        ["--format", "events"],
        "{src}: column 'event': no row has a usable event type (row 1: 'seen'); values found: seen; "
        "use event names impression, view, click, cart, purchase (or synonyms), "
        "or --default-event EVENT",
    ),
    (
        "no price parses",
        _bad_prices,
        ["--format", "events"],
        "{src}: column 'price': no row has a usable price (row 1: 'n/a'); map a numeric price column or none",
    ),
    (
        "every row dropped",
        _no_users,
        ["--format", "events"],
        "{src}: no usable rows — all 6 dropped (missing_user_id 6) (first: {src} row 1, column "
        "'user_id' = None); fix the column or pass the right --format/--map",
    ),
    (
        "bad default event",
        _good,
        ["--format", "events", "--default-event", "like"],
        "--default-event 'like' is not an event type; use one of: impression, view, click, cart, purchase",
    ),
    (
        "bad split",
        _good,
        ["--format", "events", "--split", "0.5,0.1,0.1"],
        "argument --split: '0.5,0.1,0.1': expected three non-negative fractions summing to 1, "
        "e.g. 0.8,0.1,0.1 (see `shopsim data prepare --help`)",
    ),
    (
        "mapping flags on a known format",
        _good,
        ["--format", "rees46", "--map", "item_id=x"],
        "--map only apply to --format events; format 'rees46' knows its columns",
    ),
    (
        "wrong file for the format",
        _good,
        ["--format", "rees46"],
        "{src}: missing column(s) 'event_time', 'event_type', 'product_id', 'user_session' "
        "(found: user_id, session_id, timestamp, item_id, event, price, position, propensity); "
        "is this a REES46 events file?",
    ),
    (
        "hm without articles",
        _good,
        ["--format", "hm"],
        "{dir}/articles.csv: no such file; H&M needs articles.csv beside the transactions or --items PATH",
    ),
]


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, cli: CliRunner, make: Callable[[Path], Path], args: list[str], message: str
) -> None:
    src = make(tmp_path)
    code, _stdout, stderr = cli("data", "prepare", src, *args, "--out", tmp_path / "out")
    assert code == 2
    expected = "shopsim: error: " + message.format(src=src, dir=tmp_path)
    assert stderr.strip() == expected
    assert "Traceback" not in stderr


def test_unknown_format_is_an_argparse_line(tmp_path: Path, cli: CliRunner) -> None:
    code, _, stderr = cli("data", "prepare", tmp_path, "--format", "csv", "--out", tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert "argument --format: invalid choice: 'csv'" in lines[0]


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsim.experiments.cli",
            "data",
            "inspect",
            str(tmp_path / "missing.csv"),
            "--format",
            "events",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"shopsim: error: {tmp_path / 'missing.csv'}: no such file; check the path\n"


def test_malformed_lines_in_every_event_file_are_counted(tmp_path: Path) -> None:
    import shutil

    from shopsim.data import PrepareOptions, prepare
    from shopsim.tests.helpers import FIXTURES

    shutil.copytree(FIXTURES / "obd", tmp_path / "obd")
    random_csv = tmp_path / "obd" / "random" / "all.csv"  # the second policy file read
    with random_csv.open("a") as fh:
        fh.write("9999,2019-11-24 00:00:00+00:00,3\n")
    r = prepare(tmp_path / "obd", PrepareOptions(format="obd"), None)
    assert r.dropped == {"malformed_row": 1}
    assert r.examples["malformed_row"]["file"] == str(random_csv)
    assert r.rows_in == r.rows_out + 1
