"""Frozen dataclass trees to and from their JSON form, with every problem named by its dotted key.

The typed schemas of the files iterdce writes and reads (the plan, the dataset fingerprint) are dataclass trees;
this is their one converter. Field types understood: bool, int, float (finite), str, tuples of one item type,
``dict[str, X]``, ``X | None`` and nested dataclasses.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Union

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DataclassT = TypeVar("DataclassT", bound="DataclassInstance")


def to_json(value: Any) -> Any:
    """Dataclasses, tuples and mappings as plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _type_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _convert(hint: Any, value: Any, key: str, problems: list[str], defaults_optional: bool) -> Any:
    """``value`` converted to the field type ``hint``; a mismatch adds a problem and returns None."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        return _convert(next(a for a in options if a is not type(None)), value, key, problems, defaults_optional)
    if dataclasses.is_dataclass(hint):
        # a field's type hint is a class (is_dataclass also admits instances)
        return build_dataclass(typing.cast("type[DataclassInstance]", hint), value, key + ".", problems,
                               defaults_optional=defaults_optional)
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(f"{key} must be a list, got {value!r}")
            return None
        item = typing.get_args(hint)[0]
        items = [_convert(item, v, f"{key}[{i}]", problems, defaults_optional) for i, v in enumerate(value)]
        return tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{key} must be an object, got {value!r}")
            return None
        item = typing.get_args(hint)[1]
        return {str(k): _convert(item, v, f"{key}.{k}", problems, defaults_optional) for k, v in value.items()}
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        problems.append(f"{key} must be {_type_name(hint)}, got {value!r}")
        return None
    return hint(value)


def build_dataclass(cls: type[DataclassT], raw: Any, prefix: str, problems: list[str], what: str = "the file",
                    defaults_optional: bool = False) -> DataclassT | None:
    """One dataclass from a JSON object, problems appended to ``problems`` (None returned when there are any):
    every field is required (with ``defaults_optional``, only those without a default), none is unknown;
    ``what`` names the whole object in a message."""
    if not isinstance(raw, dict):
        problems.append(f"{prefix.rstrip('.') or what} must be an object, got {type(raw).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    optional = {f.name for f in fields if defaults_optional and f.default is not dataclasses.MISSING}
    count = len(problems)
    problems += [f"missing key {prefix}{n}" for n in names if n not in raw and n not in optional]
    problems += [f"unknown key {prefix}{k}" for k in raw if k not in names]
    values = {n: _convert(hints[n], raw[n], prefix + n, problems, defaults_optional) for n in names if n in raw}
    if len(problems) > count:
        return None
    return cls(**values)
