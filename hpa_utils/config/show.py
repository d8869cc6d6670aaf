"""A configuration as a commented YAML preset: every key, its value and what it does (``hpa config``).

The comments are the one-line descriptions declared with each field (:func:`hpa_utils.config.schema.setting`),
so what ``hpa config`` prints is always the configuration's own declaration; the text is a valid preset.
"""

from __future__ import annotations

import dataclasses
import json

from hpa_utils.config.resolve import unresolved
from hpa_utils.config.run_config import RunConfig

COMMENT_COLUMN = 32


def _value(value) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_value(item)}" for key, item in value.items()) + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _lines(instance, indent: int) -> list[str]:
    lines = []
    # a section's own keys first, then those it inherits (the technique switches: keyword-only)
    for item in sorted(dataclasses.fields(instance), key=lambda f: f.kw_only):
        if item.metadata.get("derived"):
            continue
        value = getattr(instance, item.name)
        doc = item.metadata.get("doc", "")
        pad = "  " * indent
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{item.name}:".ljust(COMMENT_COLUMN) + (f"  # {doc}" if doc else ""))
            lines += _lines(value, indent + 1)
        else:
            text = f"{pad}{item.name}: {_value(value)}"
            lines.append(text.ljust(COMMENT_COLUMN) + (f"  # {doc}" if doc else ""))
    return [line.rstrip() for line in lines]


def config_yaml(config: RunConfig) -> str:
    """``config`` as a YAML preset with each key's description as its comment (``preset`` left out: a
    preset is named by its file; derived folders null, as a preset gives them)."""
    lines = [line for line in _lines(unresolved(config), 0) if not line.startswith("preset:")]
    return f"# preset {config.preset}, in full\n" + "\n".join(lines) + "\n"
