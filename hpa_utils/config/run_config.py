"""The one place that knows the project's paths and the typed shape of a run's configuration.

A run's configuration is a typed, frozen :class:`RunConfig`, nested by concern (``data``, ``synth``,
``train`` with its ``base`` and ``stages``, ``ensemble``, ``beyond``, ``report``), resolved once from a preset
by :mod:`hpa_utils.config.resolve` and written to the run's ``config.json``; every notebook opens that file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hpa_utils.io import write_json_atomic

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
        return write_json_atomic(path or self.paths.config, self.to_dict())


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def config_digest(config: RunConfig) -> str:
    """Eight hex digits that identify a configuration apart from its output directory."""
    payload = {**config.to_dict(), "output_dir": None}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def synthetic_data_dir(synth: SynthConfig) -> Path:
    """Where the embedded synthetic dataset of a run's ``synth`` section is generated."""
    return DATA_ROOT / f"synthetic-{synth.n_train}x{synth.size}px-test{synth.n_test}-seed{synth.seed}"
