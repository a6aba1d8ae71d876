# ruff: noqa: E501  (the table of exact messages keeps one message per line)
"""``data.column_map`` in a config: a mapping or the CLI's list of ``canon=source`` pairs, the
same parser (:func:`shopsim.data.formats.parse_column_map`) for both, errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from shopsim.data import PrepareOptions, prepare
from shopsim.errors import ShopsimError
from shopsim.experiments.config import load_config, validate_config


def _raw(column_map: Any) -> dict[str, Any]:
    return {"data": {"source": "sample:toy", "format": "events", "column_map": column_map}}


@pytest.mark.parametrize(
    "column_map",
    [
        {"item_id": "article", "user_id": "customer"},
        ["item_id=article", "user_id=customer"],
        ["item_id = article", "user_id=customer"],  # spaces around '=' as on the CLI
        [["item_id", "article"], ["user_id", "customer"]],
    ],
    ids=["mapping", "list", "list-spaces", "pairs"],
)
def test_column_map_accepts_a_mapping_or_a_list_of_pairs(column_map: Any) -> None:
    cfg = validate_config(_raw(column_map))
    assert cfg.data.column_map == {"item_id": "article", "user_id": "customer"}
    assert cfg.data.prepare_options().column_map == {"item_id": "article", "user_id": "customer"}


BAD = [
    (["item_id"], "config: data.column_map 'item_id': expected canonical=source, e.g. column_map item_id=sku"),
    (["item_id=a", "item_id=b"], "config: data.column_map item_id=a and column_map item_id=b: two source columns for canonical column 'item_id'; keep one"),
    (["colour=x"], "config: data.column_map colour=…: 'colour' is not a canonical column; use one of: session_id, user_id, timestamp, item_id, event, price, position, slate_id, propensity, quantity, category"),
    ({"colour": "x"}, "config: data.column_map colour=…: 'colour' is not a canonical column; use one of: session_id, user_id, timestamp, item_id, event, price, position, slate_id, propensity, quantity, category"),
]  # fmt: skip


@pytest.mark.parametrize(("column_map", "message"), BAD, ids=[m.split(": ", 2)[2][:30] for _, m in BAD])
def test_bad_column_map_is_one_line_naming_the_key(column_map: Any, message: str) -> None:
    with pytest.raises(ShopsimError) as info:
        validate_config(_raw(column_map))
    assert str(info.value) == message


def test_yaml_list_form_maps_the_columns_in_prepare(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "customer": ["a", "a", "b"],
            "article": ["p1", "p2", "p1"],
            "timestamp": ["2024-03-01 10:00:00", "2024-03-01 10:05:00", "2024-03-02 08:00:00"],
        }
    ).to_csv(log, index=False)
    path = tmp_path / "exp.yaml"
    # the list form exactly as a user writes it in YAML
    path.write_text(
        "data:\n"
        "  source: log.csv\n"
        "  format: events\n"
        "  default_event: view\n"
        '  column_map: ["item_id=article", "user_id=customer"]\n'
    )
    assert yaml.safe_load(path.read_text())["data"]["column_map"] == ["item_id=article", "user_id=customer"]
    cfg = load_config(path)
    r = prepare(cfg.data.source_path(), cfg.data.prepare_options(), None)
    assert r.rows_out == 3
    # and a --set override in the list form
    cfg = load_config(path, ['data.column_map=["item_id=article", "user_id=customer"]'])
    assert cfg.data.column_map == {"item_id": "article", "user_id": "customer"}
    assert isinstance(cfg.data.prepare_options(), PrepareOptions)
