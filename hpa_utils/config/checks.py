"""Every value of a run's configuration checked at resolution, before anything is written or trained.

A bad value is a ValueError that names the key, the preset, what was given and what is allowed, so
``hpa run`` stops with one line instead of failing in a notebook an hour later. Checks that need the
dataset (the images' side, the number of training Ids) are :func:`check_against_dataset`, called once the
dataset is validated.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from hpa_utils.config.run_config import RunConfig
from hpa_utils.config.stages import STAGES
from hpa_utils.config.techniques import TECHNIQUE_NAMES
from hpa_utils.config.variants import VARIANTS, min_input_size

#: The largest image side accepted, in px (Kaggle's PNGs are 512 px, the HPA's full-size ones 2048-3072 px).
#: Checked from the PNG header before a file is decoded (:mod:`hpa_utils.data.dataset`), so a small file whose
#: header promises a huge image (a 30000-px PNG of zeros is under 1 MB) is refused instead of filling the
#: memory: a decoded 8192-px channel is 64 MiB. Also the bound of ``synth.size`` and ``data.image_size``.
MAX_IMAGE_SIDE = 8192
#: Seeds are what numpy's and TensorFlow's generators take: 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1
#: Learning rates above this diverge with Adam on this model; the shipped presets use 0.0005-0.002.
MAX_LEARNING_RATE = 1.0
#: Epochs of one model (a base model or a stage): the report's longest is 40.
MAX_EPOCHS = 1000
#: Input-pipeline threads and training processes: at most this many per core.
PER_CORE = 8


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def max_threads() -> int:
    """The most pipeline threads or training processes a configuration may ask for on this machine."""
    return max(16, PER_CORE * _cores())


def _error(config: RunConfig, key: str, rule: str, value) -> ValueError:
    return ValueError(f"preset {config.preset!r}: {key} must be {rule}, got {value!r}")


def _in_range(config: RunConfig, key: str, value, low, high, *, low_open=False, high_open=False) -> None:
    """``value`` finite and within [low, high] (an open end excludes the bound)."""
    number = float(value)
    ok = math.isfinite(number) and (number > low if low_open else number >= low)
    ok = ok and (number < high if high_open else number <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise _error(config, key, f"in {left}{low}, {high}{right}", value)


def check_values(config: RunConfig) -> None:
    """Every value of ``config`` in its range (see the module docstring).

    Raises:
        ValueError: the first bad value, naming its key and the preset.
    """
    stages = sorted(stage.name for stage in STAGES)
    if sorted(config.train.stages.epochs) != stages:
        raise ValueError(
            f"preset {config.preset!r}: train.stages.epochs must give the epochs of every stage "
            f"({', '.join(stages)}), got {', '.join(config.train.stages.epochs) or 'none'}"
        )
    for key, value in (("seed", config.seed), ("synth.seed", config.synth.seed)):
        _in_range(config, key, value, 0, MAX_SEED)
    counts = {
        "train.base.epochs": (config.train.base.epochs, 1, MAX_EPOCHS),
        **{f"train.stages.epochs.{n}": (e, 1, MAX_EPOCHS) for n, e in config.train.stages.epochs.items()},
        "train.batch_size": (config.train.batch_size, 1, 65536),
        "train.seeds": (config.train.seeds, 1, 100),
        "ensemble.top_k": (config.ensemble.top_k, 1, 10_000),
        "synth.n_train": (config.synth.n_train, 1, 10_000_000),
        "synth.n_test": (config.synth.n_test, 0, 10_000_000),
        "synth.size": (config.synth.size, 32, MAX_IMAGE_SIDE),
        "data.workers": (config.workers, 1, max_threads()),
        "beyond.gradcam_classes": (config.beyond.gradcam_classes, 1, 28),
        "beyond.gradcam_images": (config.beyond.gradcam_images, 1, 100),
    }
    if config.train.processes != "auto":
        counts["train.processes"] = (config.train.processes, 1, max_threads())
    for key, (value, low, high) in counts.items():
        if not low <= value <= high:
            raise _error(config, key, f"an integer from {low} to {high}", value)
    for key, value in (
        ("train.base.learning_rate", config.train.base.learning_rate),
        ("train.stages.learning_rate", config.train.stages.learning_rate),
    ):
        _in_range(config, key, value, 0, MAX_LEARNING_RATE, low_open=True)
    _in_range(config, "data.val_fraction", config.data.val_fraction, 0, 1, low_open=True, high_open=True)
    if config.ensemble.threshold != "fit":
        _in_range(config, "ensemble.threshold", config.ensemble.threshold, 0, 1, low_open=True, high_open=True)
    if config.ensemble.shift not in ("fit", "original"):
        _in_range(config, "ensemble.shift", config.ensemble.shift, 0, 1, high_open=True)
    _in_range(config, "synth.test_prior_shift", config.synth.test_prior_shift, 0, 1)
    _in_range(config, "train.oversample_threshold", config.train.oversample_threshold, 0, 1, low_open=True)
    _in_range(config, "train.ema_momentum", config.train.ema_momentum, 0, 1, low_open=True, high_open=True)
    _in_range(config, "train.focal_gamma", config.train.focal_gamma, 0, 10)
    _check_variants(config)
    _check_image_size(config)


def _check_variants(config: RunConfig) -> None:
    preset, variants = config.preset, config.train.variants
    known = range(len(VARIANTS))
    if not variants:
        raise ValueError(f"preset {preset!r}: train.variants must name at least one base variant")
    bad = [v for v in variants if v not in known]
    if bad or len(set(variants)) != len(variants):
        raise _error(config, "train.variants", f"distinct base variants from 0 to {len(VARIANTS) - 1}", list(variants))
    trained = ", ".join(map(str, variants))
    if config.report.stage_figure_variant not in variants:
        rule = f"one of train.variants ({trained})"
        raise _error(config, "report.stage_figure_variant", rule, config.report.stage_figure_variant)
    control = config.train.stages.control
    if any(v not in variants for v in control) or len(set(control)) != len(control):
        rule = f"distinct base variants of train.variants ({trained}), or []"
        raise _error(config, "train.stages.control", rule, list(control))
    unknown = [name for name in config.beyond.techniques if name not in TECHNIQUE_NAMES]
    if unknown or not config.beyond.techniques:
        raise ValueError(
            f"preset {preset!r}: beyond.techniques must list some of {', '.join(TECHNIQUE_NAMES)}, "
            f"got {', '.join(unknown) or 'none'}"
        )
    if config.beyond.run and config.beyond.variant not in variants:
        raise ValueError(
            f"preset {preset!r}: beyond.variant {config.beyond.variant} is not one of train.variants ({trained})"
        )


def smallest_input(config: RunConfig) -> int:
    """The smallest model input side every trained variant takes (:func:`min_input_size`)."""
    return max(min_input_size(VARIANTS[v].kernel_size) for v in config.train.variants)


def _check_image_size(config: RunConfig) -> None:
    size, low = config.data.image_size, smallest_input(config)
    high = config.synth.size if config.data.dir is None else MAX_IMAGE_SIDE
    source = "synth.size" if config.data.dir is None else "the largest image side the project reads"
    if not low <= size <= high:
        raise ValueError(
            f"preset {config.preset!r}: data.image_size must be from {low} (the smallest input of base variants "
            f"{', '.join(map(str, config.train.variants))}) to {high} ({source}), got {size!r}"
        )


def check_against_dataset(config: RunConfig, n_train: int, image_side: int) -> None:
    """What needs the dataset: the model input no larger than the images, a batch no larger than the
    training images (``n_train`` Ids less the validation share).

    Raises:
        ValueError: naming the key, the preset and the dataset's figure.
    """
    if config.data.image_size > image_side:
        raise ValueError(
            f"preset {config.preset!r}: data.image_size {config.data.image_size} is larger than the images of "
            f"{config.data_dir} ({image_side} px a side); the cache only shrinks images"
        )
    train_images = n_train - math.ceil(n_train * config.data.val_fraction)
    if config.train.batch_size > max(train_images, 1):
        raise ValueError(
            f"preset {config.preset!r}: train.batch_size {config.train.batch_size} is more than the "
            f"{train_images} training images of {config.data_dir} (after the validation share)"
        )


def check_outside(path: str | Path, data_dir: str | Path, what: str) -> None:
    """Refuse an output or cache folder inside a data directory (read-only input), before it is written.

    Raises:
        ValueError: naming both folders.
    """
    inner, data = Path(path).expanduser().resolve(), Path(data_dir).expanduser().resolve()
    if inner == data or inner.is_relative_to(data):
        raise ValueError(
            f"{what} {inner} is inside the data directory {data}, which is read-only input; choose a folder outside it"
        )
