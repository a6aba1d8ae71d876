"""No line or row vanishes while a source is staged and prepared, and no source column, whatever
its name, changes how the pipeline works (issue 14, classes 1 and 2; SQL literals of class 3)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shopsim.data import PrepareOptions, prepare, sample_path
from shopsim.data.formats import parse_column_map
from shopsim.data.pipeline import _connect
from shopsim.errors import ShopsimError


def _rees46_lines() -> list[str]:
    return gzip.decompress(sample_path("rees46").read_bytes()).decode().split("\n")


def test_unbalanced_quote_costs_one_row_not_the_rest_of_the_file(tmp_path: Path) -> None:
    lines = _rees46_lines()
    lines[5] = lines[5].replace(",view,", ',"view,')  # data row 5 opens a quote it never closes
    src = tmp_path / "events.csv"
    src.write_text("\n".join(lines))
    r = prepare(src, PrepareOptions(format="rees46"), None)
    assert r.rows_in == 17_434
    assert r.dropped == {"duplicate_row": 5, "malformed_row": 1}
    assert r.examples["malformed_row"] == {"file": str(src), "row": 5, "lines": [6, 6]}
    (f,) = r.lines["files"]
    assert (f["lines_in"], f["header_lines"], f["blank_lines"], f["record_lines"]) == (17_435, 1, 0, 17_434)
    assert f["records"] == 17_434
    assert f["records_kept"] == 17_433
    assert r.lines["reconciled"]


def _csv(tmp: Path, body: bytes, name: str = "log.csv") -> Path:
    path = tmp / name
    path.write_bytes(b"user_id,timestamp,item_id,event,note\n" + body)
    return path


def test_multiline_quoted_field_is_kept_and_flagged_with_its_lines(tmp_path: Path) -> None:
    body = b'u1,2024-01-01 10:00:00,i1,view,"one\ntwo\nthree"\nu1,2024-01-01 10:01:00,i2,view,x\n'
    out = tmp_path / "o"
    r = prepare(_csv(tmp_path, body), PrepareOptions(format="events"), out)
    assert r.dropped == {}
    (f,) = r.lines["files"]
    assert f["multiline_records"] == 1
    assert f["multiline_examples"] == [[2, 4]]
    assert (f["lines_in"], f["record_lines"], f["records"]) == (5, 4, 2)
    ev = pd.read_parquet(out / "events.parquet")
    assert ev.loc[ev.item_id == "i1", "note"].item() == "one\ntwo\nthree"


def test_field_line_limit_is_an_option(tmp_path: Path) -> None:
    body = b'u1,2024-01-01 10:00:00,i1,view,"one\ntwo\nthree"\nu1,2024-01-01 10:01:00,i2,view,x\n'
    r = prepare(_csv(tmp_path, body), PrepareOptions(format="events", max_field_lines=2), None)
    # the 3-line record is a runaway: its first line is dropped, the next lines are re-read
    # ('two' and 'three",…' have the wrong field count), the good row after them is kept
    assert r.dropped == {"malformed_row": 3}
    assert (r.rows_out, r.rows_in) == (1, 4)
    assert r.lines["reconciled"]


def test_blank_lines_and_crlf_are_accounted_for(tmp_path: Path) -> None:
    body = b"u1,2024-01-01 10:00:00,i1,view,a\r\n\r\n\nu1,2024-01-01 10:01:00,i2,view,b\r\n"
    r = prepare(_csv(tmp_path, body), PrepareOptions(format="events"), None)
    (f,) = r.lines["files"]
    assert (f["lines_in"], f["blank_lines"], f["records"], r.rows_out) == (5, 2, 2, 2)


def test_rows_that_are_not_utf8_are_dropped_as_bad_encoding(tmp_path: Path) -> None:
    body = (
        b"u1,2024-01-01 10:00:00,i1,view,caf\xe9\n"  # Latin-1 é
        b"u1,2024-01-01 10:01:00,i2,view,caf\xc3\xa9\n"  # UTF-8 é
        b"u2,2024-01-01 10:02:00,i3,view,\xff\xfe\n"
    )
    out = tmp_path / "o"
    r = prepare(_csv(tmp_path, body), PrepareOptions(format="events"), out)
    assert r.dropped == {"bad_encoding": 2}
    assert r.examples["bad_encoding"] == {"file": str(tmp_path / "log.csv"), "row": 1, "lines": [2, 2]}
    assert pd.read_parquet(out / "events.parquet")["note"].tolist() == ["café"]


def test_every_row_badly_encoded_says_how_to_re_encode(tmp_path: Path) -> None:
    src = _csv(tmp_path, b"u1,2024-01-01 10:00:00,i1,view,caf\xe9\n")
    with pytest.raises(ShopsimError, match="bad_encoding 1") as exc:
        prepare(src, PrepareOptions(format="events"), None)
    assert "\n" not in str(exc.value)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopsim.experiments.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "image.csv",
            bytes(range(256)) * 40,
            "{src}: binary data, not delimited text (NUL byte at offset 0); pass a CSV/TSV "
            "(compressed files need a .gz/.bz2/.zst extension) or a Parquet file",
        ),
        (
            "latin1.csv",
            b"user_id,timestamp,item_id,event,caf\xe9\nu1,2024-01-01,i1,view,x\n",
            "{src}: line 1 (the header) is not UTF-8 text (byte 35); re-encode the file as UTF-8, "
            "e.g. iconv -f latin1 -t utf-8 IN > OUT",
        ),
        (
            "cut.csv.gz",
            gzip.compress(b"user_id,timestamp,item_id,event\n" + b"u1,2024-01-01,i1,view\n" * 5000)[:300],
            "{src}: cannot be read (Truncated compressed stream); is the file complete "
            "(a truncated or corrupt download)?",
        ),
        (
            "garbage.csv.gz",
            b"\x1f\x8b\x08\x00" + b"not really gzip" * 20,
            "{src}: cannot be read",
        ),
    ],
    ids=["binary", "latin-1 header", "truncated gzip", "corrupt gzip"],
)
def test_unreadable_source_is_exactly_one_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    proc = _run_cli(
        "data", "prepare", str(src), "--format", "events", "--out", str(tmp_path / "o"), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # no "Exception ignored in …"
    assert proc.stderr.startswith("shopsim: error: " + message.format(src=src))


QUANTITY_HEADER = b"user_id,timestamp,item_id,event,quantity,position\n"


@pytest.mark.parametrize(
    ("quantity", "position", "reason", "kept"),
    [
        ("2.7", "1", "bad_quantity", None),
        ("nan", "1", "bad_quantity", None),
        ("inf", "1", "bad_quantity", None),
        ("-2", "1", "negative_quantity", None),  # a return/cancellation line, not a purchase
        ("-1.0", "1", "negative_quantity", None),
        ("3.0", "1", None, (3, 1)),
        ("1e3", "2", None, (1000, 2)),
        ("2", "0.6", "bad_position", None),
        ("2", "-inf", "bad_position", None),
        ("2", "NaN", "bad_position", None),
        ("2", "2.0", None, (2, 2)),
    ],
)
def test_quantity_and_position_are_whole_numbers_or_dropped(
    tmp_path: Path, quantity: str, position: str, reason: str | None, kept: tuple[int, int] | None
) -> None:
    src = tmp_path / "log.csv"
    src.write_bytes(
        QUANTITY_HEADER
        + b"u1,2024-01-01 10:00:00,i1,purchase,1,1\n"
        + f"u1,2024-01-01 10:01:00,i2,purchase,{quantity},{position}\n".encode()
    )
    out = tmp_path / "o"
    r = prepare(src, PrepareOptions(format="events"), out)
    if reason:
        assert r.dropped == {reason: 1}
        assert r.examples[reason]["row"] == 2
    else:
        assert r.dropped == {}
        ev = pd.read_parquet(out / "events.parquet").set_index("item_id")
        assert (ev.loc["i2", "quantity"], ev.loc["i2", "position"]) == kept


# --------------------------------------------------------------------------- column namespaces
COLLIDING = ["reason", "_reason", "event", "_row", "_sub", "_src", "split", "start", "first_row", "ts",
             "price", "price_raw", "_dup", "_new", "extra:brand", "src_split"]  # fmt: skip


def test_no_source_column_changes_the_pipeline(tmp_path: Path) -> None:
    header = ["user_id", "timestamp", "item_id", "action", "cost", *COLLIDING]
    rows = [
        ["u1", "2024-01-01 10:00:00", "i1", "view", "10", *[f"{c}-1" for c in COLLIDING]],
        ["u1", "2024-01-01 10:01:00", "i2", "cart", "12", *[f"{c}-2" for c in COLLIDING]],
        ["u2", "2024-01-02 10:00:00", "i1", "purchase", "10", *[f"{c}-3" for c in COLLIDING]],
    ]
    src = tmp_path / "log.csv"
    src.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    out = tmp_path / "o"
    r = prepare(src, PrepareOptions(format="events", column_map={"event": "action", "price": "cost"}), out)
    assert r.dropped == {}
    assert r.rows_out == 3
    ev = pd.read_parquet(out / "events.parquet").sort_values("item_id", kind="stable")
    assert ev["event"].tolist() == ["view", "purchase", "cart"]  # --map event=action wins
    assert ev["price"].tolist() == [10.0, 10.0, 12.0]
    assert set(ev["split"]) <= {"train", "valid", "test"}
    # each extra column comes out unchanged: under its name, or src_<name> for canonical names
    written = {
        "event": "src_event",
        "split": "src_split",
        "price": "src_price",
        "src_split": "src_src_split",
    }
    for c in COLLIDING:
        col = written.get(c, c)
        assert sorted(ev[col]) == sorted(f"{c}-{i}" for i in (1, 2, 3)), c


def test_duplicate_rows_ignore_a_source_row_column(tmp_path: Path) -> None:
    # a source column "_row" is data, not the row number: the report's rows stay the file's rows
    src = tmp_path / "log.csv"
    src.write_text(
        "user_id,timestamp,item_id,event,_row\n"
        "u1,2024-01-01 10:00:00,i1,view,99\n"
        "u1,2024-01-01 10:01:00,i2,wishlist,98\n"
    )
    r = prepare(src, PrepareOptions(format="events"), None)
    assert r.examples["unknown_event"]["row"] == 2


def test_two_map_pairs_for_one_canonical_column_are_an_error() -> None:
    msg = "--map event=a and --map event=b: two source columns for canonical column 'event'; keep one"
    with pytest.raises(ShopsimError) as exc:
        PrepareOptions(format="events", column_map=["event=a", "event=b"])  # type: ignore[arg-type]
    assert str(exc.value) == msg
    with pytest.raises(ShopsimError, match="two source columns"):
        parse_column_map([("event", "a"), ("event", "b")])
    # the same pair twice, or one source feeding two canonical columns, is fine
    assert parse_column_map(["event=a", "event=a", "slate_id=imp", "session_id=imp"]) == {
        "event": "a",
        "slate_id": "imp",
        "session_id": "imp",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": (float("nan"), 0.5, 0.5)}, "--split nan,0.5,0.5 must be three non-negative fractions"),
        ({"split": (float("inf"), -float("inf"), 0.0)}, "--split inf,-inf,0.0 must be three"),
        ({"session_gap_minutes": float("inf")}, "--session-gap inf must be a positive, finite number"),
        ({"session_gap_minutes": float("nan")}, "--session-gap nan must be a positive, finite number"),
        ({"session_gap_minutes": -5.0}, "--session-gap -5.0 must be a positive, finite number"),
        ({"max_field_lines": 0}, "max_field_lines 0 must be a positive whole number"),
    ],
)
def test_non_finite_options_are_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ShopsimError) as exc:
        PrepareOptions(format="events", **kwargs)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_mode_ties_go_to_the_first_value_seen(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    src.write_text(
        "user_id,timestamp,item_id,event,category\n"
        "u1,2024-01-01 10:00:00,i1,view,shoes\n"
        "u1,2024-01-01 10:01:00,i1,view,bags\n"
        "u2,2024-01-01 10:02:00,i1,view,bags\n"
        "u2,2024-01-01 10:03:00,i1,view,shoes\n"
    )
    out = tmp_path / "o"
    prepare(src, PrepareOptions(format="events"), out)
    assert pd.read_parquet(out / "items.parquet")["category"].tolist() == ["shoes"]


# --------------------------------------------------------------------------- SQL literals
def _good_log(tmp: Path) -> Path:
    src = tmp / "log.csv"
    src.write_text(
        "user_id,timestamp,item_id,event\nu1,2024-01-01 10:00:00,i1,view\nu1,2024-01-01 10:01:00,i2,view\n"
    )
    return src


def test_out_with_a_quote_works(tmp_path: Path) -> None:
    out = tmp_path / "o'brien"
    r = prepare(_good_log(tmp_path), PrepareOptions(format="events"), out)
    assert r.rows_out == 2
    assert len(pd.read_parquet(out / "events.parquet")) == 2


def test_crafted_out_cannot_run_sql(tmp_path: Path) -> None:
    # were the path spliced into SQL, this --out would end the literal, COPY to the marker and
    # comment out the rest
    marker = tmp_path / "marker"
    out = tmp_path / f"x'; COPY (SELECT 42) TO '{marker}'; --"
    r = prepare(_good_log(tmp_path), PrepareOptions(format="events", timestamp_format="%Y'%m"), out)
    assert r.rows_out == 2
    assert (out / "events.parquet").is_file()
    assert not marker.exists()


def test_crafted_source_name_cannot_run_sql(tmp_path: Path) -> None:
    marker = tmp_path / "marker2"
    folder = tmp_path / f"a'; COPY (SELECT 1) TO '{marker}'; --"
    folder.mkdir(parents=True)
    src = _good_log(folder)
    r = prepare(src, PrepareOptions(format="events", default_event="view"), None)
    assert r.rows_out == 2
    assert not marker.exists()


def test_connection_has_no_extension_autoloading_and_is_locked(tmp_path: Path) -> None:
    con = _connect(tmp_path)
    try:
        settings_ = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('autoinstall_known_extensions', 'autoload_known_extensions', 'lock_configuration')"
            ).fetchall()
        )
        assert settings_ == {
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
            "lock_configuration": "true",
        }
        with pytest.raises(duckdb.Error):
            con.execute("SET autoinstall_known_extensions = true")
    finally:
        con.close()


# --------------------------------------------------------------------------- determinism
def test_prepare_is_byte_identical_run_to_run(tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    reports = []
    for out in outs:
        prepare(sample_path("uci"), PrepareOptions(format="uci"), out)
        rep = json.loads((out / "report.json").read_text())
        rep.pop("timing_s")
        rep.pop("outputs")
        reports.append(rep)
    for name in ("events.parquet", "items.parquet"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    assert reports[0] == reports[1]


# --------------------------------------------------------------------------- property
EXTRA_NAMES = ["reason", "_row", "split", "start", "_src", "event", "ts", "price_raw", "note", "extra:x"]
TEXT = st.text(alphabet=st.sampled_from(list('ab ,"\n;é\t')), min_size=1, max_size=8).filter(
    lambda s: s.strip(" \n\t") == s and s.strip() != ""
)


def _field(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


ROW_KIND = st.sampled_from(["good", "good", "good", "latin1", "unbalanced", "short"])


# TEXT's filter (no edge whitespace) rejects many draws; on some seeds Hypothesis then fails the
# run with FailedHealthCheck(filter_too_much) before testing anything, so that check is off too
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@example(  # the quote opened in row 0 closes in row 1: one record, its event 'view,;\nu1,…'
    extras=["reason"],
    rows=[("unbalanced", [";", ";", ";", ";"]), ("good", ['";', "é", '"', ";"])],
    blank_after=set(),
)
@given(
    extras=st.lists(st.sampled_from(EXTRA_NAMES), min_size=1, max_size=4, unique=True),
    rows=st.lists(st.tuples(ROW_KIND, st.lists(TEXT, min_size=4, max_size=4)), min_size=1, max_size=12),
    blank_after=st.sets(st.integers(0, 12), max_size=3),
)
def test_property_no_line_vanishes(
    extras: list[str], rows: list[tuple[str, list[str]]], blank_after: set[int]
) -> None:
    header = ["user_id", "timestamp", "item_id", "action", *extras]
    lines = [",".join(_field(h) for h in header).encode()]
    expected: dict[str, dict[str, str]] = {}
    kinds = []
    for k, (kind, values) in enumerate(rows):
        vals = dict(zip(extras, values, strict=False))
        fields = [
            f"u{k % 3}",
            f"2024-01-01 10:{k:02d}:00",
            f"i{k}",
            "view",
            *[_field(vals[e]) for e in extras],
        ]
        line = ",".join(fields).encode()
        if kind == "latin1":
            line = line.replace(b"view", b"vi\xe9w")
        elif kind == "unbalanced":
            line = line.replace(b",view", b',"view')
        elif kind == "short":
            line = line.rsplit(b",", 1)[0]
        else:
            expected[f"i{k}"] = vals
        kinds.append(kind)
        lines.append(line)
        if k in blank_after:
            lines.append(b"")
    data = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "log.csv"
        src.write_bytes(data)
        try:
            r = prepare(src, PrepareOptions(format="events", column_map={"event": "action"}), Path(tmp) / "o")
        except ShopsimError as exc:
            error = str(exc)
        else:
            error = ""
        if error:  # every row was bad: one line that says so, never for a file with an intact good row
            assert "\n" not in error
            if "unbalanced" in kinds:
                # an unbalanced quote may swallow the good rows after it into one record whose
                # event is then no event name: the error names that column instead
                assert "no usable rows" in error or "no row has a usable event type" in error
            else:
                assert "no usable rows" in error
                assert not expected
            return
        (f,) = r.lines["files"]
        assert f["lines_in"] == len(data.splitlines())
        assert f["reconciled"]
        assert r.lines["reconciled"]
        assert r.rows_in == f["records"] == r.rows_out + sum(r.dropped.values())
        assert f["records"] == f["records_kept"] + sum(f["records_dropped"].values())
        if "unbalanced" not in kinds and "short" not in kinds:
            # no structural damage: each good row kept with its extras unchanged, each bad one counted
            assert r.rows_in == len(rows)
            assert r.dropped.get("bad_encoding", 0) == kinds.count("latin1")
            ev = pd.read_parquet(Path(tmp) / "o" / "events.parquet").set_index("item_id")
            assert set(ev.index) == set(expected)
            canonical = {"event", "split"}
            for item, vals in expected.items():
                for name, value in vals.items():
                    col = "src_" + name if name in canonical else name
                    assert ev.loc[item, col] == value, (name, value)
