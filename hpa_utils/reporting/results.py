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
from hpa_utils.studies.ensemble import EnsembleSummary

#: Result tables, by key: path relative to the run's output directory.
TABLE_FILES = {
    "class_counts": "results/class_counts.csv",
    "model_table": "results/model_table.csv",
    "variants": "results/variants.csv",
    "models": "results/models.csv",
    "shift_sweep": "results/shift_sweep.csv",
    "ensemble_comparison": "results/ensemble_comparison.csv",
    "thresholds": "results/thresholds.csv",
    "leaderboard": "results/leaderboard.csv",
}
JSON_FILES = {
    "run": "results/run.json",
    "model_totals": "results/model_table.json",
    "ensemble": "results/ensemble.json",
    "config": "config.json",
}
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp")

#: Cited facts of the original report (SPEC.md, "What the report did"): shown labelled as the original's.
ORIGINAL_REPORT = {
    "base_models": 8,
    "base_epochs": 40,
    "base_val_f1": (0.30, 0.35),
    "finetuned_models": 24,
    "stage_epochs": {"A": 10, "B": 4, "C": 2},
    "finetuned_val_f1": (0.42, 0.47),
    "ensemble_members": "models 0, 1, 2, 3, 4 and 6",
    "n_members": 6,
    "shift": 0.34,
    "public": 0.448,
    "private": 0.423,
    "shift_pair": (0.34, 0.36),
    "shift_pair_public_diff": 0.02,
    "all_models": 32,
    "all_equal_public": 0.428,
    "all_equal_private": 0.428,
    "params": 597388,
    "trainable": 595268,
    "non_trainable": 2120,
}

#: Cited scores of other entries (SPEC.md, "how far others got"), for context in the Discussion.
CONTEXT_SCORES = {"haltuf_cnn": 0.328, "haltuf_gapnet": 0.385, "first_place": 0.565}


def load_results(output_dir: str | os.PathLike) -> dict:
    """Everything a run wrote that the report uses; what is absent is None (tables, dicts) or left out.

    Returns:
        dict with ``output_dir``; one DataFrame or None per key of :data:`TABLE_FILES`; one dict or None
        per key of :data:`JSON_FILES` (``ensemble``: the ensemble study's typed
        :class:`~hpa_utils.studies.ensemble.EnsembleSummary`); ``figures`` (stem -> path of every image
        under ``figures/``); ``submission`` (path or None); ``missing`` (relative paths not found) and
        ``errors`` (relative path -> why it could not be read).
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
    figures_dir = out / "figures"
    results["figures"] = (
        {p.stem: p for p in sorted(figures_dir.glob("*")) if p.suffix.lower() in FIGURE_SUFFIXES and p.is_file()}
        if figures_dir.is_dir()
        else {}
    )
    submission = out / "submission.csv"
    results["submission"] = submission if submission.is_file() else None
    if results["ensemble"] is not None:  # the ensemble study's typed summary
        results["ensemble"] = EnsembleSummary.from_dict(results["ensemble"])
    return results


def has_columns(df: pd.DataFrame | None, *columns: str) -> bool:
    """Whether ``df`` was read, is not empty and has every one of ``columns``."""
    return df is not None and not df.empty and all(c in df.columns for c in columns)
