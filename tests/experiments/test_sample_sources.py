"""``sample:NAME`` on the command line (``data prepare``/``inspect``, ``ope obd``), resolved by
the config's resolver, and OBD policy folders holding gzipped CSVs (the bundled sample's)."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from shopsim.data import sample_path
from shopsim.errors import ShopsimError
from shopsim.experiments import cli as cli_module
from shopsim.experiments.config import SAMPLE_PREFIX, DataConfig
from shopsim.experiments.ope_obd import read_policy_log

CliRunner = Callable[..., tuple[int, str, str]]


def test_cli_prefix_is_the_configs() -> None:
    assert cli_module.SAMPLE_PREFIX == SAMPLE_PREFIX
    assert DataConfig.resolve_source("sample:uci") == sample_path("uci")
    assert DataConfig.resolve_source("logs/a.csv") == Path("logs/a.csv")


def test_data_prepare_accepts_a_sample_name(tmp_path: Path, cli: CliRunner) -> None:
    code, out, err = cli("data", "prepare", "sample:rees46", "--format", "rees46", "--out", tmp_path / "d")
    assert code == 0, err
    assert out.startswith(f"rees46 ← {sample_path('rees46')}")
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["rows_in"] == 17434
    code, out, err = cli("data", "inspect", "sample:toy", "--format", "events")
    assert code == 0, err
    assert out.startswith(f"events ← {sample_path('toy')}")


def test_unknown_sample_name_is_one_line(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("data", "prepare", "sample:nope", "--format", "rees46", "--out", tmp_path / "d")
    assert (code, err) == (
        2,
        "shopsim: error: argument SRC: unknown sample 'nope'; bundled samples are: obd, rees46, toy, uci "
        "(see `shopsim data prepare --help`)\n",
    )
    assert not (tmp_path / "d").exists()


def test_read_policy_log_reads_gzipped_csvs() -> None:
    # the bundled sample ships {all,item_context}.csv.gz only
    folder = sample_path("obd") / "bts"
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["all.csv.gz", "item_context.csv.gz"]
    df = read_policy_log(folder)
    assert len(df) == 10_000
    assert len(df) == len(pd.read_csv(folder / "all.csv.gz"))


def test_policy_folder_with_a_csv_and_a_csv_gz_is_ambiguous(tmp_path: Path) -> None:
    folder = tmp_path / "bts"
    shutil.copytree(sample_path("obd") / "bts", folder)
    with gzip.open(folder / "all.csv.gz", "rb") as src, (folder / "other.csv").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    (folder / "item_context.csv").write_text("item_id\n0\n")  # never a log, in either form
    with pytest.raises(ShopsimError) as info:
        read_policy_log(folder)
    assert str(info.value) == (
        f"{folder}: expected exactly one log CSV (.csv or .csv.gz) besides item_context, "
        "found all.csv.gz, other.csv"
    )


def test_corrupt_gzip_log_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "bts"
    folder.mkdir()
    (folder / "all.csv.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(ShopsimError) as info:
        read_policy_log(folder)
    msg = str(info.value)
    assert msg.startswith(f"{folder / 'all.csv.gz'}: cannot be read as an Open Bandit Dataset CSV (")
    assert msg.endswith("); pass the dataset's own files")


def test_ope_obd_on_sample_obd(tmp_path: Path, cli: CliRunner) -> None:
    code, out, err = cli("ope", "obd", "sample:obd", "--out", tmp_path, "--n-boot", "10")
    assert code == 0, err
    rep = json.loads((tmp_path / "ope_obd.json").read_text())
    # the bundled sample: 10,000 rows per policy, 80 items, 3 slots
    assert (rep["n_actions"], rep["n_positions"]) == (80, 3)
    assert rep["random_from_bts"]["rows"] == rep["bts_from_random"]["rows"] == 10_000
    assert f"wrote {tmp_path / 'ope_obd.json'}" in out
