"""Every ``--help`` of the ``shopsim`` CLI renders its text as written: argparse %-formats an
argument's ``help`` but not a parser's ``description``, so ``%%`` belongs in the first only."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from shopsim.experiments.cli import build_parser


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share one parser
                yield from _parsers(sub)


def test_no_help_prints_a_doubled_percent() -> None:
    helps = {p.prog: p.format_help() for p in _parsers(build_parser(None))}
    assert len(helps) > 15  # every command and subcommand, built in full
    doubled = sorted(prog for prog, text in helps.items() if "%%" in text)
    assert doubled == []
    for prog in ("shopsim headroom", "shopsim study", "shopsim ope obd"):
        assert "95% " in " ".join(helps[prog].split()), prog
    # an argument's help is %-formatted: its %% is one % on screen
    assert "e.g. %d/%m/%Y %H:%M" in " ".join(helps["shopsim data prepare"].split())
