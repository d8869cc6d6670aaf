"""`hpa run` end to end with the smoke preset (synthetic data and the real sample), re-runs, Ctrl-C,
the plain `papermill` command, and notebook hygiene."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import psutil
import pytest
from PIL import Image

from hpa_utils.config.resolve import resolve_config
from hpa_utils.config.run_config import NOTEBOOKS_DIR
from hpa_utils.run.runner import NOTEBOOK_NAMES, NotebookFailed, fingerprints, run

EDA_FIGURES = [
    "eda_class_counts",
    "eda_labels_per_image",
    "eda_cooccurrence",
    "eda_montage_rgb",
    "eda_montage_channels",
    "eda_channel_stats",
    "eda_split_balance",
]
TRAINING_FIGURES = [
    "fig1_base_models",
    "fig2_stage_A",
    "fig3_stage_B",
    "fig4_stage_C",
    "stages_continuous",
    "base_val_f1",
    "models_val_f1",
]
ENSEMBLE_FIGURES = ["ensemble_shift_sweep", "ensemble_comparison", "thresholds", "per_class_f1"]
TABLES = [
    "dataset.json",
    "class_counts.csv",
    "split_balance.csv",
    "model_table.csv",
    "model_table.json",
    "variants.csv",
    "base_models.csv",
    "augmentation.json",
    "models.csv",
    "shift_sweep.csv",
    "ensemble_comparison.csv",
    "thresholds.csv",
    "leaderboard.csv",
    "ensemble.json",
    "ensemble_members.csv",
    "findings.json",
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


def _ran(lines: list[str]) -> list[str]:
    """The notebooks a run executed, from its log lines."""
    return [name for name in NOTEBOOK_NAMES if any(f"{name}: done" in line for line in lines)]


def test_smoke_run_executes_every_notebook_and_writes_figures_tables_submission_report(smoke_run):
    out, record, lines, _ = smoke_run
    for name in NOTEBOOK_NAMES:
        executed = out / "notebooks" / f"{name}.ipynb"
        assert executed.is_file() and _errors(executed) == []
    for figure in EDA_FIGURES + TRAINING_FIGURES + ENSEMBLE_FIGURES:
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000, figure
    for table in TABLES:
        assert (out / "results" / table).stat().st_size > 10, table
    models = (out / "results" / "models.csv").read_text().splitlines()
    assert len(models) == 1 + 2 * 4 + 1  # 2 base variants x (base + 3 stages), and the control of variant 0
    assert (out / "submission.csv").read_text().startswith("Id,Predicted\n")
    report = (out / "report" / "report.html").read_text()
    assert len(report) > 100_000
    # numbers the report takes from the studies' files: the augmentation 02 trained with, the bootstrap's resamples
    assert "scaling 0.9–1.1" in report and "(2,000 resamples)" in report
    assert record["preset"] == "smoke" and record["dataset"]["kind"] == "synthetic"  # its synth.json says so
    assert _ran(lines) == list(NOTEBOOK_NAMES)


def test_one_predictor_scores_the_same_in_every_table(smoke_run):
    """The comparison, the leaderboard (submissions as written and scored by `hpa score`), ensemble.json, the
    members table and models.csv agree on every predictor they share; the ensemble has two members or more."""
    out = smoke_run[0] / "results"
    comparison = pd.read_csv(out / "ensemble_comparison.csv").set_index("name")
    board = pd.read_csv(out / "leaderboard.csv")
    summary = json.loads((out / "ensemble.json").read_text())
    chosen = comparison[comparison["role"] == "chosen"].iloc[0]
    singles = comparison[comparison["role"] == "single"]
    best = singles["val_f1"].idxmax()
    submitted = comparison.index[comparison["submitted"].astype(bool)][0]
    ensembles = [name for name in comparison.index[comparison["kind"] == "ensemble"] if name != submitted]
    # the submitted predictor first (validation's choice), then every other ensemble, then the best single model
    expected = [comparison.loc[name] for name in [submitted, *ensembles, *([best] if best != submitted else [])]]
    assert len(board) == len(expected) and board["submission"].iloc[0] == "submission.csv"
    candidates = comparison.loc[[best, *comparison.index[comparison["kind"] == "ensemble"]], "val_f1"]
    assert comparison.loc[submitted, "val_f1"] == pytest.approx(candidates.max())
    for (_, row), want in zip(board.iterrows(), expected):
        assert row["threshold"] == pytest.approx(want["threshold"])
        assert row["public_f1"] == pytest.approx(want["public_f1"]) and row["private_f1"] == pytest.approx(
            want["private_f1"]
        )
    assert summary["public_f1"] == pytest.approx(chosen["public_f1"]) and summary["threshold"] == pytest.approx(
        chosen["threshold"]
    )
    assert sum(w > 0 for w in summary["weights"].values()) >= 2 and summary["n_members"] >= 2
    members = pd.read_csv(out / "ensemble_members.csv").set_index("model")
    models = pd.read_csv(out / "models.csv").set_index("model")
    for model, row in members.iterrows():
        assert row["val_f1_at_0.5"] == pytest.approx(models.loc[model, "val_macro_f1"])
    findings = json.loads((out / "findings.json").read_text())["findings"]
    assert len(findings) == 6 and {f["verdict"] for f in findings} <= {"reproduced", "not reproduced", "not testable"}


def test_executed_notebooks_show_every_figure_they_save(smoke_run):
    out, *_ = smoke_run
    for name, figures in (("01_eda", EDA_FIGURES), ("04_ensemble", ENSEMBLE_FIGURES)):
        nb = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(shown) == len(figures), name


def test_the_run_configuration_is_resolved_once_and_written_into_the_run(smoke_run):
    out, record, _, data = smoke_run
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "smoke" and saved["data"]["dir"] == str(data.resolve())
    assert saved == record["config"]
    assert "smoke" in (out / "report" / "report.html").read_text()


def test_figures_of_a_synthetic_run_say_synthetic_data(tmp_path, monkeypatch):
    """The notebooks open the run's configuration instead of resolving it again (which lost `synthetic`)."""
    from hpa_utils.run import open_run

    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    config = resolve_config("smoke", output_dir=tmp_path / "out")
    config.paths.make()
    config.save()
    opened = open_run("smoke", tmp_path / "out", log=lambda line: None)
    assert opened.config == config and opened.config.synthetic
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = opened.save_figure(fig, "check")
    assert "synthetic data" in Image.open(path).info["Source"]


def test_rerun_skips_every_notebook(smoke_run):
    out, _, _, data = smoke_run
    lines: list[str] = []
    run("smoke", data_dir=data, output_dir=out, log=lines.append, echo=False)
    skipped = [line for line in lines if "up to date, skipped" in line]
    assert len(skipped) == len(NOTEBOOK_NAMES), lines


def test_an_ensemble_setting_reruns_only_the_ensemble_notebook_and_the_explorer(smoke_run):
    out, _, _, data = smoke_run
    lines: list[str] = []
    run("smoke", data_dir=data, output_dir=out, overrides=["ensemble.top_k=3"], log=lines.append, echo=False)
    assert _ran(lines) == ["04_ensemble", "06_explore"], lines
    ensemble = json.loads((out / "results" / "ensemble.json").read_text())
    variants = {name.split("-")[0] for name in ensemble["selected"]}  # one member per base variant, 3 at most
    assert len(ensemble["selected"]) == len(variants) == min(3, len(resolve_config("smoke").train.variants))


def test_each_notebook_fingerprint_covers_only_the_sections_it_uses():
    base = fingerprints(resolve_config("smoke"))
    ensemble = fingerprints(resolve_config("smoke", ["ensemble.top_k=3"]))
    epochs = fingerprints(resolve_config("smoke", ["train.base.epochs=5"]))
    stage = fingerprints(resolve_config("smoke", ["train.stages.epochs.C=2"]))
    seed = fingerprints(resolve_config("smoke", ["seed=1"]))

    def changed(other):
        return [name for name in NOTEBOOK_NAMES if other[name] != base[name]]

    beyond = fingerprints(resolve_config("smoke", ["beyond.techniques=[focal]"]))
    loss = fingerprints(resolve_config("smoke", ["train.loss=focal"]))

    assert changed(ensemble) == ["04_ensemble", "06_explore"]
    assert changed(epochs) == ["02_baseline", "03_finetune", "04_ensemble", "05_beyond", "06_explore"]
    assert changed(stage) == ["03_finetune", "04_ensemble", "05_beyond", "06_explore"]
    assert changed(beyond) == ["05_beyond"]
    assert changed(loss) == ["02_baseline", "03_finetune", "04_ensemble", "05_beyond", "06_explore"]
    assert changed(seed) == list(NOTEBOOK_NAMES)


def test_failing_notebook_stops_the_run_with_its_error_and_keeps_the_executed_copy(smoke_run, tmp_path):
    import shutil

    smoke_out, _, _, data = smoke_run
    shutil.copytree(smoke_out, tmp_path / "bad")  # 01_eda is up to date there
    split = next((tmp_path / "bad" / "results").glob("split_seed*.csv"))
    split.unlink()
    split.mkdir()  # 02 cannot write the split it needs: it fails in a cell (every setting itself is valid)
    (split / "keep").write_text("")
    with pytest.raises(NotebookFailed, match="02_baseline.ipynb failed") as info:
        run(
            "smoke",
            data_dir=data,
            output_dir=tmp_path / "bad",
            overrides=["train.base.learning_rate=0.001", "beyond.run=false"],
            log=lambda s: None,
            echo=False,
        )
    assert "IsADirectoryError" in str(info.value) and split.name in str(info.value)
    assert _errors(tmp_path / "bad" / "notebooks" / "02_baseline.ipynb")
    assert (tmp_path / "bad" / "results" / "class_counts.csv").is_file(), "01's results stay intact"
    assert not (tmp_path / "bad" / "notebooks" / ".02_baseline.done").exists()


def test_smoke_run_on_the_real_sample(real_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    run(
        "smoke",
        data_dir=real_sample,
        output_dir=tmp_path / "out",
        # 05 with one technique of each kind (training, TTA, thresholds): the real data's path, at half the cost
        overrides=[
            "train.variants=[0]",
            "report.stage_figure_variant=0",
            "beyond.techniques=[focal, tta_mean, label_ratio]",
        ],
        log=lambda s: None,
        echo=False,
    )
    for name in NOTEBOOK_NAMES:
        assert _errors(tmp_path / "out" / "notebooks" / f"{name}.ipynb") == []
    dataset = json.loads((tmp_path / "out" / "results" / "dataset.json").read_text())
    assert dataset == {**dataset, "kind": "real", "n_train": 40, "image_size_source": "512x512"}
    assert (tmp_path / "out" / "figures" / "eda_montage_rgb.png").is_file()
    assert not (tmp_path / "out" / "submission.csv").exists(), "no test set, so no submission"
    beyond = json.loads((tmp_path / "out" / "results" / "beyond.json").read_text())
    assert beyond["verdict_set"] == "val" and beyond["pointing"] is None, "no test labels, no generator to replay"
    assert [row["key"] for row in beyond["rows"]] == ["baseline", "focal", "tta_mean", "label_ratio", "all"]


# ----------------------------------------------------------------------------- the other two doors


def test_the_kernel_the_notebooks_name_is_this_environments_python():
    """JupyterLab and papermill start the notebooks' `python3` kernel: it must exist on a fresh install."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert (
        spec.argv[0] in ("python", "python3", sys.executable)
        or Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
    )


def test_the_plain_papermill_command_runs_a_notebook_as_a_user_types_it(tmp_path):
    """`papermill notebooks/01_eda.ipynb out.ipynb -p preset smoke` on a fresh install: no kernel flag."""
    papermill = Path(sys.executable).with_name("papermill")
    env = {**os.environ, "HPA_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [
            str(papermill),
            str(NOTEBOOKS_DIR / "01_eda.ipynb"),
            str(tmp_path / "out.ipynb"),
            "-p",
            "preset",
            "smoke",
            "-p",
            "output_dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _errors(tmp_path / "out.ipynb") == []
    assert (tmp_path / "run" / "figures" / "eda_class_counts.png").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["synthetic"] is True


def test_ctrl_c_stops_a_run_within_seconds_and_leaves_no_kernel_and_nothing_half_written(smoke_run, tmp_path):
    import shutil

    smoke_out, _, _, data = smoke_run
    out = tmp_path / "out"
    shutil.copytree(smoke_out, out)  # 01_eda is up to date there: the run starts with 02_baseline
    smoke_data = data.parent
    env = {**os.environ, "HPA_CACHE_DIR": str(smoke_data / "cache"), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "hpa_utils",
        "run",
        "--preset",
        "smoke",
        "--data-dir",
        str(smoke_data / "data"),
        "--output-dir",
        str(out),
        "--no-report",
        "-p",
        "train.base.epochs=30",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    kernels: list[psutil.Process] = []
    deadline = time.monotonic() + 300
    for line in process.stdout:  # wait until the base models are training
        if "epoch 1/30" in line or time.monotonic() > deadline:
            break
    kernels = psutil.Process(process.pid).children(recursive=True)
    assert kernels, "a kernel runs the notebook"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    sent = time.monotonic()
    process.wait(timeout=60)
    stopped_after = time.monotonic() - sent
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    assert stopped_after < 20
    assert "interrupted in 02_baseline" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    time.sleep(1)
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "no orphan kernel"
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "nothing half-written"
    assert not (out / "notebooks" / ".02_baseline.done").exists()
    for summary in (out / "models").glob("*.json"):
        assert summary.with_suffix(".keras").is_file()
    assert (out / "notebooks" / ".01_eda.done").is_file(), "finished notebooks are kept"


# ----------------------------------------------------------------------------- notebook hygiene


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_sources_have_no_outputs_and_open_with_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown", "a short introduction comes first"
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)
    assert nb.metadata["kernelspec"]["name"] == "python3", "a kernel every environment with ipykernel has"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_parameters_are_the_preset_the_run_directory_and_overrides(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    cell = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    defaults = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}
    assert defaults == {"preset": "quick", "output_dir": None, "overrides": {}}
    opening = [cell for cell in nb.cells if cell.cell_type == "code"][1].source
    assert "open_run(preset, output_dir, overrides)" in opening


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebooks_only_narrate(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            nodes = list(ast.walk(ast.parse(cell.source)))
            assert not [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))], cell.source
            assert not [n for n in nodes if isinstance(n, (ast.For, ast.While, ast.comprehension))], cell.source
            assert "__file__" not in cell.source and "os.getcwd" not in cell.source


def test_run_on_an_invalid_dataset_stops_before_any_notebook_with_the_file_named(tmp_path):
    from conftest import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data", n=6, size=96)
    (data / "train" / "id003_green.png").unlink()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_utils",
            "run",
            "--preset",
            "smoke",
            "--data-dir",
            str(data),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "id003_green.png: channel file is missing" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "out" / "notebooks").glob("*.ipynb"))
