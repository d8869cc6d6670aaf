"""Notebook 05: beyond the original report. The competition winners' techniques, each alone and all
together, measured against the report's baseline on the same split and seed; and where the run's best
model looks (Grad-CAM), scored against where the synthetic generator drew each pattern.

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

Grad-CAM (:func:`run_gradcam`): the run's best model on validation; its per-class validation F1 picks the
classes it does best and worst on; maps of validation images carrying those classes are drawn over the
green channel. On synthetic data every map of every labelled validation image is scored by how much of
its mass falls where the generator drew the class's pattern (against the share of the image the pattern
covers, the mass a map spread evenly would put there) and whether its peak is on the pattern.

Files: ``beyond/models``, ``beyond/predictions``; ``results/beyond_ablation.csv``,
``results/beyond_pointing.csv``, ``results/beyond.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from hpa_utils.config.run_config import RunConfig
from hpa_utils.data.labels import NUM_CLASSES, class_name
from hpa_utils.evaluation import submission
from hpa_utils.evaluation.bootstrap import paired_f1_difference
from hpa_utils.evaluation.metrics import binarize, f1_per_class, macro_f1
from hpa_utils.evaluation.thresholds import best_global_threshold, label_ratio_thresholds
from hpa_utils.io import save_table, write_json_atomic
from hpa_utils.studies.training import _train, base_settings, training_data
from hpa_utils.training.executor import Job, plan_processes
from hpa_utils.training.plan import PlannedJob, WorkPlan
from hpa_utils.training.tta import combine

BASELINE, ALL = "baseline", "all"
#: Interval verdicts.
HELPS, HURTS, UNCLEAR = "helps", "hurts", "no clear difference"
#: The share of a pattern's peak above which a pixel counts as on the pattern (pointing game).
PATTERN_LEVEL = 0.2


@dataclass(frozen=True)
class Technique:
    """One technique of notebook 05.

    Attributes:
        key: its name in ``beyond.techniques``.
        label: how tables and the report name it.
        train: the :class:`~hpa_utils.training.settings.TrainSettings` switches it turns on (training techniques).
        tta: test-time augmentation it predicts with ("none", "mean", "max").
        label_ratio: thresholds by label ratio instead of the best global threshold on validation.
        source: who in the competition used it.
    """

    key: str
    label: str
    train: dict = field(default_factory=dict)
    tta: str = "none"
    label_ratio: bool = False
    source: str = ""


TECHNIQUES: dict[str, Technique] = {
    t.key: t
    for t in (
        Technique("focal", "focal loss", {"loss": "focal"}, source="3rd place (gamma 2); 1st place with Lovász loss"),
        Technique(
            "ema",
            "weight averaging (EMA)",
            {"ema": True},
            source="3rd place averaged its last checkpoints' weights (SWA); here Keras' moving average",
        ),
        Technique("oversample", "rare classes oversampled", {"oversample": True}, source="several top-10 teams"),
        Technique("tta_mean", "8x TTA (mean)", tta="mean", source="3rd place: mean over 8 flips and turns"),
        Technique("tta_max", "8x TTA (max)", tta="max", source="1st place: max over its test-time views"),
        Technique(
            "label_ratio",
            "thresholds by label ratio",
            label_ratio=True,
            source="1st and 3rd place: each class predicted at its training rate",
        ),
    )
}


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
    off = {"loss": "bce", "ema": False, "oversample": False}
    return dataclasses.replace(base_settings(config), **{**off, **technique.train})


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
    from hpa_utils.training.registry import base_name, train_base

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
    # one model per distinct training recipe; the baseline is the run's own model when the run trains as it
    baseline_settings = _settings_for(config, rows[0])
    models: dict[str, tuple[str, object]] = {}  # row key -> (model name, folder)
    jobs = []
    for row in rows:
        name = base_name(variant) if not row.train else f"{base_name(variant)}+{row.key}"
        if name in {n for n, _ in models.values()}:
            models[row.key] = next(v for v in models.values() if v[0] == name)
            continue
        settings = _settings_for(config, row)
        folder = paths.models if not row.train and base_settings(config) == baseline_settings else models_dir
        models[row.key] = (name, folder)
        jobs.append(Job(name, _train_named, (variant, data, settings, folder, predictions_dir, name)))
    splits = {"val": (data.images, data.val_indices)}
    if source.test_ids:
        test_images = open_cache(source, "test", config.data.image_size, config.cache_dir, workers=config.workers)
        splits["test"] = (test_images, np.arange(len(test_images)))
    n_test = len(splits["test"][1]) if "test" in splits else 0
    view_models = {models[r.key][0] for r in rows if r.tta != "none"}
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

    predictions: dict[str, dict[str, np.ndarray]] = {}
    rules: dict[str, str] = {}
    for row in rows:
        name = models[row.key][0]

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
            rules[row.key] = f"global {threshold:.2f} (best on validation)"
        predictions[row.key] = {"val": val_pred} | (
            {s: test_pred[m] for s, m in set_rows.items() if s != "val"} if labelled else {}
        )

    verdict_set = "test" if labelled else "val"
    records = []
    for row in rows:
        name, folder = models[row.key]
        record = {
            "key": row.key,
            "technique": row.label,
            "model": name,
            "tta": row.tta,
            "threshold_rule": rules[row.key],
            "train_seconds": (trained.get(name) or {}).get("train_seconds"),
            "images_per_epoch": per_epoch[name],
            "source": row.source,
        }
        for split, y in set_labels.items():
            record[f"{split}_f1"] = macro_f1(y, predictions[row.key][split])
        for split, y in set_labels.items():
            if row.key == BASELINE:
                record |= {f"d_{split}": 0.0, f"d_{split}_low": 0.0, f"d_{split}_high": 0.0}
                continue
            interval = paired_f1_difference(
                y, predictions[row.key][split], predictions[BASELINE][split], seed=config.seed
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

    return train_base(variant, data, settings, models_dir, predictions_dir, log, on_epoch, check_only, name=name)


def _job_settings(jobs: list, name: str):
    return next(job.args[2] for job in jobs if job.name == name)


def _sentence(row: Technique, interval, split: str, n: int) -> str:
    where = "held-out test images" if split == "test" else "validation images"
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


# --------------------------------------------------------------------------- Grad-CAM


@dataclass
class GradCam:
    """Grad-CAM of the run's best model.

    Attributes:
        model: the model's name; ``val_f1`` its validation macro F1 (threshold 0.5).
        per_class: per class: validation F1 of the model, validation images, and (synthetic data) the
            pointing game: mean map mass on the pattern, the pattern's mean share of the image (chance),
            the share of maps whose peak is on the pattern (``results/beyond_pointing.csv``).
        best, worst: the classes shown (best and worst validation F1 among classes with validation images).
        panels: the images shown: class, kind ("best"/"worst"), Id, the four channels (H, W, 4) uint8, the
            map (H, W), the pattern mask or None, the model's probability for the class.
        layer: what the maps weight (:data:`~hpa_utils.training.gradcam.MAPS_DESCRIPTION`).
        pointing: overall pointing-game figures, or None without ground truth.
    """

    model: str
    val_f1: float
    per_class: pd.DataFrame
    best: list[int]
    worst: list[int]
    panels: list[dict]
    layer: str
    pointing: dict | None = None


def pattern_mask(pattern: np.ndarray, size: int, level: float = PATTERN_LEVEL) -> np.ndarray:
    """Where a pattern (peak 1, at the generator's size) is drawn, at the model's input size: the pixels
    whose area-averaged intensity reaches ``level`` of the resized pattern's peak."""
    # deferred: OpenCV
    import cv2

    resized = cv2.resize(np.asarray(pattern, dtype=np.float32), (size, size), interpolation=cv2.INTER_AREA)
    peak = float(resized.max())
    return resized >= level * peak if peak > 0 else np.zeros((size, size), bool)


def pointing_scores(cam: np.ndarray, mask: np.ndarray) -> tuple[float, float, bool]:
    """(share of the map's mass on the mask, the mask's share of the image, whether the map's peak is on it).

    A map spread evenly puts the mask's share of the image on it; a map with no mass scores 0.
    """
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0)
    mask = np.asarray(mask, dtype=bool)
    total = cam.sum()
    mass = float((cam * mask).sum() / total) if total > 0 else 0.0
    hit = bool(mask.flat[int(np.argmax(cam))]) if total > 0 else False
    return mass, float(mask.mean()), hit


def run_gradcam(config: RunConfig, log: Callable[[str], None] = print, batch_size: int = 32) -> GradCam:
    """Grad-CAM of the run's best model on validation images (see the module docstring)."""
    # deferred: Keras, OpenCV
    from hpa_utils.backend import keras
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.data.synth.writer import pattern_maps
    from hpa_utils.training.gradcam import MAPS_DESCRIPTION, grad_cam
    from hpa_utils.training.predictions import predict_models
    from hpa_utils.training.registry import models_table

    paths = config.paths
    data = training_data(config)
    source = open_dataset(config.data_dir)
    table = models_table(paths.models)
    table = table[table["variant"].isin(config.train.variants)]
    best_row = table.loc[table["val_macro_f1"].idxmax()]
    name = str(best_row["model"])
    probs = predict_models(
        {name: best_row["path"]}, {"val": (data.images, data.val_indices)}, paths.predictions, log=log
    )
    p_val = probs["val"][name]
    y_val = data.y[data.val_indices].astype(bool)
    per_class_f1 = f1_per_class(y_val, binarize(p_val, 0.5))
    counts = y_val.sum(axis=0)
    present = np.flatnonzero(counts > 0)
    order = present[np.argsort(-per_class_f1[present], kind="stable")]
    k = min(config.beyond.gradcam_classes, len(order) // 2 or 1)
    best, worst = [int(c) for c in order[:k]], [int(c) for c in order[::-1][:k] if c not in order[:k]]

    model = keras.saving.load_model(best_row["path"], compile=False)
    val_ids = [source.train_ids[i] for i in data.val_indices]
    synthetic = (config.data_dir / "synth.json").is_file()
    # every (validation image, label) pair: one map each, scored on synthetic data
    pairs = [(row, c) for row in range(len(val_ids)) for c in np.flatnonzero(y_val[row])]
    shown_rows = {
        (kind, c): [int(r) for r in np.flatnonzero(y_val[:, c])[np.argsort(-p_val[y_val[:, c], c], kind="stable")]][
            : config.beyond.gradcam_images
        ]
        for kind, classes in (("best", best), ("worst", worst))
        for c in classes
    }
    wanted = {(r, c) for (_, c), rs in shown_rows.items() for r in rs}
    score_pairs = pairs if synthetic else sorted(wanted)
    cams: dict[tuple[int, int], np.ndarray] = {}
    records = []
    for start in range(0, len(score_pairs), batch_size):
        chunk = score_pairs[start : start + batch_size]
        images = np.asarray(data.images[[data.val_indices[r] for r, _ in chunk]], dtype=np.float32) / 255.0
        maps = grad_cam(model, images, [c for _, c in chunk])
        patterns = pattern_maps(config.data_dir, "train", sorted({val_ids[r] for r, _ in chunk})) if synthetic else {}
        for (r, c), cam in zip(chunk, maps):
            if (r, c) in wanted:
                cams[(r, c)] = cam
            if synthetic:
                mask = pattern_mask(patterns[val_ids[r]][int(c)], data.image_size)
                mass, chance, hit = pointing_scores(cam, mask)
                records.append({"class": int(c), "mass": mass, "chance": chance, "hit": hit})
    log(f"Grad-CAM: {len(score_pairs)} maps of {name}")

    per_class = pd.DataFrame(
        {
            "class": np.arange(NUM_CLASSES),
            "name": [class_name(c) for c in range(NUM_CLASSES)],
            "val_images": counts,
            "val_f1": per_class_f1,
        }
    )
    pointing = None
    if records:
        scores = pd.DataFrame(records)
        grouped = scores.groupby("class").agg(
            maps=("mass", "size"),
            mass_on_pattern=("mass", "mean"),
            pattern_share=("chance", "mean"),
            peak_on_pattern=("hit", "mean"),
        )
        per_class = per_class.join(grouped, on="class")
        per_class["lift"] = per_class["mass_on_pattern"] / per_class["pattern_share"]
        pointing = {
            "maps": int(len(scores)),
            "mass_on_pattern": float(scores["mass"].mean()),
            "pattern_share": float(scores["chance"].mean()),
            "peak_on_pattern": float(scores["hit"].mean()),
            "level": PATTERN_LEVEL,
        }
    save_table(per_class, paths.results / "beyond_pointing.csv")
    panels = []
    for (kind, c), rows_ in shown_rows.items():
        for r in rows_:
            mask = None
            if synthetic:
                mask = pattern_mask(
                    pattern_maps(config.data_dir, "train", [val_ids[r]])[val_ids[r]][c], data.image_size
                )
            panels.append(
                {
                    "class": c,
                    "kind": kind,
                    "id": val_ids[r],
                    "image": np.asarray(data.images[data.val_indices[r]]),
                    "cam": cams[(r, c)],
                    "mask": mask,
                    "probability": float(p_val[r, c]),
                }
            )
    return GradCam(
        model=name,
        val_f1=macro_f1(y_val, binarize(p_val, 0.5)),
        per_class=per_class,
        best=best,
        worst=worst,
        panels=panels,
        layer=MAPS_DESCRIPTION,
        pointing=pointing,
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
