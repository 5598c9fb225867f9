"""Typed configuration: dataclasses filled from the command line and saved with every result."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type[Any], prefix: str = "", defaults: Any = None
) -> None:
    """One `--field-name` option per dataclass field, typed from its annotation; the defaults
    are the fields' own, or those of the instance `defaults`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        kind = hints[f.name]
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        flag = "--" + prefix + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "") + f" (default: {default})"
        origin = typing.get_origin(kind)
        if kind is bool:
            parser.add_argument(
                flag,
                dest=prefix + f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        elif origin is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(
                flag, dest=prefix + f.name, type=item, nargs="+", default=default, help=help_text
            )
        elif origin in (typing.Union, types.UnionType):
            inner = next(a for a in typing.get_args(kind) if a is not type(None))
            parser.add_argument(
                flag, dest=prefix + f.name, type=inner, default=default, help=help_text
            )
        elif kind in (int, float, str):
            parser.add_argument(
                flag, dest=prefix + f.name, type=kind, default=default, help=help_text
            )
        # dict/list fields are not command-line options; they keep their defaults


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "") -> T:
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = prefix + f.name
        if f.init and hasattr(args, key):
            value = getattr(args, key)
            if isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
    return cls(**values)


def replace_from_args(config: T, argv: Sequence[str], prog: str) -> T:
    """`config` with the options in `argv` (its flags, as on the command line) applied over it;
    a ValueError names an option that is not one of them."""
    parser = _RaisingParser(prog=prog, add_help=False)
    add_dataclass_args(parser, type(config), defaults=config)
    return dataclass_from_args(type(config), parser.parse_args(list(argv)))


class _RaisingParser(argparse.ArgumentParser):
    # Options parsed inside a run (not from its own command line) must not exit the process.
    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(f"{self.prog}: {message}")


def to_jsonable(config: Any) -> dict[str, Any]:
    """A dataclass as plain JSON types (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))
