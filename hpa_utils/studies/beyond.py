"""Notebook 05: beyond the original report. The competition winners' techniques
(:data:`~hpa_utils.config.techniques.TECHNIQUES`), each alone and all together, measured against the
report's baseline on the same split and seed.

The ablation (:func:`run_ablation`):

* the baseline is the report's base model ``v{beyond.variant}`` trained as ``train.base`` says (the run's
  own model when the run trains with every technique off, else trained again with them off);
* a training technique (focal loss, weight averaging, oversampling) is a model trained like the baseline
  with that one switch on, named ``v0+focal``...; an inference technique (test-time augmentation,
  label-ratio thresholds) is applied to the baseline's model; ``all`` is the model trained with every chosen
  training technique, predicted and thresholded with every chosen inference technique;
* every row is scored by one rule: its predictions thresholded at the best global threshold on
  validation, except the label-ratio rows, whose per-class thresholds match each class's training rate on
  the images thresholded; each score's difference from the baseline has a paired 95% bootstrap interval
  over images, and the verdict is read from the interval on the held-out test images (validation when
  there are no test labels).

Grad-CAM and its pointing game are :mod:`hpa_utils.studies.gradcam`; :func:`save_summary` writes what the
report states about both.

Files: ``beyond/models``, ``beyond/predictions``; ``results/beyond_ablation.csv``,
``results/beyond_pointing.csv``, ``results/beyond.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hpa_utils.config.run_config import RunConfig
from hpa_utils.config.techniques import SWITCHES_OFF, TECHNIQUES, Technique
from hpa_utils.evaluation import submission
from hpa_utils.evaluation.bootstrap import paired_f1_difference
from hpa_utils.evaluation.metrics import binarize, macro_f1
from hpa_utils.evaluation.thresholds import best_global_threshold, label_ratio_thresholds
from hpa_utils.io import save_table, write_json_atomic
from hpa_utils.studies.training import _train, base_settings, training_data
from hpa_utils.training.executor import Job, plan_processes
from hpa_utils.training.plan import PlannedJob, WorkPlan
from hpa_utils.training.tta import combine

if TYPE_CHECKING:  # the type only
    from hpa_utils.studies.gradcam import GradCam

BASELINE, ALL = "baseline", "all"
#: Interval verdicts.
HELPS, HURTS, UNCLEAR = "helps", "hurts", "no clear difference"


def combined(keys) -> Technique:
    """Every technique of ``keys`` at once (TTA: the mean if chosen, else the max)."""
    chosen = [TECHNIQUES[k] for k in keys]
    train: dict = {}
    for technique in chosen:
        train.update(technique.train)
    ttas = [t.tta for t in chosen if t.tta != "none"]
    return Technique(
        ALL,
        "all together",
        train,
        tta="mean" if "mean" in ttas else (ttas[0] if ttas else "none"),
        label_ratio=any(t.label_ratio for t in chosen),
        source="",
    )


def verdict(interval) -> str:
    """helps / hurts / no clear difference, from where a difference's 95% interval lies."""
    if interval.low > 0:
        return HELPS
    if interval.high < 0:
        return HURTS
    return UNCLEAR


@dataclass
class Ablation:
    """The ablation's result.

    Attributes:
        table: one row per predictor (``results/beyond_ablation.csv``): key, technique, F1 on each labelled
            set, the difference from the baseline with its 95% interval on each, the verdict and the set it
            is read from, the threshold rule, the model and its training time.
        sets: labelled set -> number of images.
        verdict_set: the set the verdicts are read from ("test" or "val").
        models: the models trained (name -> summary).
    """

    table: pd.DataFrame
    sets: dict[str, int]
    verdict_set: str
    models: dict[str, dict]

    def sentences(self) -> list[str]:
        """One sentence per technique, its verdict from its interval."""
        return [row["sentence"] for _, row in self.table.iterrows() if row["key"] != BASELINE]

    @property
    def shown(self) -> pd.DataFrame:
        """The table as the notebook shows it: scores, differences with intervals, verdict, rule, seconds."""
        columns = ["technique", *[c for c in self.table.columns if c.endswith("_f1")]]
        for split in ("val", self.verdict_set):
            columns += [f"d_{split}", f"d_{split}_low", f"d_{split}_high"]
        columns += ["verdict", "threshold_rule", "train_seconds"]
        return self.table[list(dict.fromkeys(columns))].set_index("technique")

    @property
    def verdicts(self) -> pd.DataFrame:
        """Technique -> verdict and its sentence."""
        rows = self.table[self.table["key"] != BASELINE]
        return rows[["technique", "verdict", "sentence"]].set_index("technique")


def _settings_for(config: RunConfig, technique: Technique):
    """The baseline's TrainSettings (every technique off) with ``technique``'s switches on."""
    return dataclasses.replace(base_settings(config), **{**SWITCHES_OFF, **technique.train})


def images_per_epoch(data, settings) -> int:
    """Training images one epoch of ``settings`` sees (more than the training part when oversampling)."""
    # deferred: Keras
    from hpa_utils.training.batches import repeat_factor_rows

    if not settings.oversample:
        return len(data.train_indices)
    return len(repeat_factor_rows(data.y, data.train_indices, settings.oversample_threshold, settings.seed))


def _plan(config: RunConfig, jobs: list, data, n_test: int, views: int):
    """The estimate's work: the ablation's models left to train and the images left to predict."""
    planned = []
    for job in jobs:
        settings = job.args[2]
        if job.run(*job.args, log=lambda line: None, check_only=True) is not None:
            continue
        planned.append(PlannedJob(job.name, settings.epochs, images_per_epoch(data, settings), len(data.val_indices)))
    n_val = len(data.val_indices)
    predict = (len(jobs) * (n_val + n_test)) + views * 8 * (n_val + n_test)

    def plan(gpus: int = 0, processes: int | None = None) -> WorkPlan:
        if processes is None:
            processes, _ = plan_processes(config.train.processes, max(1, len(planned)), gpus=gpus)
        return WorkPlan(planned, predict, max(1, min(processes, max(1, len(planned)))))

    return plan


def run_ablation(config: RunConfig, log: Callable[[str], None] = print) -> Ablation:
    """The ablation of ``beyond.techniques`` on base variant ``beyond.variant`` (see the module docstring)."""
    # deferred: OpenCV, Keras
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.training.predictions import predict_models
    from hpa_utils.training.registry import shown_seed, train_base

    paths = config.paths.make()
    beyond_dir = paths.output_dir / "beyond"
    models_dir, predictions_dir = beyond_dir / "models", beyond_dir / "predictions"
    variant = config.beyond.variant
    keys = [k for k in TECHNIQUES if k in config.beyond.techniques]
    rows = [Technique(BASELINE, "baseline (the report's)"), *(TECHNIQUES[k] for k in keys)]
    if len(keys) > 1:
        rows.append(combined(keys))

    data = training_data(config)
    source = open_dataset(config.data_dir)
    # one model per distinct training recipe and training seed; the baseline is the run's own model when the
    # run trains as it
    baseline_settings = _settings_for(config, rows[0])
    seeds = config.training_seeds
    models: dict[tuple[str, int], tuple[str, object]] = {}  # (row key, seed) -> (model name, folder)
    jobs = []
    for seed in seeds:
        for row in rows:
            name = f"v{variant}" + (f"+{row.key}" if row.train else "")
            name += "" if shown_seed(seed, seeds) is None else f"-s{seed}"
            if name in {n for n, _ in models.values()}:
                models[row.key, seed] = next(v for v in models.values() if v[0] == name)
                continue
            settings = dataclasses.replace(_settings_for(config, row), seed=seed)
            folder = paths.models if not row.train and base_settings(config) == baseline_settings else models_dir
            models[row.key, seed] = (name, folder)
            jobs.append(Job(name, _train_named, (variant, data, settings, folder, predictions_dir, name)))
    splits = {"val": (data.images, data.val_indices)}
    if source.test_ids:
        test_images = open_cache(source, "test", config.data.image_size, config.cache_dir, workers=config.workers)
        splits["test"] = (test_images, np.arange(len(test_images)))
    n_test = len(splits["test"][1]) if "test" in splits else 0
    view_models = {models[r.key, seed][0] for r in rows if r.tta != "none" for seed in seeds}
    _train(config, jobs, log, plan=_plan(config, jobs, data, n_test, len(view_models)))

    trained, per_epoch = {}, {}
    for name, folder in set(models.values()):
        per_epoch[name] = images_per_epoch(data, _job_settings(jobs, name))  # more steps when oversampling
        trained[name] = train_base(
            variant, data, _job_settings(jobs, name), folder, log=lambda line: None, check_only=True, name=name
        )
    model_paths = {name: folder / f"{name}.keras" for name, folder in set(models.values())}
    plain = predict_models(model_paths, splits, predictions_dir, log=log)
    views = predict_models(
        {n: model_paths[n] for n in sorted(view_models)}, splits, predictions_dir, log=log, tta="views"
    )

    y_val = data.y[data.val_indices]
    rates = data.y[data.train_indices].mean(axis=0)
    labelled = source.solution.is_file() and bool(source.test_ids)
    y_test, usage = submission.solution_labels(source.solution, source.test_ids) if labelled else (None, None)
    set_rows = {"val": slice(None)}
    if labelled:
        set_rows |= {"public": usage == "Public", "private": usage == "Private", "test": slice(None)}
    set_labels = {"val": y_val} | ({s: y_test[m] for s, m in set_rows.items() if s != "val"} if labelled else {})

    predictions: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    rules: dict[str, str] = {}
    for row, seed in ((row, seed) for row in rows for seed in seeds):
        name = models[row.key, seed][0]

        def probabilities(split: str, name=name, row=row) -> np.ndarray:
            return plain[split][name] if row.tta == "none" else combine(views[split][name], row.tta)

        p_val = probabilities("val")
        p_test = probabilities("test") if labelled else None
        if row.label_ratio:
            val_pred = binarize(p_val, label_ratio_thresholds(p_val, rates))
            test_pred = binarize(p_test, label_ratio_thresholds(p_test, rates)) if labelled else None
            rules[row.key] = "label ratio (per class, on the images thresholded)"
        else:
            threshold, _ = best_global_threshold(y_val, p_val)
            val_pred = binarize(p_val, threshold)
            test_pred = binarize(p_test, threshold) if labelled else None
            if seed == config.seed:
                rules[row.key] = f"global {threshold:.2f} (best on validation)"
        predictions[row.key, seed] = {"val": val_pred} | (
            {s: test_pred[m] for s, m in set_rows.items() if s != "val"} if labelled else {}
        )

    verdict_set = "test" if labelled else "val"
    records = []
    for row in rows:
        name = models[row.key, config.seed][0]
        names = [models[row.key, seed][0] for seed in seeds]
        seconds = [(trained.get(n) or {}).get("train_seconds") for n in names]
        record = {
            "key": row.key,
            "technique": row.label,
            "model": name,
            "seeds": len(seeds),
            "tta": row.tta,
            "threshold_rule": rules[row.key],
            "train_seconds": float(np.mean(seconds)) if None not in seconds else None,  # per model
            "images_per_epoch": per_epoch[name],
            "source": row.source,
        }
        for split, y in set_labels.items():  # mean over the training seeds
            record[f"{split}_f1"] = float(np.mean([macro_f1(y, predictions[row.key, s][split]) for s in seeds]))
        for split, y in set_labels.items():
            if row.key == BASELINE:
                record |= {f"d_{split}": 0.0, f"d_{split}_low": 0.0, f"d_{split}_high": 0.0}
                continue
            interval = paired_f1_difference(
                y,
                [predictions[row.key, s][split] for s in seeds],
                [predictions[BASELINE, s][split] for s in seeds],
                seed=config.seed,
                groups=list(seeds),
            )
            record |= {
                f"d_{split}": interval.estimate,
                f"d_{split}_low": interval.low,
                f"d_{split}_high": interval.high,
            }
            if split == verdict_set:
                record["verdict"] = verdict(interval)
                record["sentence"] = _sentence(row, interval, split, len(y))
        records.append(record)
    table = pd.DataFrame(records)
    table.loc[table["key"] == BASELINE, ["verdict", "sentence"]] = ["", ""]
    save_table(table, paths.results / "beyond_ablation.csv")
    return Ablation(
        table=table,
        sets={split: len(y) for split, y in set_labels.items()},
        verdict_set=verdict_set,
        models={name: summary for name, summary in trained.items() if summary},
    )


def _train_named(
    variant, data, settings, models_dir, predictions_dir, name, log=print, on_epoch=None, check_only=False
):
    """A base model trained under its own name (a module-level function, so a worker process imports it)."""
    # deferred: Keras
    from hpa_utils.training.registry import train_base

    return train_base(variant, data, settings, models_dir, predictions_dir, name, log, on_epoch, check_only)


def _job_settings(jobs: list, name: str):
    return next(job.args[2] for job in jobs if job.name == name)


def _sentence(row: Technique, interval, split: str, n: int) -> str:
    where = "held-out test images" if split == "test" else "validation images"
    if interval.n_seeds > 1:
        where += f", {interval.n_seeds} training seeds"
    if interval.low == interval.high == interval.estimate == 0:
        return (
            f"{row.label[0].upper()}{row.label[1:]} changes no score: its thresholded predictions score as the "
            f"baseline's on every resample of the {n} {where} (difference 0), so this run cannot tell."
        )
    what = {HELPS: "helps", HURTS: "hurts", UNCLEAR: "makes no clear difference"}[verdict(interval)]
    return (
        f"{row.label[0].upper()}{row.label[1:]} {what}: macro F1 {interval.estimate:+.3f} against the baseline "
        f"(95% interval {interval.low:+.3f} to {interval.high:+.3f}, {n} {where})"
        + ("." if verdict(interval) != UNCLEAR else "; the interval includes 0, so this run cannot tell.")
    )


@dataclass
class BeyondSummary:
    """``results/beyond.json``: what the report states about notebook 05."""

    variant: int
    techniques: list[str]
    verdict_set: str
    sets: dict
    rows: list[dict]
    gradcam_model: str | None = None
    gradcam_layer: str | None = None
    gradcam_best: list[int] | None = None
    gradcam_worst: list[int] | None = None
    pointing: dict | None = None
    backend: str | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> BeyondSummary:
        return cls(**{name: raw.get(name) for name in cls.__dataclass_fields__})


def save_summary(config: RunConfig, ablation: Ablation, cam: GradCam) -> BeyondSummary:
    """Write ``results/beyond.json`` (the ablation's rows and the Grad-CAM facts)."""
    # deferred: Keras
    from hpa_utils.backend import keras

    summary = BeyondSummary(
        variant=config.beyond.variant,
        techniques=list(config.beyond.techniques),
        verdict_set=ablation.verdict_set,
        sets=ablation.sets,
        rows=ablation.table.replace({np.nan: None}).to_dict("records"),
        gradcam_model=cam.model,
        gradcam_layer=cam.layer,
        gradcam_best=cam.best,
        gradcam_worst=cam.worst,
        pointing=cam.pointing,
        backend=keras.backend.backend(),
    )
    write_json_atomic(config.paths.results / "beyond.json", asdict(summary))
    return summary
