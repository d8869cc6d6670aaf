"""A run's configuration resolved once: a preset read, overrides applied, every value checked, paths filled in.

``hpa run`` resolves it (or :func:`hpa_utils.run.open_run` when a notebook is opened on its own): a preset
(``presets/NAME.yaml``, data not code, nested by concern), then ``section.key=value`` overrides, then the
derived paths. The result is a :class:`~hpa_utils.config.run_config.RunConfig`, written to the run's
``config.json``.

Unknown keys, missing keys and values of the wrong type are errors that name the key and the preset.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import yaml

from hpa_utils.config.checks import check_outside, check_values
from hpa_utils.config.run_config import (
    DEFAULT_PRESET,
    PRESETS_DIR,
    RUNS_DIR,
    RunConfig,
    cache_dir_for,
    synthetic_data_dir,
)
from hpa_utils.config.schema import build
from hpa_utils.config.stages import STAGES


def list_presets() -> list[str]:
    """Names of the presets shipped in ``presets/``."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    """``presets/NAME.yaml`` for a name, else the path itself.

    Raises:
        ValueError: no such preset (the message lists the known ones).
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {str(name_or_path)!r}; choose one of: {', '.join(list_presets())}")
    return path


def load_preset(name_or_path: str | Path) -> dict:
    """A preset's raw nested mapping, with ``preset``: its name."""
    path = preset_path(name_or_path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValueError(f"preset {path.stem!r} ({where}): {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"preset {path.stem!r} ({path}): not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"preset {path.stem!r} ({path}): a preset must be a mapping of sections to values")
    raw.setdefault("preset", path.stem)
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_override(text: str) -> tuple[str, object]:
    """``"train.base.epochs=3"`` -> (``"train.base.epochs"``, 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value, e.g. train.base.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not all(part.isidentifier() or part in _stage_names() for part in key.split(".")):
        raise ValueError(f"override {text!r}: {key!r} is not a configuration key such as train.base.epochs")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value


def leaf_keys(cls=RunConfig, prefix: str = "") -> list[str]:
    """Every settable dotted key of the configuration (derived fields left out)."""
    keys = []
    for item in dataclasses.fields(cls):
        if item.metadata.get("derived"):
            continue
        hint = typing.get_type_hints(cls)[item.name]
        if dataclasses.is_dataclass(hint):
            keys += leaf_keys(hint, f"{prefix}{item.name}.")
        else:
            keys.append(prefix + item.name)
    return keys


def _stage_names() -> set[str]:
    return {stage.name for stage in STAGES}


def _full_key(key: str, preset: str) -> str:
    """A dotted key as given, or the one dotted key a bare name ends with (``epochs`` is ambiguous)."""
    keys = [k for k in leaf_keys() if k != "preset"]
    if key in keys or "." in key or key == "preset":
        return key
    matches = [k for k in keys if k.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"preset {preset!r}: {key!r} is ambiguous; write one of {', '.join(matches)}")
    raise ValueError(f"preset {preset!r}: unknown key {key!r}; the keys are {', '.join(keys)}")


def apply_override(raw: dict, key: str, value, preset: str) -> None:
    """Set a dotted key in a raw nested mapping (a stage's epochs too: ``train.stages.epochs.A=3``)."""
    key = _full_key(key, preset)
    if key == "preset":
        raise ValueError(f"preset {preset!r}: the preset is chosen by name (--preset NAME), not overridden")
    parts = key.split(".")
    target = raw
    for depth, part in enumerate(parts[:-1]):
        if target.get(part) is None:  # a section the preset leaves at its defaults
            target[part] = {}
        if not isinstance(target[part], dict):
            where = ".".join(parts[: depth + 1])
            raise ValueError(f"preset {preset!r}: unknown key {key!r} ({where} is not a section)")
        target = target[part]
    target[parts[-1]] = value


def resolve_config(
    preset: str | Path = DEFAULT_PRESET,
    overrides: list[str] | dict | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> RunConfig:
    """A run's configuration: the preset, then overrides (``{"train.base.epochs": 3}`` or
    ``["train.base.epochs=3"]``), then absolute paths (the synthetic dataset's folder when ``data.dir``
    is null, ``runs/<preset>``, the cache folder).

    Raises:
        ValueError: unknown preset, unknown or missing key, a value of the wrong type or out of its range, or
            an output or cache folder inside the data directory; the message names the key and the preset.
    """
    raw = load_preset(preset)
    name = str(raw["preset"])
    _apply_overrides(raw, overrides, name)
    if data_dir is not None:
        raw.setdefault("data", {})["dir"] = str(data_dir)
    if output_dir is not None:
        raw["output_dir"] = str(output_dir)
    return _resolve(raw, name)


def derive_config(stored: RunConfig, overrides: list[str] | dict, output_dir: str | Path | None = None) -> RunConfig:
    """A new run's configuration: a stored run's (its data directory included), with ``overrides`` on top.

    The synthetic dataset's folder and the cache folder are derived again when they were derived (so an
    override of ``synth.n_train`` gets its own dataset); ``output_dir`` None leaves it for the caller.
    """
    raw = unresolved(stored).to_dict()
    raw.pop("synthetic", None)
    raw["output_dir"] = None if output_dir is None else str(output_dir)
    _apply_overrides(raw, overrides, stored.preset)
    return _resolve(raw, stored.preset)


def unresolved(config: RunConfig) -> RunConfig:
    """``config`` with its derived folders as a preset gives them: null for the synthetic dataset's folder and
    for a cache folder derived from the data's path (a preset that resolves to ``config`` again)."""
    data = config.data
    derived_cache = data.cache_dir == str(cache_dir_for(config.data_dir))
    return dataclasses.replace(
        config,
        data=dataclasses.replace(
            data, dir=None if config.synthetic else data.dir, cache_dir=None if derived_cache else data.cache_dir
        ),
    )


def _apply_overrides(raw: dict, overrides: list[str] | dict | None, name: str) -> None:
    pairs = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in pairs:
        apply_override(raw, key, value, name)


def _resolve(raw: dict, name: str) -> RunConfig:
    """Type-check and range-check a raw mapping, then fill in the absolute paths."""
    config = build(RunConfig, raw, name)
    check_values(config)
    synthetic = config.data.dir is None
    folder = synthetic_data_dir(config.synth) if synthetic else Path(config.data.dir).expanduser()
    folder = folder.resolve()
    cache = Path(config.data.cache_dir).expanduser().resolve() if config.data.cache_dir else cache_dir_for(folder)
    out = Path(config.output_dir).expanduser() if config.output_dir else RUNS_DIR / name
    check_outside(out, folder, "the output directory")
    check_outside(cache, folder, "the cache directory")
    return dataclasses.replace(
        config,
        synthetic=synthetic,
        output_dir=str(out.resolve()),
        data=dataclasses.replace(config.data, dir=str(folder), cache_dir=str(cache)),
    )


def load_config(path: str | Path) -> RunConfig:
    """A configuration written by :meth:`RunConfig.save` (already resolved)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a run configuration ({error})") from None
    synthetic = raw.pop("synthetic", True)
    config = build(RunConfig, raw, str(raw.get("preset", path)))
    return dataclasses.replace(config, synthetic=bool(synthetic))
