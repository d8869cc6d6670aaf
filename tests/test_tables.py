"""The result tables' declarations (hpa_utils.studies.tables): every column the report shows is declared with
its kind, each kind has one format, and the report formats its tables by them (no guessing from names)."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpa_utils.reporting.render import UndeclaredColumnError, render_html
from hpa_utils.reporting.results import REPORT_TABLES, TABLE_FILES, load_results
from hpa_utils.studies.tables import KINDS, MISSING, TABLES, Table, format_value

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_RUN = ROOT / "report" / "run"
SHIPPED_RESULTS = SHIPPED_RUN / "results"
#: Result CSVs that are not tables of results (the split: one Id per row, read by the training study).
NOT_TABLES = ("split_seed*.csv",)


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def _shipped_csvs() -> list[Path]:
    skipped = {p for pattern in NOT_TABLES for p in SHIPPED_RESULTS.glob(pattern)}
    return sorted(p for p in SHIPPED_RESULTS.glob("*.csv") if p not in skipped)


# --------------------------------------------------------------------------- the declarations


def test_the_shipped_run_has_its_result_tables():
    assert len(_shipped_csvs()) >= len(REPORT_TABLES), "report/run/results/ should hold the shipped run's tables"


@pytest.mark.parametrize("path", _shipped_csvs(), ids=lambda p: p.name)
def test_every_column_of_every_shipped_table_is_declared(path):
    by_file = {table.file: key for key, table in TABLES.items()}
    assert path.name in by_file, f"{path.name}: no declaration in hpa_utils.studies.tables.TABLES"
    table = TABLES[by_file[path.name]]
    assert table.undeclared(_header(path)) == [], f"{path.name}: declare these columns' kinds"


def test_every_table_the_report_reads_is_declared_and_shipped():
    assert set(REPORT_TABLES) <= set(TABLES)
    assert TABLE_FILES == {key: f"results/{TABLES[key].file}" for key in REPORT_TABLES}
    for key, rel in TABLE_FILES.items():
        assert (SHIPPED_RUN / rel).is_file(), f"{key}: {rel} is not in the shipped run"
    assert {"base_models", "split_balance"} <= set(TABLES)  # written, not shown: declared all the same


def test_table_files_are_unique_and_kinds_known():
    files = [table.file for table in TABLES.values()]
    assert len(files) == len(set(files))
    assert all(kind in KINDS for table in TABLES.values() for kind in table.columns.values())


def test_a_declaration_with_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"x\.csv: unknown column kinds \{'a': 'percent'\}"):
        Table("x.csv", {"a": "percent"})


def test_a_declaration_cannot_be_changed_in_place():
    with pytest.raises(TypeError):
        TABLES["models"].columns["seed"] = "int"  # type: ignore[index]


def test_the_declarations_import_nothing_heavy():
    probe = (
        "import sys, hpa_utils.studies.tables;"
        "print(sorted(m for m in ('pandas', 'numpy', 'keras', 'tensorflow', 'cv2', 'jinja2') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout


# --------------------------------------------------------------------------- one format per kind

FORMATS = [
    ("text", "v2-C", "v2-C"),
    ("text", "(5, 5, 3)", "(5, 5, 3)"),
    ("text", 3, "3"),
    ("score", 0.31234, "0.312"),
    ("score", -0.0067, "-0.007"),
    ("score", 1, "1.000"),
    ("signed", 0.0123, "+0.012"),
    ("signed", -0.0451, "-0.045"),
    ("signed", 0.0, "+0.000"),
    ("count", 597388, "597,388"),
    ("count", 222.0, "222"),
    ("count", 1244.046, "1,244"),
    ("count", np.int64(12885), "12,885"),
    ("seconds", 986.3, "986.3"),
    ("seconds", 12345.67, "12,345.7"),
    ("int", 2018, "2018"),
    ("int", 6.0, "6"),
    ("int", np.int64(27), "27"),
    ("flag", True, "yes"),
    ("flag", np.False_, "no"),
    ("flag", "False", "no"),
]


@pytest.mark.parametrize("kind, value, shown", FORMATS)
def test_each_kind_has_its_format(kind, value, shown):
    assert format_value(kind, value) == shown


def test_every_kind_has_a_format_test():
    assert {kind for kind, _, _ in FORMATS} == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("value", [None, math.nan, np.float64("nan"), pd.NA])
def test_a_missing_value_is_a_dash_whatever_its_kind(kind, value):
    assert format_value(kind, value) == MISSING


def test_a_value_that_is_not_a_number_is_shown_as_written():
    assert format_value("score", "n/a") == "n/a"


def test_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown column kind 'percent'"):
        format_value("percent", 0.5)


# --------------------------------------------------------------------------- the report formats by them


@pytest.fixture(scope="module")
def shipped_results() -> dict:
    return load_results(SHIPPED_RUN)


def test_the_shipped_run_renders_strictly(shipped_results):
    assert shipped_results["errors"] == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        html = render_html(shipped_results, strict=True)
    assert html.count('<table class="dataframe data') >= 8
    assert ">597,388<" in html  # params: a count, with separators
    model = shipped_results["models"].iloc[0]
    f1, seconds = float(model["val_macro_f1"]), float(model["train_seconds"])
    assert f">{f1:.3f}<" in html and f"{f1:.5f}" not in html  # validation F1: a score, 3 decimals
    assert f">{seconds:,.1f}<" in html  # train_seconds: 1 decimal
    largest = int(shipped_results["class_counts"]["kaggle_count"].max())
    assert largest >= 1000 and f">{largest:,}<" in html  # a count: thousands separators
    assert "<td>(5, 5, 3)</td>" in html  # variants' kernel size: text


def test_the_fake_run_of_the_report_tests_renders_strictly(tmp_path):
    from test_report import make_fake_run

    for name, scores in (("scored", True), ("unscored", False)):
        results = load_results(make_fake_run(tmp_path / name, kind="synthetic" if scores else "real", scores=scores))
        render_html(results, strict=True)


def test_a_format_follows_the_declaration_not_the_name(shipped_results):
    """A column named like a score but declared a count is shown as a count: nothing is guessed."""
    results = dict(shipped_results)
    results["models"] = shipped_results["models"].assign(epochs=shipped_results["models"]["epochs"] * 1000 + 7)
    html = render_html(results, strict=True)
    shown = int(results["models"]["epochs"].iloc[0])
    assert f">{shown:,}<" not in html and f">{shown}<" in html  # epochs: a plain integer, declared so


def test_an_undeclared_column_fails_in_strict_mode_and_shows_as_text_otherwise(shipped_results):
    results = dict(shipped_results)
    results["models"] = shipped_results["models"].assign(val_f1_mystery=0.123456)
    with pytest.raises(UndeclaredColumnError, match=r"models\.csv: column\(s\) 'val_f1_mystery' not declared"):
        render_html(results, strict=True)
    with pytest.warns(UserWarning, match="val_f1_mystery"):
        html = render_html(results)
    assert ">0.123456<" in html  # as written: not guessed from its name


def test_a_derived_frame_needs_its_schema(shipped_results):
    from hpa_utils.reporting.render import _Builder

    builder = _Builder(shipped_results, strict=True)
    frame = shipped_results["class_counts"]
    with pytest.raises(TypeError, match="needs its schema"):
        builder.table(frame, "caption")
    largest = int(frame["kaggle_count"].max())
    assert f">{largest:,}<" in builder.table(frame, "caption", schema="class_counts")
    assert f">{largest:,}<" in builder.table(frame, "caption", schema=TABLES["class_counts"])
    with pytest.raises(KeyError, match="no table 'nope'"):
        builder.table(frame, "caption", schema="nope")
