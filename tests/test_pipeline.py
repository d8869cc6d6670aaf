"""`hpa run` end to end with the smoke preset (synthetic data and the real sample), and notebook hygiene."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
import yaml

from hpa_utils.run.config import NOTEBOOKS_DIR, PRESETS_DIR, resolve_params
from hpa_utils.run.runner import NOTEBOOKS, NotebookFailed, run

EDA_FIGURES = [
    "eda_class_counts",
    "eda_labels_per_image",
    "eda_cooccurrence",
    "eda_montage_rgb",
    "eda_montage_channels",
    "eda_channel_stats",
    "eda_split_balance",
]
TRAINING_FIGURES = ["fig1_base_models", "fig2_stage_A", "fig3_stage_B", "fig4_stage_C", "base_val_f1", "models_val_f1"]
ENSEMBLE_FIGURES = ["ensemble_shift_sweep", "ensemble_comparison", "thresholds", "per_class_f1"]
TABLES = [
    "dataset.json",
    "class_counts.csv",
    "split_balance.csv",
    "model_table.csv",
    "model_table.json",
    "variants.csv",
    "base_models.csv",
    "models.csv",
    "shift_sweep.csv",
    "ensemble_comparison.csv",
    "thresholds.csv",
    "leaderboard.csv",
    "ensemble.json",
    "run.json",
]


def _errors(notebook: Path) -> list[str]:
    nb = nbformat.read(notebook, as_version=4)
    return [
        f"{output.get('ename')}: {output.get('evalue')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from hpa_utils.data.synth import generate_dataset

    base = tmp_path_factory.mktemp("smoke")
    data = base / "data"
    generate_dataset(data, n_train=160, n_test=40, size=128, seed=0)
    mp = pytest.MonkeyPatch()
    mp.setenv("HPA_CACHE_DIR", str(base / "cache"))
    lines: list[str] = []
    record = run("smoke", data_dir=data, output_dir=base / "out", log=lines.append)
    yield base / "out", record, lines, data
    mp.undo()


def test_smoke_run_executes_every_notebook_and_writes_figures_tables_submission_report(smoke_run):
    out, record, lines, _ = smoke_run
    for name in NOTEBOOKS:
        executed = out / "notebooks" / f"{name}.ipynb"
        assert executed.is_file() and _errors(executed) == []
    for figure in EDA_FIGURES + TRAINING_FIGURES + ENSEMBLE_FIGURES:
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000, figure
    for table in TABLES:
        assert (out / "results" / table).stat().st_size > 10, table
    models = (out / "results" / "models.csv").read_text().splitlines()
    assert len(models) == 1 + 2 * 4  # 2 base variants x (base + 3 stages)
    assert (out / "submission.csv").read_text().startswith("Id,Predicted\n")
    assert (out / "report" / "report.html").stat().st_size > 100_000
    assert record["preset"] == "smoke" and record["dataset"]["kind"] == "synthetic"
    assert any("01_eda: done" in line for line in lines)


def test_smoke_outputs_say_which_preset_made_them(smoke_run):
    out, *_ = smoke_run
    run_record = json.loads((out / "results" / "run.json").read_text())
    assert run_record["params"]["preset"] == "smoke"
    assert "smoke" in (out / "report" / "report.html").read_text()


def test_rerun_skips_every_notebook_and_force_is_available(smoke_run):
    out, _, _, data = smoke_run
    lines: list[str] = []
    run("smoke", data_dir=data, output_dir=out, log=lines.append)
    skipped = [line for line in lines if "up to date, skipped" in line]
    assert len(skipped) == len(NOTEBOOKS), lines


def test_changed_parameter_reruns_from_the_notebook_that_uses_it(smoke_run, tmp_path):
    out, _, _, data = smoke_run
    lines: list[str] = []
    run("smoke", data_dir=data, output_dir=out, overrides=["ensemble_top_k=3"], log=lines.append)
    assert any("04_ensemble: done" in line for line in lines)
    ensemble = json.loads((out / "results" / "ensemble.json").read_text())
    assert len(ensemble["selected"]) == 3


def test_failing_notebook_stops_the_run_with_its_error_and_keeps_the_executed_copy(smoke_run, tmp_path):
    _, _, _, data = smoke_run
    with pytest.raises(NotebookFailed, match="02_baseline.ipynb failed") as info:
        run("smoke", data_dir=data, output_dir=tmp_path / "bad", overrides=["variants=[99]"], log=lambda s: None)
    assert "Unknown model variant 99" in str(info.value)
    assert _errors(tmp_path / "bad" / "notebooks" / "02_baseline.ipynb")
    assert (tmp_path / "bad" / "results" / "class_counts.csv").is_file(), "01's results stay intact"
    assert not (tmp_path / "bad" / "notebooks" / ".02_baseline.done").exists()


def test_smoke_run_on_the_real_sample(real_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    run("smoke", data_dir=real_sample, output_dir=tmp_path / "out", log=lambda s: None)
    for name in NOTEBOOKS:
        assert _errors(tmp_path / "out" / "notebooks" / f"{name}.ipynb") == []
    dataset = json.loads((tmp_path / "out" / "results" / "dataset.json").read_text())
    assert dataset == {**dataset, "kind": "real", "n_train": 40, "image_size_source": "512x512"}
    assert (tmp_path / "out" / "figures" / "eda_montage_rgb.png").is_file()
    assert not (tmp_path / "out" / "submission.csv").exists(), "no test set, so no submission"


def test_unknown_override_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match="unknown parameter 'epochz'"):
        resolve_params("smoke", ["epochz=3"])


# ----------------------------------------------------------------------------- notebook hygiene


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_sources_have_no_outputs_and_open_with_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown", "a short introduction comes first"
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_parameter_defaults_equal_the_quick_preset(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    cell = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    defaults = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}
    quick = yaml.safe_load((PRESETS_DIR / "quick.yaml").read_text())
    assert defaults.pop("preset") == "quick"
    for key, value in defaults.items():
        assert quick[key] == value, f"{name}: default {key}={value!r} differs from quick.yaml's {quick[key]!r}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_stay_thin(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
            assert all(len(f.body) <= 5 for f in functions), "logic belongs in hpa_utils"
            assert "__file__" not in cell.source and "os.getcwd" not in cell.source


def test_run_on_an_invalid_dataset_stops_before_any_notebook_with_the_file_named(tmp_path):
    import subprocess
    import sys

    from conftest import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data", n=6, size=96)
    (data / "train" / "id003_green.png").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "hpa_utils", "run", "--preset", "smoke", "--data-dir", str(data),
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    assert "id003_green.png: channel file is missing" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "out" / "notebooks").glob("*.ipynb"))
