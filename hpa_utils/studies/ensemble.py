"""The ensemble study (notebook 04): every model's predictions, the F1-weighted ensemble with its
shift and threshold, the report's comparisons, the threshold study, the submission and the leaderboard.

Every choice (members, shift, threshold) is made on validation only; test labels (the synthetic
dataset's ``solution.csv``, split into Kaggle's public and private parts) are only used to score.
:func:`run_ensemble_study` writes the tables under ``results/`` and ``results/ensemble.json``, and
returns an :class:`EnsembleStudy`; :meth:`EnsembleSummary.from_dict` reads ``ensemble.json`` back for the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Callable

    from hpa_utils.run.config import RunConfig

#: The ``role`` of each row of the comparison table (the report reads these, never the row's name).
SINGLE, CHOSEN, EQUAL_ALL = "single", "chosen", "equal_all"
ENSEMBLE_NAMES = {CHOSEN: "weighted (chosen)", EQUAL_ALL: "equal weights (all models)"}
#: The shifts the report compared (its public score moved by 0.02 between them), marked in the sweep figure.
REPORT_SHIFTS = (0.34, 0.36)
TRAINING_THRESHOLD = 0.5  # the models' F1 during training, and the weights' F1


@dataclass
class EnsembleSummary:
    """The chosen ensemble (``results/ensemble.json``): what the report states about it."""

    selected: list[str]
    weights: dict[str, float]
    shift: float
    shift_setting: float | str
    threshold: float
    threshold_method: str
    val_f1: float | None
    public_f1: float | None
    private_f1: float | None
    held_out: str

    @classmethod
    def from_dict(cls, raw: dict) -> EnsembleSummary:
        """From ``ensemble.json``'s mapping; a field it lacks is None."""
        return cls(**{name: raw.get(name) for name in cls.__dataclass_fields__})


@dataclass
class EnsembleStudy:
    """Notebook 04's result.

    Attributes:
        scored_on: labelled set ("val", "public", "private") -> number of images.
        models: per model: val_f1 (threshold 0.5), selected, weight.
        sweep: the shift sweep over the chosen models (``results/shift_sweep.csv``).
        comparison: every single model and both ensembles on every labelled set, at the chosen
            threshold (``results/ensemble_comparison.csv``; ``role``: single / chosen / equal_all).
        thresholds: the threshold study (``results/thresholds.csv``; ``key``: fixed / global / per_class).
        per_class_f1: the chosen ensemble's F1 per class on validation; ``train_counts`` the training images
            per class.
        leaderboard: every submission written, with its public/private score when the labels are known.
        summary: the chosen ensemble (``results/ensemble.json``).
        submission: the run's ``submission.csv``, or None without a test set.
    """

    scored_on: dict[str, int]
    models: pd.DataFrame
    sweep: pd.DataFrame
    comparison: pd.DataFrame
    thresholds: pd.DataFrame
    per_class_f1: np.ndarray
    train_counts: np.ndarray
    leaderboard: pd.DataFrame
    summary: EnsembleSummary
    submission: Path | None

    @property
    def marked_shifts(self) -> tuple[float, ...]:
        """The shifts the sweep figure marks: the report's pair and the one chosen."""
        return (*REPORT_SHIFTS, self.summary.shift)


def run_ensemble_study(config: RunConfig, log: Callable[[str], None] = print) -> EnsembleStudy:
    """Notebook 04's study over the run's trained models (see the module docstring)."""
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.evaluation import ensemble, metrics, submission
    from hpa_utils.evaluation.thresholds import best_global_threshold, halves, threshold_study
    from hpa_utils.io import save_table, to_number, write_json_atomic
    from hpa_utils.studies.training import training_data
    from hpa_utils.training.predictions import predict_models
    from hpa_utils.training.registry import models_table

    paths = config.paths.make()
    settings = config.ensemble
    data = training_data(config)
    source = open_dataset(config.data_dir)
    table = models_table(paths.models)
    table = table[table["variant"].isin(config.train.variants)]
    splits = {"val": (data.images, data.val_indices)}
    if source.test_ids:
        test_images = open_cache(source, "test", config.data.image_size, config.cache_dir, workers=config.workers)
        splits["test"] = (test_images, np.arange(len(test_images)))
    probs = predict_models(dict(zip(table["model"], table["path"])), splits, paths.predictions, log=log)
    labelled = source.solution.is_file() and bool(source.test_ids)
    y_test, usage = submission.solution_labels(source.solution, source.test_ids) if labelled else (None, None)
    sets, labels = ensemble.evaluation_sets(probs, data.y[data.val_indices], y_test, usage)

    # members and weights: validation F1 at the training threshold, the k best, the shift
    val_f1 = ensemble.model_f1_scores(sets["val"], labels["val"], threshold=TRAINING_THRESHOLD)
    selected = ensemble.select_models(val_f1, k=settings.top_k)
    chosen_sets = {name: {m: sets[name][m] for m in selected} for name in sets}
    sweep = ensemble.shift_sweep(
        chosen_sets["val"],
        val_f1[selected],
        labels["val"],
        shifts=ensemble.sweep_shifts(val_f1[selected]),
        extra_sets={name: (chosen_sets[name], labels[name]) for name in sets if name != "val"},
    )
    shift, weights = ensemble.choose_weights(val_f1[selected], sweep, settings.shift)
    p_val = ensemble.weighted_mean(chosen_sets["val"], weights)
    if settings.threshold == "fit":
        threshold, _ = best_global_threshold(labels["val"], p_val)
        threshold_method = "best global on validation"
    else:
        threshold, threshold_method = float(settings.threshold), "fixed"
    save_table(sweep, paths.results / "shift_sweep.csv")

    # the report's comparison: single models, the weighted ensemble, all models with equal weights
    ensembles = {
        ENSEMBLE_NAMES[CHOSEN]: dict(weights),
        ENSEMBLE_NAMES[EQUAL_ALL]: {m: 1.0 for m in table["model"]},
    }
    comparison = ensemble.compare_models(sets, labels, ensembles, threshold=threshold)
    roles = {name: role for role, name in ENSEMBLE_NAMES.items()}
    comparison.insert(
        2,
        "role",
        [roles.get(n, SINGLE) if k == "ensemble" else SINGLE for n, k in zip(comparison["name"], comparison["kind"])],
    )
    save_table(comparison, paths.results / "ensemble_comparison.csv")

    # thresholds: fitted on validation, scored on held-out data (the private part, else half of validation)
    held_out = "private" if "private" in sets else "validation half"
    if "private" in sets:
        study = threshold_study(
            labels["val"], p_val, labels["private"], ensemble.weighted_mean(chosen_sets["private"], weights)
        )
    else:
        fit_rows, hold_rows = halves(len(p_val), config.seed)
        study = threshold_study(labels["val"][fit_rows], p_val[fit_rows], labels["val"][hold_rows], p_val[hold_rows])
    study.insert(1, "held_out", held_out)
    save_table(study.drop(columns="thresholds"), paths.results / "thresholds.csv")

    leaderboard = _submissions(config, source, probs, comparison, ensembles, threshold)
    save_table(leaderboard, paths.results / "leaderboard.csv")
    final = comparison.set_index("role").loc[CHOSEN]
    summary = EnsembleSummary(
        selected=list(selected),
        weights={m: float(w) for m, w in weights.items()},
        shift=shift,
        shift_setting=settings.shift,
        threshold=float(threshold),
        threshold_method=threshold_method,
        val_f1=to_number(final.get("val_f1")),
        public_f1=to_number(final.get("public_f1")),
        private_f1=to_number(final.get("private_f1")),
        held_out=held_out,
    )
    write_json_atomic(paths.results / "ensemble.json", asdict(summary))
    return EnsembleStudy(
        scored_on={name: len(y) for name, y in labels.items()},
        models=pd.DataFrame(
            {
                "val_f1": val_f1,
                "selected": val_f1.index.isin(selected),
                "weight": weights.reindex(val_f1.index).fillna(0.0),
            }
        ),
        sweep=sweep,
        comparison=comparison,
        thresholds=study.drop(columns="thresholds"),
        per_class_f1=metrics.f1_per_class(labels["val"], metrics.binarize(p_val, threshold)),
        train_counts=data.y[data.train_indices].sum(axis=0),
        leaderboard=leaderboard,
        summary=summary,
        submission=paths.submission if paths.submission.is_file() else None,
    )


def _submissions(config, source, probs, comparison, ensembles, threshold) -> pd.DataFrame:
    """Write every leaderboard entry's submission (the first is the run's ``submission.csv``) and score it."""
    from hpa_utils.evaluation import ensemble, submission

    if "test" not in probs:
        return pd.DataFrame(columns=["submission", "description", "public_f1", "private_f1"])
    paths = config.paths
    rows = []
    for stem, description, members in ensemble.leaderboard_entries(comparison, ensembles):
        path = paths.submission if stem == "submission" else paths.results / "submissions" / f"{stem}.csv"
        p_test = ensemble.weighted_mean({m: probs["test"][m] for m in members}, members)
        submission.make_submission(source.sample_submission, source.test_ids, p_test, threshold, path)
        scores = submission.score_submission(path, source.solution) if source.solution.is_file() else {}
        rows.append(
            {
                "submission": path.name,
                "description": description,
                "public_f1": scores.get("public"),
                "private_f1": scores.get("private"),
            }
        )
    return pd.DataFrame(rows)
