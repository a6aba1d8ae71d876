"""Command-line flags generated from configuration dataclasses: the CLI never repeats a default.

:func:`add_config_flags` adds one ``--field-name`` flag per field of a config class, with the
field's documentation and default in its help; :func:`config_from_args` builds the config from
the flags that were given (the others keep the class's default) through the same pydantic
validation as a YAML config (the finiteness and range rules of
:data:`~shopsim.experiments.config.FIELD_RULES`, then the class's own checks), so a wrong value
gets the same one-line message either way.

:mod:`shopsim.experiments.config` imports every stage (torch among them), so it is imported
inside the functions: importing this module stays cheap for ``shopsim --help``.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, get_type_hints

from shopsim.errors import ShopsimError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per (non-nested) field of dataclass ``cls``; values are read as YAML scalars
    (``--split 0.7,0.1,0.2`` and ``--fit-splits train,valid`` as lists)."""
    import yaml

    from shopsim.experiments.config import _plain, field_default, field_docs

    docs = field_docs(cls)
    hints = get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} settings")
    for f in fields(cls):
        if f.name in skip or is_dataclass(hints[f.name]):
            continue
        default = field_default(f)
        shown = (
            "required"
            if default is MISSING
            else yaml.safe_dump(_plain(default), default_flow_style=True).strip()
        )
        shown = shown.removesuffix("\n...").removesuffix("...").strip()
        doc = docs.get(f.name, "").replace("%", "%%")
        group.add_argument(
            _flag(f.name),
            dest=f"cfg_{f.name}",
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"{doc} (default: {shown.replace('%', '%%')})",
        )


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line, parsed as YAML values (text that is not
    valid YAML, such as ``[1``, is kept as a string for the validation to reject)."""
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        text = getattr(args, f"cfg_{f.name}", None)
        if text is None:
            continue
        hint = str(hints[f.name])
        if ("tuple" in hint or "list" in hint) and "," in text:
            out[f.name] = [_yaml_value(x) for x in text.split(",") if x.strip()]
        else:
            value = _yaml_value(text)
            out[f.name] = (
                [value] if ("tuple" in hint or "list" in hint) and not isinstance(value, list) else value
            )
    return out


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def config_from_args(args: argparse.Namespace, cls: type, **fixed: Any) -> Any:
    """``cls`` from the flags given (plus ``fixed`` values), validated like a YAML section."""
    from pydantic import TypeAdapter, ValidationError

    from shopsim.experiments.config import check_field_rules

    values = {**flag_values(args, cls), **fixed}
    try:
        check_field_rules(cls, values)
        return TypeAdapter(cls).validate_python(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        raise ShopsimError(f"{_flag(name)} {values.get(name)!r}: {err['msg'].rstrip('.')}") from None
