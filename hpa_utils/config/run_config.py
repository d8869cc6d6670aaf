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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# where things are, in a checkout or installed; importable from here as they always were
from hpa_utils.config.paths import (  # noqa: F401
    CHECKOUT,
    DATA_ROOT,
    FIGURES_DIR,
    NOTEBOOKS_DIR,
    PRESETS_DIR,
    PROJ_ROOT,
    REPORT_DIR,
    RUNS_DIR,
    cache_root,
)
from hpa_utils.config.schema import setting
from hpa_utils.config.techniques import TECHNIQUE_NAMES, TechniqueSwitches
from hpa_utils.io import write_json_atomic

DEFAULT_PRESET = "quick"
CONFIG_FILE = "config.json"


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
# Every key's type, default and one-line meaning are declared here, once: a preset file holds only what
# differs from these defaults (which are the ``quick`` preset's), and ``hpa config`` prints the whole of it.


@dataclass(frozen=True)
class DataConfig:
    """The dataset and how it is read."""

    dir: str | None = setting(None, "null: the embedded synthetic dataset (synth below), generated on first use")
    image_size: int = setting(96, "side in px of the decoded-image cache and the model input")
    val_fraction: float = setting(0.2, "share of training Ids held out for validation")
    workers: int | Literal["auto"] = setting(2, "decoding and input-pipeline threads; auto: every core")
    cache_dir: str | None = setting(None, "null: the decoded-image cache's folder derived from the data's path")


@dataclass(frozen=True)
class SynthConfig:
    """The embedded synthetic dataset (used when ``data.dir`` is null)."""

    n_train: int = setting(3000, "training images generated")
    n_test: int = setting(1000, "test images generated (their labels split into public and private parts)")
    size: int = setting(256, "side in px of the generated images (Kaggle's: 512)")
    seed: int = setting(0, "the generator's seed")
    test_prior_shift: float = setting(
        0.0, "0: test label sets drawn as the training ones; up to 1: tilted toward rare sets (a test prior shift)"
    )


@dataclass(frozen=True)
class BaseTrainConfig:
    """Training of the base models from scratch."""

    epochs: int = setting(3, "epochs of every base model (report: 40)")
    learning_rate: float = setting(0.002, "Adam's learning rate")
    prior_bias: bool = setting(True, "start the output bias at the classes' log-odds")


@dataclass(frozen=True)
class StagesConfig:
    """The fine-tuning stages (A, B, C): epochs of each, and their learning rate."""

    epochs: dict[str, int] = setting({"A": 1, "B": 1, "C": 2}, "epochs of each stage (report: A 10, B 4, C 2)")
    learning_rate: float = setting(0.0005, "Adam's learning rate in every stage")
    control: tuple[int, ...] = setting(
        (),
        "base variants also trained as Finding 2's control: nothing frozen, the stages' epochs together, their rate",
    )


@dataclass(frozen=True)
class TrainConfig(TechniqueSwitches):
    """Training shared by every model: which base variants, batches, augmentation, where the jobs run; and
    the techniques beyond the report (:class:`~hpa_utils.config.techniques.TechniqueSwitches`), which change
    every model of the run when on."""

    variants: tuple[int, ...] = setting((0, 1, 2, 3), "base-model variants (0-7; 0 is the report's baseline)")
    seeds: int = setting(
        1, "training seeds per model: seed, seed + 1, ... (weights, augmentation, batch order, dropout; one split)"
    )
    batch_size: int = setting(16, "images per batch")
    augment: bool = setting(True, "the report's imgaug augmentation")
    processes: int | Literal["auto"] = setting(
        "auto", "training jobs side by side: auto = one per core on a CPU, one in all with a GPU"
    )
    base: BaseTrainConfig = setting(BaseTrainConfig(), "the base models")
    stages: StagesConfig = setting(StagesConfig(), "the fine-tuning stages")
    executor: Literal["local", "ray"] = setting(
        "local", "local: here, or side by side in worker processes; ray: as Ray tasks (the cluster extra)"
    )
    ray_address: str | None = setting(None, "ray: null starts a local Ray with this machine's cores; or an address")


@dataclass(frozen=True)
class EnsembleConfig:
    """The weighted ensemble: members, weight shift and threshold (``fit``: chosen on validation)."""

    top_k: int = setting(6, "the ensemble takes the k best models on validation (report: 6)")
    shift: float | Literal["fit", "original"] = setting(
        "original",
        "weight = val F1 - shift; original: placed among the members' F1 as the report's 0.34 was among its "
        "0.42-0.47 models; fit: the best on validation; or a number (report: 0.34)",
    )
    threshold: float | Literal["fit"] = setting("fit", "fit: the best global threshold on validation")
    tta: Literal["none", "mean", "max"] = setting("none", "every model's predictions over the 8 flips and turns")


@dataclass(frozen=True)
class BeyondConfig:
    """Notebook 05: the winners' techniques, each alone and all together, against the report's baseline,
    and the Grad-CAM maps of the run's best model."""

    run: bool = setting(False, "false: notebook 05 is skipped")
    variant: int = setting(0, "the base variant ablated (0: the report's baseline), trained as in train.base")
    techniques: tuple[str, ...] = setting(TECHNIQUE_NAMES, "the techniques ablated, each alone and all together")
    gradcam_classes: int = setting(3, "Grad-CAM: the classes the best model does best and worst on")
    gradcam_images: int = setting(2, "Grad-CAM: validation images per class")


@dataclass(frozen=True)
class ReportConfig:
    """What the report's figures show."""

    figure_variants: tuple[int, ...] = setting((0, 1, 2, 3), "Figure 1 shows these base models (those trained)")
    stage_figure_variant: int = setting(1, "Figures 2-4 show this base model's stages")


@dataclass(frozen=True)
class RunConfig:
    """One run's whole configuration, resolved once (see the module docstring)."""

    preset: str
    seed: int = setting(0, "one seed: one split, one set of initial weights, one augmentation")
    data: DataConfig = setting(DataConfig(), "the dataset")
    synth: SynthConfig = setting(SynthConfig(), "the embedded synthetic dataset")
    train: TrainConfig = setting(TrainConfig(), "training")
    ensemble: EnsembleConfig = setting(EnsembleConfig(), "the ensemble (notebook 04)")
    report: ReportConfig = setting(ReportConfig(), "the report's figures")
    beyond: BeyondConfig = setting(BeyondConfig(), "notebook 05: the winners' techniques, and Grad-CAM")
    description: str = setting("", "one line saying what the preset is for")
    output_dir: str | None = setting(None, "null: runs/<preset>")
    synthetic: bool = setting(True, "derived: the data are the embedded synthetic dataset", derived=True)

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
    def training_seeds(self) -> tuple[int, ...]:
        """The training seeds of every model: ``seed``, ``seed + 1``, ... (``train.seeds`` of them); the split
        keeps ``seed``."""
        return tuple(self.seed + r for r in range(self.train.seeds))

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
    shift = f"-shift{synth.test_prior_shift:g}" if synth.test_prior_shift else ""
    return DATA_ROOT / f"synthetic-{synth.n_train}x{synth.size}px-test{synth.n_test}-seed{synth.seed}{shift}"
