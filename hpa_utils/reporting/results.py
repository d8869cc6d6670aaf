"""What the course report reads: one run's result files, and the original report's cited figures.

:func:`load_results` reads what the notebooks wrote under a run's output directory (``results/*.csv``,
``results/*.json``, ``figures/*.png``). Any result file may be missing (no public/private scores on real
Kaggle data, a run stopped early) or unreadable: it is then None, and listed as missing or in error.
No number of a run is typed in the report: the only literals are the original report's own figures
(:data:`ORIGINAL_REPORT`, :data:`CONTEXT_SCORES`), shown as citations.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from hpa_utils.io import to_number  # noqa: F401  (the report's number reader, used by facts and render)
from hpa_utils.original import CONTEXT_SCORES, ORIGINAL_REPORT  # noqa: F401  (cited by facts and render)
from hpa_utils.studies.beyond import BeyondSummary
from hpa_utils.studies.ensemble import EnsembleSummary
from hpa_utils.studies.tables import TABLES

#: The result tables the report reads, by key of :data:`hpa_utils.studies.tables.TABLES` (where each table's
#: file and columns are declared).
REPORT_TABLES = (
    "class_counts",
    "model_table",
    "variants",
    "models",
    "shift_sweep",
    "ensemble_comparison",
    "thresholds",
    "leaderboard",
    "ensemble_members",
    "beyond_ablation",
    "beyond_pointing",
)
#: Result tables, by key: path relative to the run's output directory.
TABLE_FILES = {key: f"results/{TABLES[key].file}" for key in REPORT_TABLES}
JSON_FILES = {
    "run": "results/run.json",
    "model_totals": "results/model_table.json",
    "ensemble": "results/ensemble.json",
    "findings": "results/findings.json",
    "augmentation": "results/augmentation.json",
    "beyond": "results/beyond.json",
    "config": "config.json",
}
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp")


def load_results(output_dir: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> dict:
    """Everything a run wrote that the report uses; what is absent is None (tables, dicts) or left out.

    Returns:
        dict with ``output_dir``; one DataFrame or None per key of :data:`TABLE_FILES`; one dict or None
        per key of :data:`JSON_FILES` (``ensemble``: the ensemble study's typed
        :class:`~hpa_utils.studies.ensemble.EnsembleSummary`, ``beyond`` notebook 05's
        :class:`~hpa_utils.studies.beyond.BeyondSummary`); ``figures`` (stem -> path of every image
        under ``figures/``, or under ``figures_dir`` when given); ``submission`` (path or None); ``missing``
        (relative paths not found) and ``errors`` (relative path -> why it could not be read).
    """
    out = Path(output_dir)
    results: dict = {"output_dir": out, "missing": [], "errors": {}}
    readers = [(key, rel, pd.read_csv) for key, rel in TABLE_FILES.items()]
    readers += [(key, rel, lambda p: json.loads(Path(p).read_text())) for key, rel in JSON_FILES.items()]
    for key, rel, read in readers:
        results[key] = None
        path = out / rel
        if not path.is_file():
            results["missing"].append(rel)
            continue
        try:
            value = read(path)
        except (
            ValueError,
            OSError,
            pd.errors.ParserError,
        ) as exc:  # JSONDecodeError, EmptyDataError: ValueError
            results["errors"][rel] = f"{type(exc).__name__}: {exc}"
            continue
        if rel.endswith(".json") and not isinstance(value, dict):
            results["errors"][rel] = "not a JSON object"
            continue
        results[key] = value
    figures_dir = Path(figures_dir) if figures_dir is not None else out / "figures"
    results["figures"] = (
        {p.stem: p for p in sorted(figures_dir.glob("*")) if p.suffix.lower() in FIGURE_SUFFIXES and p.is_file()}
        if figures_dir.is_dir()
        else {}
    )
    submission = out / "submission.csv"
    results["submission"] = submission if submission.is_file() else None
    _run_seed_rows(results)
    if results["ensemble"] is not None:  # the ensemble study's typed summary
        results["ensemble"] = EnsembleSummary.from_dict(results["ensemble"])
    if results["beyond"] is not None:  # notebook 05's typed summary
        results["beyond"] = BeyondSummary.from_dict(results["beyond"])
    return results


#: Tables that list every trained model: they keep every training seed's rows.
EVERY_SEED = ("models",)


def _run_seed_rows(results: dict) -> None:
    """A run of several training seeds: the tables of one predictor's choice (the ensemble's sweep, members,
    comparison and thresholds) keep the run's seed's rows, the one the submission comes from, and the whole table
    stays under ``<key>_all_seeds``; the models table keeps every seed; the findings carry every seed."""
    seed = (results.get("config") or {}).get("seed")
    for key in TABLE_FILES:
        if key in EVERY_SEED:
            continue
        table = results.get(key)
        if isinstance(table, pd.DataFrame) and "seed" in table.columns and table["seed"].nunique() > 1:
            results[f"{key}_all_seeds"] = table
            results[key] = table[table["seed"] == seed].reset_index(drop=True)


def has_columns(df: pd.DataFrame | None, *columns: str) -> bool:
    """Whether ``df`` was read, is not empty and has every one of ``columns``."""
    return df is not None and not df.empty and all(c in df.columns for c in columns)
