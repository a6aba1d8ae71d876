"""The canonical log layer: load any shop's logs, validate, and write canonical tables.

>>> from shopsim.data import PrepareOptions, prepare, sample_path
>>> report = prepare(sample_path("rees46"), PrepareOptions(format="rees46"), out=None)
>>> report.rows_in == report.rows_out + sum(report.dropped.values())
True
"""

from shopsim.data.formats import FORMATS, PrepareOptions
from shopsim.data.log import SessionLog, format_summary
from shopsim.data.pipeline import DROP_REASONS, PrepareResult, prepare
from shopsim.data.samples import sample_format, sample_path
from shopsim.data.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    validate_events,
    validate_items,
)

__all__ = [
    "DROP_REASONS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "FORMATS",
    "ITEM_COLUMNS",
    "PrepareOptions",
    "PrepareResult",
    "SessionLog",
    "format_summary",
    "prepare",
    "sample_format",
    "sample_path",
    "validate_events",
    "validate_items",
]
