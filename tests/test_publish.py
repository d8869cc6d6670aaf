"""The shipped report: a finished run's tables, figures and report published beside the code, the README's
block written from the same files, and `hpa report` re-rendering it without training."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from test_report import make_fake_run

from hpa_utils.run import publish


def test_publish_ships_tables_figures_report_and_the_readme_block(tmp_path):
    run = make_fake_run(tmp_path / "runs" / "standard")
    (run / "models").mkdir()
    (run / "models" / "v0.keras").write_bytes(b"model")
    shipped, figures, readme = tmp_path / "report" / "run", tmp_path / "figures", tmp_path / "README.md"
    readme.write_text(f"# title\n\n{publish.README_START}\nSTALE LINE\n{publish.README_END}\n\nafter\n")
    (figures).mkdir()
    (figures / "stale_figure.png").write_bytes(b"old")
    html = publish.publish(run, shipped, figures, readme)
    assert html == tmp_path / "report" / "report.html" and html.is_file()
    assert (shipped / "config.json").is_file() and (shipped / "results" / "models.csv").is_file()
    assert not list(shipped.rglob("*.keras")) and not (shipped / "submission.csv").exists()
    assert sorted(p.name for p in figures.glob("*.png")) == sorted(p.name for p in (run / "figures").glob("*.png"))
    text = readme.read_text()
    assert text.startswith("# title") and text.endswith("after\n") and "STALE LINE" not in text
    models = pd.read_csv(shipped / "results" / "models.csv")
    best = models.loc[models["val_macro_f1"].idxmax()]
    assert f"| {best['variant']} |" in text and f"{best['val_macro_f1']:.3f}" in text
    assert "The F1-weighted ensemble beats its members. | +0.021 [-0.010, +0.050] | " in text
    assert publish.readme_block(shipped) in text


def test_published_json_names_no_machine_path(tmp_path):
    run = make_fake_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["data"]["cache_dir"] = str(publish.PROJ_ROOT / ".cache" / "x-123")
    (run / "config.json").write_text(json.dumps(config))
    publish.publish(run, tmp_path / "r" / "run", tmp_path / "figures", tmp_path / "README.md")
    shipped = json.loads((tmp_path / "r" / "run" / "config.json").read_text())
    assert shipped["data"]["cache_dir"] == ".cache/x-123"


@pytest.mark.skipif(not (publish.SHIPPED_RUN / "results").is_dir(), reason="no shipped run in this checkout")
def test_the_readme_block_is_the_shipped_runs_tables():
    """README's numbers are read from report/run/results, the files the shipped report is rendered from."""
    text = publish.README.read_text()
    assert publish.readme_block() in text, "run `hpa publish` (or `make publish`) after changing the shipped run"


@pytest.mark.skipif(not (publish.SHIPPED_RUN / "results").is_dir(), reason="no shipped run in this checkout")
def test_make_report_rerenders_the_shipped_report_without_training(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    monkeypatch.setattr(publish, "SHIPPED_REPORT", target)
    assert publish.render_shipped() == target
    text = target.read_text()
    models = pd.read_csv(publish.SHIPPED_RUN / "results" / "models.csv")
    assert f"{int((models['stage'].astype(str) != 'ctl').sum())} trained models" in text
    committed = publish.REPORT_DIR / "report.html"
    assert text == committed.read_text(), "report/report.html is not what the committed tables render"


def test_hpa_report_without_a_shipped_run_says_what_to_do(tmp_path, monkeypatch):
    done = subprocess.run(
        [sys.executable, "-m", "hpa_utils", "report", "--output-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "no such run output directory" in done.stderr
