"""The one place that knows the project's paths and a run's configuration.

A run's configuration is resolved once, by ``hpa run`` (or by :func:`hpa_utils.run.open_run` when a
notebook is opened on its own): a preset (``presets/NAME.yaml``, data not code, nested by concern:
``data``, ``synth``, ``train`` with its ``base`` and ``stages``, ``ensemble``, ``report``), then
``section.key=value`` overrides, then the derived paths. The result is a typed, frozen
:class:`RunConfig`, written to the run's ``config.json``; every notebook opens that file.

Unknown keys, missing keys and values of the wrong type are errors that name the key and the preset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hpa_utils.run.schema import build
from hpa_utils.training.stages import STAGES

PROJ_ROOT = Path(__file__).resolve().parents[2]
PRESETS_DIR = PROJ_ROOT / "presets"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
FIGURES_DIR = PROJ_ROOT / "figures"
REPORT_DIR = PROJ_ROOT / "report"
DATA_ROOT = PROJ_ROOT / "data"
RUNS_DIR = PROJ_ROOT / "runs"
DEFAULT_PRESET = "quick"
CONFIG_FILE = "config.json"


def cache_root() -> Path:
    """Root of the decoded-image caches (``$HPA_CACHE_DIR`` or ``.cache/`` in the project)."""
    return Path(os.environ.get("HPA_CACHE_DIR", PROJ_ROOT / ".cache"))


def cache_dir_for(data_dir: str | Path, root: str | Path | None = None) -> Path:
    """The cache folder of one data directory: outside it, keyed by its resolved path."""
    resolved = Path(data_dir).resolve()
    digest = hashlib.sha1(os.fsencode(resolved)).hexdigest()[:10]  # any path, UTF-8 or not
    return Path(root or cache_root()) / f"{resolved.name}-{digest}"


@dataclass(frozen=True)
class RunPaths:
    """The layout of one run's output directory."""

    output_dir: Path

    @property
    def notebooks(self) -> Path:
        return self.output_dir / "notebooks"

    @property
    def figures(self) -> Path:
        return self.output_dir / "figures"

    @property
    def results(self) -> Path:
        return self.output_dir / "results"

    @property
    def models(self) -> Path:
        return self.output_dir / "models"

    @property
    def predictions(self) -> Path:
        return self.output_dir / "predictions"

    @property
    def report(self) -> Path:
        return self.output_dir / "report"

    @property
    def submission(self) -> Path:
        return self.output_dir / "submission.csv"

    @property
    def config(self) -> Path:
        return self.output_dir / CONFIG_FILE

    def split_file(self, seed: int, val_fraction: float) -> Path:
        """The run's saved train/validation split for one seed and validation share."""
        return self.results / f"split_seed{seed}_val{val_fraction}.csv"

    def make(self) -> RunPaths:
        for folder in (self.notebooks, self.figures, self.results, self.models, self.predictions, self.report):
            folder.mkdir(parents=True, exist_ok=True)
        return self


# --------------------------------------------------------------------------- the typed configuration


@dataclass(frozen=True)
class DataConfig:
    """The dataset and how it is read. ``dir``: null for the embedded synthetic dataset."""

    dir: str | None
    image_size: int
    val_fraction: float
    workers: int | Literal["auto"]
    cache_dir: str | None = None


@dataclass(frozen=True)
class SynthConfig:
    """The embedded synthetic dataset (used when ``data.dir`` is null)."""

    n_train: int
    n_test: int
    size: int
    seed: int


@dataclass(frozen=True)
class BaseTrainConfig:
    """Training of the base models from scratch."""

    epochs: int
    learning_rate: float
    prior_bias: bool


@dataclass(frozen=True)
class StagesConfig:
    """The fine-tuning stages (A, B, C): epochs of each, and their learning rate."""

    epochs: dict[str, int]
    learning_rate: float


@dataclass(frozen=True)
class TrainConfig:
    """Training shared by every model: which base variants, batches, augmentation."""

    variants: tuple[int, ...]
    batch_size: int
    augment: bool
    processes: int | Literal["auto"]
    base: BaseTrainConfig
    stages: StagesConfig
    executor: Literal["local", "ray"] = "local"  # ray: each model a Ray task (hpa_utils.training.cluster)
    ray_address: str | None = None  # ray: a cluster's address; null starts a local Ray
    # Beyond the report (issue 12), every model of the run; off in every shipped preset.
    loss: Literal["bce", "focal"] = "bce"  # focal: keras.losses.BinaryFocalCrossentropy(focal_gamma)
    focal_gamma: float = 2.0
    ema: bool = False  # Adam's use_ema: the models keep the moving average of their weights
    ema_momentum: float = 0.99
    oversample: bool = False  # repeat-factor sampling of images with rare classes
    oversample_threshold: float = 0.1  # classes in fewer than this share of images are repeated


@dataclass(frozen=True)
class EnsembleConfig:
    """The weighted ensemble: members, weight shift and threshold (``fit``: chosen on validation)."""

    top_k: int
    shift: float | Literal["fit"]
    threshold: float | Literal["fit"]
    tta: Literal["none", "mean", "max"] = "none"  # every model's predictions over the 8 flips/turns


#: ``beyond.techniques``: what notebook 05 ablates (hpa_utils.studies.beyond.TECHNIQUES).
TECHNIQUE_NAMES = ("focal", "ema", "oversample", "tta_mean", "tta_max", "label_ratio")


@dataclass(frozen=True)
class BeyondConfig:
    """Notebook 05: the winners' techniques, each alone and all together, against the report's baseline,
    and the Grad-CAM maps of the run's best model."""

    run: bool = False  # false: notebook 05 is skipped
    variant: int = 0  # the base variant ablated (0: the report's baseline)
    techniques: tuple[str, ...] = TECHNIQUE_NAMES
    gradcam_classes: int = 3  # the best and the worst classes shown
    gradcam_images: int = 2  # validation images per class shown


@dataclass(frozen=True)
class ReportConfig:
    """What the report's figures show."""

    figure_variants: tuple[int, ...]
    stage_figure_variant: int


@dataclass(frozen=True)
class RunConfig:
    """One run's whole configuration, resolved once (see the module docstring)."""

    preset: str
    seed: int
    data: DataConfig
    synth: SynthConfig
    train: TrainConfig
    ensemble: EnsembleConfig
    report: ReportConfig
    beyond: BeyondConfig = field(default_factory=BeyondConfig)
    description: str = ""
    output_dir: str | None = None
    synthetic: bool = field(default=True, metadata={"derived": True})

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.output_dir))

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir)

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir)

    @property
    def workers(self) -> int:
        """Input-pipeline and decoding threads: ``data.workers``, or every core for ``auto``."""
        return (os.cpu_count() or 1) if self.data.workers == "auto" else int(self.data.workers)

    @property
    def label(self) -> str:
        """One line saying what made an output: preset, data and image size (figures carry it)."""
        data = "synthetic data" if self.synthetic else self.data_dir.name
        return f"hpa_utils · preset {self.preset} · {data} · {self.data.image_size} px"

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def section(self, path: str):
        """The plain value at a dotted path, e.g. ``"train.base"`` (a dict) or ``"seed"``."""
        value = self.to_dict()
        for part in path.split("."):
            value = value[part]
        return value

    def save(self, path: str | Path | None = None) -> Path:
        from hpa_utils.io import write_json_atomic

        return write_json_atomic(path or self.paths.config, self.to_dict())


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# --------------------------------------------------------------------------- reading and checking


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
        if not isinstance(target.get(part), dict):
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
    raw = stored.to_dict()
    raw.pop("synthetic", None)
    if stored.synthetic:
        raw["data"]["dir"] = None
    if raw["data"]["cache_dir"] == str(cache_dir_for(stored.data_dir)):
        raw["data"]["cache_dir"] = None
    raw["output_dir"] = None if output_dir is None else str(output_dir)
    _apply_overrides(raw, overrides, stored.preset)
    return _resolve(raw, stored.preset)


def _apply_overrides(raw: dict, overrides: list[str] | dict | None, name: str) -> None:
    pairs = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in pairs:
        apply_override(raw, key, value, name)


def _resolve(raw: dict, name: str) -> RunConfig:
    """Type-check and range-check a raw mapping, then fill in the absolute paths."""
    from hpa_utils.run.checks import check_outside, check_values

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


def config_digest(config: RunConfig) -> str:
    """Eight hex digits that identify a configuration apart from its output directory."""
    payload = {**config.to_dict(), "output_dir": None}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


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


def synthetic_data_dir(synth: SynthConfig) -> Path:
    """Where the embedded synthetic dataset of a run's ``synth`` section is generated."""
    return DATA_ROOT / f"synthetic-{synth.n_train}x{synth.size}px-test{synth.n_test}-seed{synth.seed}"
