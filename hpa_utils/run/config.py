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
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
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
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"preset {path.stem!r} ({path}): a preset must be a mapping of sections to values")
    raw.setdefault("preset", path.stem)
    return raw


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


def _check_values(config: RunConfig) -> None:
    preset = config.preset
    stages = sorted(_stage_names())
    if sorted(config.train.stages.epochs) != stages:
        raise ValueError(
            f"preset {preset!r}: train.stages.epochs must give the epochs of every stage "
            f"({', '.join(stages)}), got {', '.join(config.train.stages.epochs) or 'none'}"
        )
    positive = {
        "data.image_size": config.data.image_size,
        "data.workers": config.workers,
        "train.batch_size": config.train.batch_size,
        "train.base.epochs": config.train.base.epochs,
        "ensemble.top_k": config.ensemble.top_k,
        "synth.n_train": config.synth.n_train,
        "synth.size": config.synth.size,
    }
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"preset {preset!r}: {key} must be at least 1, got {value}")
    if not 0 < config.data.val_fraction < 1:
        fraction = config.data.val_fraction
        raise ValueError(f"preset {preset!r}: data.val_fraction must be between 0 and 1, got {fraction}")
    if not config.train.variants:
        raise ValueError(f"preset {preset!r}: train.variants must name at least one base variant")
    unknown = [name for name in config.beyond.techniques if name not in TECHNIQUE_NAMES]
    if unknown or not config.beyond.techniques:
        raise ValueError(
            f"preset {preset!r}: beyond.techniques must list some of {', '.join(TECHNIQUE_NAMES)}, "
            f"got {', '.join(unknown) or 'none'}"
        )
    if config.beyond.run and config.beyond.variant not in config.train.variants:
        raise ValueError(
            f"preset {preset!r}: beyond.variant {config.beyond.variant} is not one of train.variants "
            f"({', '.join(map(str, config.train.variants))})"
        )
    if not 0 < config.train.oversample_threshold <= 1:
        raise ValueError(f"preset {preset!r}: train.oversample_threshold must be in (0, 1]")
    if not 0 < config.train.ema_momentum < 1:
        raise ValueError(f"preset {preset!r}: train.ema_momentum must be between 0 and 1")
    if config.train.focal_gamma < 0:
        raise ValueError(f"preset {preset!r}: train.focal_gamma must be at least 0")
    if config.train.processes != "auto" and config.train.processes < 1:
        raise ValueError(f"preset {preset!r}: train.processes must be auto or at least 1, got {config.train.processes}")


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
        ValueError: unknown preset, unknown or missing key, or a value of the wrong type; the message
            names the key and the preset.
    """
    raw = load_preset(preset)
    name = str(raw["preset"])
    pairs = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in pairs:
        apply_override(raw, key, value, name)
    if data_dir is not None:
        raw.setdefault("data", {})["dir"] = str(data_dir)
    if output_dir is not None:
        raw["output_dir"] = str(output_dir)
    config = build(RunConfig, raw, name)
    _check_values(config)
    synthetic = config.data.dir is None
    folder = synthetic_data_dir(config.synth) if synthetic else Path(config.data.dir).expanduser()
    folder = folder.resolve()
    cache = Path(config.data.cache_dir).expanduser().resolve() if config.data.cache_dir else cache_dir_for(folder)
    out = Path(config.output_dir).expanduser() if config.output_dir else RUNS_DIR / name
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


def synthetic_data_dir(synth: SynthConfig) -> Path:
    """Where the embedded synthetic dataset of a run's ``synth`` section is generated."""
    return DATA_ROOT / f"synthetic-{synth.n_train}x{synth.size}px-test{synth.n_test}-seed{synth.seed}"
