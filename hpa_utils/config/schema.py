"""Typed dataclasses from plain nested mappings (a preset's YAML): the checks behind
:mod:`hpa_utils.config.resolve`. Supported field types: int, float, bool, str, None, unions, ``Literal``,
``tuple[T, ...]``, ``dict[str, T]`` and nested dataclasses; fields with ``metadata={"derived": True}``
are computed, never read. Every error names the dotted key and the preset.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Literal, Union


def setting(default, doc: str, **metadata):
    """A configuration field: its default, one line saying what it does (``hpa config`` prints it as the
    key's comment) and any other metadata (e.g. ``derived=True``)."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata={"doc": doc, **metadata})
    return dataclasses.field(default=default, metadata={"doc": doc, **metadata})


def _type_name(hint) -> str:
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", type(None): "null"}
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0]).split(' ', 1)[-1]}s"
    if origin is dict:
        return "a mapping"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce(value, hint, key: str, preset: str):
    """``value`` as type ``hint``, or a ValueError naming the key and the preset."""

    def wrong():
        return ValueError(f"preset {preset!r}: {key} must be {_type_name(hint)}, got {value!r}")

    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"preset {preset!r}: {key} must be a section (a mapping), got {value!r}")
        return build(hint, value, preset, f"{key}.")
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg, key, preset)
            except ValueError:
                continue
        raise wrong()
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise wrong()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]", preset) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong()
        key_type, value_type = typing.get_args(hint)
        return {str(k): _coerce(v, value_type, f"{key}.{k}", preset) for k, v in value.items()}
    if hint is type(None):
        if value is None:
            return None
        raise wrong()
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise wrong()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise wrong()
    if hint is str:
        if isinstance(value, str):
            return value
        raise wrong()
    raise TypeError(f"configuration type {hint!r} of {key} is not supported")


def build(cls, raw: dict, preset: str, prefix: str = ""):
    """An instance of dataclass ``cls`` from ``raw``; unknown, missing or mistyped keys raise ValueError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("derived")}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ValueError(
            f"preset {preset!r}: unknown key {prefix}{unknown[0]}; {prefix.rstrip('.') or 'the top level'} has: "
            + ", ".join(fields)
        )
    values = {}
    for name, item in fields.items():
        if name not in raw:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise ValueError(f"preset {preset!r}: {prefix}{name} is missing")
            continue
        values[name] = _coerce(raw[name], hints[name], prefix + name, preset)
    return cls(**values)
