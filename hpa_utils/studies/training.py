"""The training studies: the base models (notebook 02) and their fine-tuning stages (notebook 03).

Each study takes the run's configuration, trains what is not trained yet (a finished model with the
same settings is skipped, an interrupted one resumes), writes its tables under ``results/`` and
returns a typed result that the notebook shows and plots.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hpa_utils.config.run_config import RunConfig, RunPaths
from hpa_utils.config.stages import CONTROL, STAGE_ORDER, STAGES
from hpa_utils.config.techniques import SWITCHES
from hpa_utils.io import save_table, write_json_atomic
from hpa_utils.studies.tables import SINGLE, TABLES
from hpa_utils.training.cluster import ray_session, run_jobs_on_ray
from hpa_utils.training.device import detect_device
from hpa_utils.training.executor import plan_processes, run_jobs
from hpa_utils.training.plan import Estimate, model_jobs, work_plan
from hpa_utils.training.settings import TrainSettings

if TYPE_CHECKING:  # the type only: the batches import Keras
    from hpa_utils.training.batches import TrainingData

#: The report's input size, at which the layer table and the variants' parameter counts are given.
REPORT_INPUT_SHAPE = (256, 256, 4)


def technique_settings(config: RunConfig) -> dict:
    """The run's ``train`` technique switches (loss, weight averaging, oversampling) as TrainSettings keyword
    arguments (both inherit :class:`~hpa_utils.config.techniques.TechniqueSwitches`)."""
    return {key: getattr(config.train, key) for key in SWITCHES}


def base_settings(config: RunConfig) -> TrainSettings:
    """The TrainSettings of the run's base models."""
    return TrainSettings(
        epochs=config.train.base.epochs,
        batch_size=config.train.batch_size,
        learning_rate=config.train.base.learning_rate,
        augment=config.train.augment,
        prior_bias=config.train.base.prior_bias,
        seed=config.seed,
        **technique_settings(config),
    )


def training_data(config: RunConfig) -> TrainingData:
    """The run's decoded images, labels and split (the split made by notebook 01, or made here)."""
    from hpa_utils.training.batches import load_training_data  # deferred: Keras, imgaug

    return load_training_data(
        config.data_dir,
        config.cache_dir,
        config.data.image_size,
        config.paths.split_file(config.seed, config.data.val_fraction),
        config.data.val_fraction,
        config.seed,
        config.workers,
    )


@dataclass
class ModelDescription:
    """The baseline's layer table and parameter counts, and the table of base variants (at 256 px)."""

    layers: pd.DataFrame
    parameters: dict
    variants: pd.DataFrame


def describe_models(config: RunConfig) -> ModelDescription:
    """The model as the report gives it (``results/model_table.*``, ``results/variants.csv``)."""
    from hpa_utils.training import models  # deferred: Keras

    results = config.paths.make().results
    reference = models.build_variant(0, REPORT_INPUT_SHAPE)
    description = ModelDescription(
        layers=models.model_summary_table(reference),
        parameters=models.parameter_counts(reference),
        variants=models.describe_variants(REPORT_INPUT_SHAPE),
    )
    save_table(description.layers, results / "model_table.csv")
    write_json_atomic(results / "model_table.json", description.parameters)
    save_table(description.variants, results / "variants.csv")
    return description


@dataclass
class BaseModels:
    """Notebook 02's result.

    Attributes:
        models: one row per trained base model of the run (``results/base_models.csv``): model,
            variant, variant_name, stage, epochs, val_macro_f1, best_val_macro_f1, best_epoch, train_seconds.
        figure_variants: the base variants Figure 1 shows (those of ``report.figure_variants`` trained).
        histories: model name -> per-epoch history, for the models Figure 1 shows (the run's seed).
        replicates: model name -> the histories of the same base variant's models of the other training seeds.
    """

    models: pd.DataFrame
    figure_variants: list[int]
    histories: dict[str, pd.DataFrame]
    replicates: dict[str, list[pd.DataFrame]]


def train_base_models(config: RunConfig, log: Callable[[str], None] = print) -> BaseModels:
    """Train every base variant of ``train.variants`` (notebook 02); records the augmentation they train with
    (``results/augmentation.json``, the report's "Augmentation" settings)."""
    # deferred: Keras, imgaug
    from hpa_utils.training.augment import Augmenter
    from hpa_utils.training.registry import base_jobs, base_name, load_history, models_table, shown_seed

    paths = config.paths.make()
    write_json_atomic(paths.results / "augmentation.json", Augmenter(enabled=config.train.augment).parameters())
    data = training_data(config)
    settings = base_settings(config)
    jobs = base_jobs(config.train.variants, data, settings, paths.models, paths.predictions, config.training_seeds)
    _train(config, jobs, log)
    table = run_models(models_table(paths.models), config)
    bases = table[table["stage"] == STAGE_ORDER[0]].reset_index(drop=True)
    _save_models(bases, paths, "base_models.csv")
    shown = [v for v in config.report.figure_variants if v in config.train.variants]
    seeds = config.training_seeds
    others = [s for s in seeds if s != config.seed]
    names = {v: base_name(v, shown_seed(config.seed, seeds)) for v in shown}  # the run's seed
    return BaseModels(
        models=bases,
        figure_variants=shown,
        histories={name: load_history(paths.models, name) for name in names.values()},
        replicates={
            names[v]: [load_history(paths.models, base_name(v, shown_seed(s, seeds))) for s in others] for v in shown
        },
    )


@dataclass
class FineTunedModels:
    """Notebook 03's result.

    Attributes:
        models: every model of the run, base and stages (``results/models.csv``), columns as
            :attr:`BaseModels.models`.
        scores: validation macro F1, base variants (rows) by stage (columns, in report order).
        figure_variant: the base variant whose stages the stage figures show.
        stage_histories: model kind in report order (``"base"``, ``"A"``, ``"B"``, ``"C"``) -> (model name,
            per-epoch history) of that variant: its base model, then each stage.
    """

    models: pd.DataFrame
    scores: pd.DataFrame
    figure_variant: int
    stage_histories: dict[str, tuple[str, pd.DataFrame]]


def fine_tune(config: RunConfig, log: Callable[[str], None] = print) -> FineTunedModels:
    """Train stages A, B and C of every base variant, each from its parent stage's model, and the control of
    each variant of ``train.stages.control`` (notebook 03)."""
    # deferred: Keras
    from hpa_utils.training.registry import control_jobs, load_history, models_table, shown_seed, stage_jobs, stage_name

    paths = config.paths.make()
    data = training_data(config)
    stage_settings = {stage.name: _stage_settings(config, config.train.stages.epochs[stage.name]) for stage in STAGES}
    seeds = config.training_seeds
    jobs = stage_jobs(config.train.variants, data, stage_settings, paths.models, paths.predictions, seeds)
    jobs += control_jobs(
        config.train.stages.control, data, control_settings(config), paths.models, paths.predictions, seeds
    )
    _train(config, jobs, log)
    table = run_models(models_table(paths.models), config)
    _save_models(table, paths, "models.csv")
    variants = list(config.train.variants)
    shown = config.report.stage_figure_variant if config.report.stage_figure_variant in variants else variants[0]
    scores = table.pivot_table(index="variant", columns="stage", values="val_macro_f1", aggfunc="mean")
    names = {kind: stage_name(shown, kind, shown_seed(config.seed, seeds)) for kind in STAGE_ORDER}
    return FineTunedModels(
        models=table,
        scores=scores[[s for s in STAGE_ORDER if s in scores.columns]],
        figure_variant=shown,
        stage_histories={stage: (name, load_history(paths.models, name)) for stage, name in names.items()},
    )


def _save_models(table: pd.DataFrame, paths: RunPaths, name: str) -> None:
    """Save a table of models as ``results/<name>``, each model's file named relative to the run's folder: the
    results name no folder of the machine, so two runs of one seed write the same bytes wherever they run."""
    local = [Path(os.path.relpath(path, paths.output_dir)).as_posix() for path in table["path"]]
    save_table(table.assign(path=local), paths.results / name)


def _stage_settings(config: RunConfig, epochs: int) -> TrainSettings:
    """The TrainSettings of a fine-tuning stage of ``epochs`` (its part is the stage's, set by the job)."""
    return TrainSettings(
        epochs=epochs,
        batch_size=config.train.batch_size,
        learning_rate=config.train.stages.learning_rate,
        augment=config.train.augment,
        seed=config.seed,
        **technique_settings(config),
    )


def control_settings(config: RunConfig) -> TrainSettings:
    """Finding 2's control: the stages' epochs together, at their learning rate (nothing frozen)."""
    return _stage_settings(config, sum(config.train.stages.epochs[stage.name] for stage in STAGES))


def _train(config: RunConfig, jobs: list, log: Callable[[str], None], plan: Callable | None = None) -> None:
    """Run the jobs side by side as ``train.processes`` says, with the estimate after the first epoch
    (``plan(gpus=..., processes=...)``: the work the estimate covers; default
    :func:`~hpa_utils.training.plan.work_plan`)."""
    plan = plan or (lambda **kw: work_plan(config, **kw))
    if config.train.executor == "ray":
        with ray_session(config.train.ray_address, log=log) as slots:
            estimate = Estimate(plan(processes=slots), log)
            run_jobs_on_ray(jobs, log=log, on_epoch=estimate)
        return
    gpus = len(detect_device().gpus)
    processes, threads = plan_processes(config.train.processes, len(jobs), gpus=gpus)
    estimate = Estimate(plan(gpus=gpus), log)
    run_jobs(jobs, processes=processes, threads=threads, log=log, on_epoch=estimate)


def run_models(table: pd.DataFrame, config: RunConfig) -> pd.DataFrame:
    """The rows of the run's own models: its variants, stages and training seeds (a run folder may hold models
    of other variants, or of another number of seeds)."""
    names = {job.name for job in model_jobs(config, 0, 0)}
    return table[table["model"].isin(names)].reset_index(drop=True)


def best_single_model(table: pd.DataFrame, config: RunConfig) -> pd.Series:
    """The run's best single model, one rule throughout the report: among the run seed's models of the variants
    and stages (not Finding 2's controls), the best by validation F1 at its own best global threshold, as
    notebook 04's comparison (``results/ensemble_comparison.csv``) scored it; before notebook 04 has run, the
    best by the validation F1 of training (threshold 0.5). Returns the model's row of ``table``."""
    rows = run_models(table, config)
    rows = rows[rows["stage"].astype(str) != CONTROL.name]
    if "seed" in rows.columns and rows["seed"].nunique() > 1:
        rows = rows[rows["seed"] == config.seed]
    path = config.paths.results / TABLES["ensemble_comparison"].file
    if path.is_file():
        comparison = pd.read_csv(path)
        if "seed" in comparison.columns:
            comparison = comparison[comparison["seed"] == config.seed]
        singles = comparison[(comparison["role"] == SINGLE) & comparison["name"].isin(rows["model"])]
        if not singles.empty:
            name = singles.loc[singles["val_f1"].idxmax(), "name"]
            return rows[rows["model"] == name].iloc[0]
    return rows.loc[rows["val_macro_f1"].idxmax()]
