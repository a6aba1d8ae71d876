"""The fidelity summary does not print a purchase AUC that rests on a handful of purchases."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shopsim.envs.fitting.report import MIN_AUC_POSITIVES, fidelity_markdown
from shopsim.tests.helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[2]


def _fixture() -> dict[str, Any]:
    # a tiny run's fidelity.json, written before auc_usable existed: 3 test purchases
    rep: dict[str, Any] = json.loads((FIXTURES / "artifacts" / "fidelity.json").read_text())
    assert rep["purchase"]["test_positives"] == 3
    assert "auc_usable" not in rep["purchase"]
    return rep


def _purchase_line(rep: dict[str, Any]) -> str:
    return next(line for line in fidelity_markdown(rep).splitlines() if line.startswith("purchase model:"))


FEW = "purchase model: too few purchases (n={n}) for an AUC (needs ≥ 10 in test; fitted on train+valid)"
AUC = "purchase model: AUC 0.358 vs item purchase rate 0.311 ({n} test purchases; fitted on train+valid)"
CASES = [(3, None, FEW), (9, None, FEW), (10, None, AUC), (3, False, FEW), (25, True, AUC)]
"""(test purchases, auc_usable in the report or None for a report without it, expected line)"""


@pytest.mark.parametrize(("positives", "usable", "line"), CASES)
def test_purchase_auc_line(positives: int, usable: bool | None, line: str) -> None:
    rep = copy.deepcopy(_fixture())
    rep["purchase"]["test_positives"] = positives
    if usable is not None:
        rep["purchase"]["auc_usable"] = usable
    assert _purchase_line(rep) == line.format(n=positives)


def test_fit_marks_the_purchase_auc(toy_sim: Path) -> None:
    rep = json.loads((toy_sim / "fidelity.json").read_text())
    pur = rep["purchase"]
    assert pur["mode"] == "model"
    assert pur["auc_usable"] is (pur["test_positives"] >= MIN_AUC_POSITIVES)
    assert pur["test_positives"] >= MIN_AUC_POSITIVES  # the toy shop has hundreds
    assert _purchase_line(rep).startswith(f"purchase model: AUC {pur['held_out']['auc']['model']:.3f} vs")
    schema = json.loads((ROOT / "docs" / "schemas" / "fidelity.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(rep)
    bad = copy.deepcopy(rep)
    bad["purchase"]["auc_usable"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)
