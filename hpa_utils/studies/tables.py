"""The result tables the studies write under a run's ``results/``, each declared with the kind of every column.

A table's number formats are declared here, beside the table, not guessed from column names: every column has
one kind of :data:`KINDS`, and :func:`format_value` writes a value of that kind as the report shows it.

- **A new table:** one :class:`Table` in :data:`TABLES` (its file under ``results/`` and its columns); the report
  reads it when its key is also in ``hpa_utils.reporting.results.REPORT_TABLES``.
- **A new column:** one entry in its table's ``columns``. A column the report shows but no table declares is
  an error in the tests (``render_html(..., strict=True)``) and shown as plain text, with a warning, otherwise.

Plain data and the standard library only (no pandas): the studies, the report and the notebooks import it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

#: The kinds of column, and how each is shown.
KINDS: Mapping[str, str] = MappingProxyType(
    {
        "text": "as written: names, labels, descriptions, paths",
        "score": "3 decimals (0.312): F1, thresholds, weights, shares, gaps, ratios",
        "signed": "3 decimals with a sign (+0.012, -0.045): differences from a baseline",
        "count": "a whole number with thousands separators (597,388): images, parameters, models",
        "seconds": "1 decimal with thousands separators (1,234.5): durations",
        "int": "a plain whole number (2018): class ids, variant numbers, epochs, sizes",
        "flag": "yes or no",
    }
)
#: What a missing value (empty cell, NaN) is shown as, whatever its kind.
MISSING = "—"


#: The ``role`` of each row of the comparison table (the report reads these, never the row's name): the single
#: models, the F1-weighted ensemble (``chosen``: its shift chosen by ``ensemble.shift``), the greedy ensemble
#: and equal weights over all models.
SINGLE, CHOSEN, GREEDY, EQUAL_ALL = "single", "chosen", "greedy", "equal_all"


@dataclass(frozen=True)
class Table:
    """One result table: its file under the run's ``results/`` and the kind (of :data:`KINDS`) of each column.

    Columns that only some runs write (public and private scores exist only with a solution file) are
    declared too; a run's table may have fewer columns than its declaration, never others.
    """

    file: str
    columns: Mapping[str, str]

    def __post_init__(self) -> None:
        unknown = {column: kind for column, kind in self.columns.items() if kind not in KINDS}
        if unknown:
            raise ValueError(f"{self.file}: unknown column kinds {unknown}; the kinds are {', '.join(KINDS)}")
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))

    def kind(self, column: str) -> str | None:
        """The declared kind of ``column``; None when the table does not declare it."""
        return self.columns.get(column)

    def undeclared(self, columns) -> list[str]:
        """The ones of ``columns`` this table does not declare, in their order."""
        return [column for column in columns if column not in self.columns]


def is_missing(value) -> bool:
    """Whether ``value`` is an empty cell: None, NaN (float or numpy), or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except (TypeError, ValueError):  # pandas' NA: its comparison has no truth value
        return True


def _flag(value) -> str:
    if isinstance(value, str):
        return "yes" if value.strip().lower() in ("true", "yes", "1") else "no"
    return "yes" if bool(value) else "no"


_FORMATS = {
    "score": lambda x: f"{float(x):.3f}",
    "signed": lambda x: f"{float(x):+.3f}",
    "count": lambda x: f"{round(float(x)):,}",
    "seconds": lambda x: f"{float(x):,.1f}",
    "int": lambda x: f"{round(float(x))}",
    "flag": _flag,
    "text": str,
}


def format_value(kind: str, value) -> str:
    """``value`` as a cell of a column of ``kind`` shows it (:data:`MISSING` when empty). A value that is not
    a number in a numeric column is shown as written rather than failing the report."""
    if kind not in KINDS:
        raise ValueError(f"unknown column kind {kind!r}; the kinds are {', '.join(KINDS)}")
    if is_missing(value):
        return MISSING
    try:
        return _FORMATS[kind](value)
    except (TypeError, ValueError, OverflowError):
        return str(value)


#: The columns of the trained models' table (training.registry.models_table): base_models.csv and models.csv.
MODEL_COLUMNS: Mapping[str, str] = {
    "model": "text",
    "variant": "int",
    "variant_name": "text",
    "stage": "text",
    "seed": "int",  # the training seed
    "epochs": "int",
    "val_macro_f1": "score",
    "best_val_macro_f1": "score",
    "best_epoch": "int",
    "train_seconds": "seconds",
    "path": "text",
}

#: Every result table, by key. Columns in the order the studies write them.
TABLES: Mapping[str, Table] = MappingProxyType(
    {
        # notebook 01 (studies.eda.explore); the report adds kaggle_share = kaggle_count / Kaggle's images
        "class_counts": Table(
            "class_counts.csv",
            {
                "class_id": "int",
                "class_name": "text",
                "count": "count",
                "share": "score",
                "kaggle_count": "count",
                "kaggle_scaled": "count",
                "kaggle_share": "score",
            },
        ),
        "split_balance": Table(
            "split_balance.csv",
            {
                "class_id": "int",
                "class_name": "text",
                "train": "count",
                "val": "count",
                "val_share": "score",
            },
        ),
        # notebook 02 (studies.training.describe_models): the baseline's layers and the base variants
        "model_table": Table(
            "model_table.csv",
            {
                "layer": "text",
                "type": "text",
                "output shape": "text",
                "params": "count",
            },
        ),
        "variants": Table(
            "variants.csv",
            {
                "variant": "int",
                "name": "text",
                "kernel size": "text",  # 3, or one per block: (5, 5, 3)
                "conv dropouts": "text",
                "dense dropouts": "text",
                "min input": "int",
                "params": "count",
                "trainable params": "count",
                "description": "text",
            },
        ),
        # notebooks 02 and 03 (studies.training): the base models, then every model of the run
        "base_models": Table("base_models.csv", MODEL_COLUMNS),
        "models": Table("models.csv", MODEL_COLUMNS),
        # notebook 04 (studies.ensemble); public_f1 and private_f1 only when the run has the test labels
        "shift_sweep": Table(
            "shift_sweep.csv",
            {
                "seed": "int",  # the training seed whose models made this row's ensemble
                "shift": "score",
                "n_models": "count",
                "threshold": "score",
                "val_f1": "score",
                "public_f1": "score",
                "private_f1": "score",
            },
        ),
        "ensemble_comparison": Table(
            "ensemble_comparison.csv",
            {
                "seed": "int",  # the training seed whose models made this row's ensemble
                "name": "text",
                "kind": "text",
                "role": "text",  # single / chosen (the F1-weighted ensemble) / greedy / equal_all
                "n_models": "count",
                "threshold": "score",
                "val_f1": "score",
                "public_f1": "score",
                "private_f1": "score",
                "submitted": "flag",  # the validation winner, written as submission.csv (runs after it was added)
            },
        ),
        "ensemble_members": Table(
            "ensemble_members.csv",
            {
                "seed": "int",  # the training seed whose models made this row's ensemble
                "model": "text",
                "variant": "int",  # its base variant: one member per variant (runs after that rule)
                "val_f1": "score",  # at its own fitted threshold, the comparison's rule: what chose it
                "val_f1_at_0.5": "score",  # at the training threshold: what its weight is computed from
                "weight": "score",
                "share": "score",
            },
        ),
        "thresholds": Table(
            "thresholds.csv",
            {
                "seed": "int",  # the training seed whose models made this row's ensemble
                "key": "text",
                "held_out": "text",
                "method": "text",
                "fit_f1": "score",
                "holdout_f1": "score",
                "gap": "score",
            },
        ),
        "leaderboard": Table(
            "leaderboard.csv",
            {
                "submission": "text",
                "description": "text",
                "threshold": "score",
                "public_f1": "score",
                "private_f1": "score",
            },
        ),
        # notebook 05 (studies.beyond.run_ablation); the public, private and test columns only with test labels
        "beyond_ablation": Table(
            "beyond_ablation.csv",
            {
                "key": "text",
                "technique": "text",
                "seeds": "count",  # the training seeds each row's models were trained with
                "model": "text",
                "tta": "text",
                "threshold_rule": "text",
                "train_seconds": "seconds",
                "images_per_epoch": "count",
                "source": "text",
                "val_f1": "score",
                "public_f1": "score",
                "private_f1": "score",
                "test_f1": "score",
                "d_val": "signed",
                "d_val_low": "signed",
                "d_val_high": "signed",
                "d_public": "signed",
                "d_public_low": "signed",
                "d_public_high": "signed",
                "d_private": "signed",
                "d_private_low": "signed",
                "d_private_high": "signed",
                "d_test": "signed",
                "d_test_low": "signed",
                "d_test_high": "signed",
                "verdict": "text",
                "sentence": "text",
            },
        ),
        # notebook 05's Grad-CAM; maps to peak_chance only on synthetic data (the pointing game needs the
        # patterns) and only for the classes the model predicts (val_predicted > 0); the baselines' columns
        # (lift_cellstain...) only in runs after the baselines were added
        "beyond_pointing": Table(
            "beyond_pointing.csv",
            {
                "class": "int",
                "name": "text",
                "val_images": "count",
                "val_f1": "score",
                "val_predicted": "count",  # validation images the model predicts the class on (threshold 0.5)
                "maps": "count",
                "mass_on_pattern": "score",
                "pattern_share": "score",
                "peak_on_pattern": "score",
                "lift": "score",
                "lift_cellstain": "score",  # the class-agnostic cell-stain map (red + yellow)
                "lift_green": "score",  # the green channel: ignores the class, sees every pattern
                "lift_vs_cellstain": "score",  # the pointing score: Grad-CAM's lift over the cell stains'
                "peak_cellstain": "score",
                "peak_green": "score",
                "peak_chance": "score",  # the uniform map's peak score: the pattern's mean share
            },
        ),
    }
)
