"""The run's training and prediction work (:func:`work_plan`: what it has left), and how long it will take on
this machine.

The work is counted in "training-image units": one image through one training step of the whole model
is 1; a step that trains only the dense head still runs the CNN forward (about a third of a full step,
counted 0.4), and a prediction is a forward pass (1/3). The first finished epoch of a run gives the
seconds per unit on this machine, and the estimate is the work left times that, shared by the worker
processes. It is an estimate ("about"): later epochs skip the first one's start-up, stages differ.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hpa_utils.config.run_config import RunConfig
from hpa_utils.config.stages import CONTROL, STAGE_ORDER, STAGES
from hpa_utils.training.executor import plan_processes

#: Relative cost of one image in one training step, by the part of the model trained.
PART_COST = {"all": 1.0, "cnn": 1.0, "dnn": 0.4}
#: Relative cost of one image's forward pass (prediction, validation).
PREDICT_COST = 1 / 3


@dataclass(frozen=True)
class PlannedJob:
    """One model still to train: epochs over ``n_train`` images, each followed by ``n_val`` predictions."""

    name: str
    epochs: int
    n_train: int
    n_val: int
    part: str = "all"
    kind: str = ""  # the model kind: "base", a stage's letter, or the control's "ctl"

    @property
    def units(self) -> float:
        return self.epochs * (self.n_train * PART_COST.get(self.part, 1.0) + self.n_val * PREDICT_COST)


@dataclass
class WorkPlan:
    """What the run still has to compute: models to train and images to predict."""

    jobs: list[PlannedJob] = field(default_factory=list)
    predict_images: int = 0
    processes: int = 1

    @property
    def units(self) -> float:
        return sum(job.units for job in self.jobs) + self.predict_images * PREDICT_COST

    def seconds(self, seconds_per_unit: float) -> float:
        """Wall time of the whole plan at ``seconds_per_unit`` per worker, the jobs shared by the workers."""
        return self.units * seconds_per_unit / max(1, min(self.processes, max(len(self.jobs), 1)))


def seconds_per_unit(record: dict) -> float:
    """Seconds per training-image unit from one epoch's record (see :class:`~hpa_utils.training.fit.EpochEnd`)."""
    units = record["n_train"] * PART_COST.get(record.get("part", "all"), 1.0) + record["n_val"] * PREDICT_COST
    return float(record["seconds"]) / max(units, 1e-9)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Estimate:
    """An ``on_epoch`` callback: after the first finished epoch, says how long the plan will take, once."""

    def __init__(self, plan: WorkPlan, log: Callable[[str], None] = print, what: str = "training and prediction"):
        self.plan, self.log, self.what = plan, log, what
        self.done = False

    def __call__(self, record: dict) -> None:
        if self.done or not self.plan.jobs:
            return
        self.done = True
        total = self.plan.seconds(seconds_per_unit(record))
        remaining = max(total - float(record["seconds"]) / max(1, self.plan.processes), 0.0)
        finish = time.strftime("%H:%M", time.localtime(time.time() + remaining))
        workers = f"{self.plan.processes} worker processes" if self.plan.processes > 1 else "one process"
        self.log(
            f"estimate: {self.what} takes about {format_duration(total)} on this machine "
            f"({_models(len(self.plan.jobs))}, {workers}; from {record['name']}'s first epoch: "
            f"{record['n_train']} images in {record['seconds']:.0f} s); done around {finish}"
        )


def measure_seconds_per_unit(image_size: int, batch_size: int, steps: int = 3) -> float:
    """Seconds per training-image unit of the baseline at ``image_size`` on this machine, from a few steps.

    For an estimate before anything is trained (e.g. the warning before the ``full`` preset runs on a
    CPU): random images, one untimed warm-up step, then ``steps`` timed ones.
    """
    # deferred: Keras
    from hpa_utils.training.fit import compile_model
    from hpa_utils.training.models import build_variant

    model = compile_model(build_variant(0, (image_size, image_size, 4)), 1e-3)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, image_size, image_size, 4), dtype=np.float32)
    y = (rng.random((batch_size, 28)) < 0.1).astype(np.float32)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / (steps * batch_size)


def _models(count: int) -> str:
    return f"{count} model" if count == 1 else f"{count} models"


def model_jobs(config: RunConfig, n_train: int, n_val: int) -> list[PlannedJob]:
    """Every model the configuration trains: for each training seed, each base variant of ``train.variants``
    for ``train.base.epochs``, then its stages for ``train.stages.epochs`` (and Finding 2's control for those
    of ``train.stages.control``)."""
    # deferred: Keras (the registry)
    from hpa_utils.training.registry import shown_seed, stage_name

    jobs = []
    kinds = [(STAGE_ORDER[0], "all", config.train.base.epochs)]
    kinds += [(stage.name, stage.part, config.train.stages.epochs[stage.name]) for stage in STAGES]
    control = (CONTROL.name, CONTROL.part, sum(config.train.stages.epochs[stage.name] for stage in STAGES))
    for seed in config.training_seeds:
        shown = shown_seed(seed, config.training_seeds)
        for variant in config.train.variants:
            for kind, part, epochs in kinds + ([control] if variant in config.train.stages.control else []):
                jobs.append(PlannedJob(stage_name(variant, kind, shown), epochs, n_train, n_val, part, kind))
    return jobs


def _validation_size(config: RunConfig, n_all: int) -> int:
    """Validation images: counted in the run's saved split, or the share ``data.val_fraction`` before it exists."""
    split = config.paths.split_file(config.seed, config.data.val_fraction)
    try:
        with split.open(newline="") as handle:
            return sum(row.get("split") == "val" for row in csv.DictReader(handle))
    except (OSError, csv.Error):
        return int(round(n_all * config.data.val_fraction))


def work_plan(config: RunConfig, gpus: int = 0, processes: int | None = None) -> WorkPlan:
    """The training and prediction the run has left: its models without a finished summary, and every
    model's validation and test predictions not stored yet (notebook 04). ``processes``: jobs at once
    (default: as ``train.processes`` plans them on this machine)."""
    # deferred: OpenCV (the dataset's reader)
    from hpa_utils.data.dataset import open_dataset

    paths = config.paths
    if config.synthetic and not config.data_dir.is_dir():  # not generated yet: the preset says its size
        n_all, n_test = config.synth.n_train, config.synth.n_test
    else:
        dataset = open_dataset(config.data_dir)
        n_all, n_test = len(dataset.train_ids), len(dataset.test_ids)
    n_val = _validation_size(config, n_all)
    jobs = model_jobs(config, n_all - n_val, n_val)
    models = [job.name for job in jobs]
    controls = {job.name for job in jobs if job.kind == CONTROL.name}
    jobs = [job for job in jobs if not (paths.models / f"{job.name}.json").is_file()]
    stored = {p.stem for p in paths.predictions.glob("*.npy")} if paths.predictions.is_dir() else set()
    to_train = {job.name for job in jobs}  # training stores these models' validation predictions itself
    tta = "" if config.ensemble.tta == "none" else f"_tta-{config.ensemble.tta}"  # 8 views each
    views = 1 if not tta else 8
    predict = views * sum(
        n_val * (f"{m}_val{tta}" not in stored and (bool(tta) or m not in to_train))
        + n_test * (f"{m}_test{tta}" not in stored and m not in controls)  # a control is scored on validation
        for m in models
    )
    side_by_side = len(config.train.variants) * len(config.training_seeds)  # one stage's jobs at once
    if processes is None:
        processes, _ = plan_processes(config.train.processes, side_by_side, gpus=gpus)
    return WorkPlan(jobs, predict, min(processes, max(1, side_by_side)))
