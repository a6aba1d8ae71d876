"""``shopsim ope obd`` and ``shopsim ope validate`` say which estimates can be trusted."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from shopsim.evaluation.ope.diagnostics import THRESHOLDS
from shopsim.evaluation.ope.estimators import SINGLE_SLOT
from shopsim.tests.helpers import FIXTURES

CliRunner = Callable[..., tuple[int, str, str]]
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _check(name: str, doc: object) -> None:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_ope_obd_on_the_bundled_sample_has_trust_blocks(tmp_path: Path, cli: CliRunner) -> None:
    code, out, err = cli("ope", "obd", FIXTURES / "obd", "--out", tmp_path, "--n-boot", "200")
    assert code == 0, err
    rep = json.loads((tmp_path / "ope_obd.json").read_text())
    _check("ope_obd", rep)
    assert rep["trust_thresholds"] == THRESHOLDS
    # 260 rows per log, ESS 56 and 55: every estimate resting on raw weights is flagged low_ess;
    # uniform-random's weights from the BTS log also put 6.5% of Σw on one row (heavy_weight).
    # Switch-DR switched no row (max weight 13 < λ = 100), so it is DR and flagged with it.
    is_type = ("ips", "snips", "dr", "sndr", "switch_dr")
    want = {"random_from_bts": ["low_ess", "heavy_weight"], "bts_from_random": ["low_ess"]}
    for key, reasons in want.items():
        est = rep[key]["estimates"]
        assert set(est) == set(SINGLE_SLOT)
        for name, e in est.items():
            t = e["trust"]
            assert t["reasons"] == (reasons if name in is_type else []), (key, name)
            assert t["verdict"] == ("flagged" if name in is_type else "ok")
            assert t["range"] == [0.0, 1.0]
        assert est["dm"]["trust"]["ess"] is None
        assert est["ips"]["trust"]["ess"] == pytest.approx(rep[key]["diagnostics"]["ess"])
        assert est["ips"]["trust"]["max_weight"] == pytest.approx(rep[key]["diagnostics"]["max_weight"])
        assert rep[key]["trust_summary"]["usable"] == ["dm", "dros"]
        assert rep[key]["trust_summary"]["flagged"] == {n: reasons for n in is_type}
    assert out.count("Trust: usable here: dm (model), dros (shrinkage); flagged: ips (low_ess") == 2
    assert "| dm | 0.04450 |" in out
    assert "| ok |" in out
    assert "⚠ low_ess, heavy_weight |" in out


def _small(tmp_path: Path, toy_sim: Path) -> list[str | Path]:
    return [
        "--sim", toy_sim, "--out", tmp_path / "v", "--slate-size", "3", "--n-candidates", "20",
        "--n-logged", "1000", "--repeats", "1", "--truth-episodes", "200", "--n-boot", "50",
    ]  # fmt: skip


def test_ope_validate_marks_every_estimate(toy_sim: Path, tmp_path: Path, cli: CliRunner) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"policies": {"popularity": {"kind": "baseline"}}}))
    code, out, err = cli("ope", "validate", *_small(tmp_path, toy_sim), "--results", results)
    assert code == 0, err
    rep = json.loads((tmp_path / "v" / "ope_validation.json").read_text())
    _check("ope_validation", rep)
    tr = rep["trust"]
    assert tr["thresholds"] == THRESHOLDS
    assert tr["ranges"] == {"session": [0.0, 60.0], "first_page": [0.0, 3.0]}  # 3 clicks, 20 pages
    for estimand in ("session", "first_page"):
        per = tr[estimand]["estimators"]
        for e, v in per.items():
            estimates = [rep["repeats"][0][n][estimand][e] for n in rep["truth"]]
            assert v["of"] == len(estimates) == len(rep["truth"])
            assert v["flagged"] == sum(x["trust"]["verdict"] == "flagged" for x in estimates)
            for x in estimates:
                t = x["trust"]
                assert (t["verdict"] == "flagged") == bool(t["reasons"])
                assert ("outside_range" in t["reasons"]) == (not 0.0 <= x["value"] <= t["range"][1])
        assert tr[estimand]["usable"] == [e for e, v in per.items() if v["flagged"] == 0]
    # ESS of the DM estimate is not defined; DR's weights are the first page's joint slate ratios
    fp = rep["repeats"][0]["popularity"]["first_page"]
    assert fp["dm"]["trust"]["ess"] is None
    assert fp["dr"]["trust"]["ess"] == pytest.approx(fp["diagnostics"]["ess"])
    assert "| trust |" in out
    assert "- session: usable for every policy and repeat: " in out
    assert "- first_page: usable for every policy and repeat: " in out
    assert json.loads(results.read_text())["policies"]["popularity"]["ope"]["dr"]["trust"]["kind"] == (
        "doubly_robust"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such results.json; pass the file a quickstart wrote"),
        ("{not json", "not a readable results.json (JSONDecodeError); pass the file a quickstart wrote"),
        ("[1, 2]", "not a results.json (no 'policies' object); pass the file a quickstart wrote"),
        ('{"policies": 3}', "not a results.json (no 'policies' object); pass the file a quickstart wrote"),
        (
            b"\xff\xfe\x00",
            "not a readable results.json (UnicodeDecodeError); pass the file a quickstart wrote",
        ),
    ],
)
def test_ope_validate_checks_results_before_any_work(
    tmp_path: Path, cli: CliRunner, content: str | bytes | None, message: str
) -> None:
    # the simulator folder is empty: a check after the work would fail on it first
    (tmp_path / "sim").mkdir()
    results = tmp_path / "results.json"
    if isinstance(content, bytes):
        results.write_bytes(content)
    elif content is not None:
        results.write_text(content)
    code, _, err = cli(
        "ope", "validate", "--sim", tmp_path / "sim", "--out", tmp_path / "o", "--results", results
    )
    assert code == 2
    assert err.strip() == f"shopsim: error: {results}: {message}"
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write a read-only file")
def test_ope_validate_refuses_a_read_only_results(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "sim").mkdir()
    results = tmp_path / "results.json"
    results.write_text('{"policies": {}}')
    results.chmod(0o444)
    code, _, err = cli(
        "ope", "validate", "--sim", tmp_path / "sim", "--out", tmp_path / "o", "--results", results
    )
    assert code == 2
    assert err.strip() == (
        f"shopsim: error: {results}: not writable; make it writable or copy it, then pass the copy"
    )
