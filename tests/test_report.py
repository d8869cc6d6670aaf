"""The HTML report: built from a fake run's result files, checked as text and in headless Chromium."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from hpa_utils.config.resolve import resolve_config
from hpa_utils.data.labels import CLASS_NAMES, N_TRAIN_KAGGLE, TRAIN_COUNTS
from hpa_utils.reporting import browser
from hpa_utils.reporting.render import APPENDIX_FIGURES, FIGURES, REPEATS, render_report
from hpa_utils.reporting.results import load_results
from hpa_utils.studies.findings import NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Finding

SECTION_IDS = (
    "introduction",
    "data",
    "model",
    "experiments",
    "findings",
    "beyond",
    "discussion",
    "conclusion",
    "references",
    "appendix-tables",
    "appendix",
)
EXTRA_FIGURE = "extra_diagnostic"


def _png(path: Path, seed: int, size=(160, 100)) -> None:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        draw.rectangle([x0, y0, x0 + 20, y0 + 15], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    image.save(path)


def make_fake_run(
    out_dir: Path, *, kind: str = "synthetic", scores: bool = True, beyond: bool = True, overrides: dict | None = None
) -> Path:
    """A small, plausible run output directory: every result file and figure the report reads.

    Args:
        out_dir: where to write (created).
        kind: "synthetic" or "real" (run.json's dataset kind).
        scores: whether public/private scores exist (False: as on real Kaggle data, no solution file).
        beyond: whether notebook 05 ran (``beyond.run``) and wrote its files.
        overrides: further run parameters (dotted keys).
    """
    results, figures = out_dir / "results", out_dir / "figures"
    results.mkdir(parents=True)
    figures.mkdir()
    config = resolve_config(
        "quick",
        {
            "data.image_size": 96,
            "train.base.epochs": 3,
            "train.base.learning_rate": 0.001,
            "train.stages.epochs": {"A": 2, "B": 1, "C": 1},
            "seed": 7,
            "train.variants": [0, 1, 2],
            "beyond.run": beyond,
            **(overrides or {}),
        },
        data_dir="/data/synthetic",
        output_dir=out_dir,
    )
    config.save()
    run = {
        "preset": "quick",
        "config": config.to_dict(),
        "dataset": {
            "kind": kind,
            "data_dir": "/data/synthetic",
            "n_train": 240,
            "n_test": 60,
            "image_size_source": "512x512",
            "n_val": 48,
        },
        "started": "2025-01-02T10:00:00",
        "finished": "2025-01-02T10:12:05",
        "seconds": 725.0,
        "notebooks": {"01_eda": 20.5, "02_train": 600.1, "03_ensemble": 104.4},
        "model_train_seconds": 150.0,
        "machine": "test box",
    }
    (results / "run.json").write_text(json.dumps(run))
    kaggle = np.array(TRAIN_COUNTS)
    pd.DataFrame(
        {
            "class_id": range(28),
            "class_name": CLASS_NAMES,
            "count": np.maximum(1, (kaggle * 240 / N_TRAIN_KAGGLE).round().astype(int)),
            "share": np.maximum(1, (kaggle * 240 / N_TRAIN_KAGGLE).round()) / 240,
            "kaggle_count": kaggle,
            "kaggle_scaled": kaggle * 240 / N_TRAIN_KAGGLE,
        }
    ).to_csv(results / "class_counts.csv", index=False)
    pd.DataFrame(
        {
            "layer": ["cnn_bn_input", "cnn_conv1", "dnn_out"],
            "type": ["BatchNormalization", "Conv2D", "Dense"],
            "output shape": ["(256, 256, 4)", "(254, 254, 32)", "(28,)"],
            "params": [16, 1184, 7196],
        }
    ).to_csv(results / "model_table.csv", index=False)
    (results / "model_table.json").write_text(json.dumps({"total": 597388, "trainable": 595268, "non_trainable": 2120}))
    augmentation = {"enabled": True, "translate": 0.1, "scale": [0.9, 1.1], "shear": 10.0, "noise_std": 0.02}
    (results / "augmentation.json").write_text(json.dumps({**augmentation, "flips": False, "mode": "constant"}))
    pd.DataFrame(
        {
            "variant": [0, 1, 2],
            "name": ["k3", "k3_light", "k3_heavy"],
            "kernel size": [3, 3, 3],
            "conv dropouts": ["(0.25, 0.25, 0.25)", "(0.1, 0.1, 0.1)", "(0.4, 0.4, 0.4)"],
            "dense dropouts": ["(0.5, 0.1)", "(0.25, 0.1)", "(0.5, 0.5)"],
            "min input": [76, 76, 76],
            "params": [597388, 597388, 597388],
            "trainable params": [595268, 595268, 595268],
            "description": ["the report's baseline", "less dropout", "more dropout"],
        }
    ).to_csv(results / "variants.csv", index=False)  # the columns of training.models.describe_variants
    rows = []
    for variant, name in enumerate(["k3", "k3_light", "k3_heavy"]):
        for step, stage in enumerate(["base", "A", "B", "C"]):
            model = f"v{variant}" if stage == "base" else f"v{variant}-{stage}"
            f1 = 0.20 + 0.03 * variant + 0.02 * step
            rows.append(
                {
                    "model": model,
                    "variant": variant,
                    "variant_name": name,
                    "stage": stage,
                    "epochs": [3, 2, 1, 1][step],
                    "val_macro_f1": f1,
                    "best_val_macro_f1": f1 + 0.004,
                    "best_epoch": 1,
                    "train_seconds": 12.5,
                    "path": f"/runs/quick/models/{model}.keras",
                }
            )
    pd.DataFrame(rows).to_csv(results / "models.csv", index=False)  # best: v2-C at 0.32
    selected = ["v2-C", "v2-B", "v1-C"]
    public, private = (0.301, 0.289) if scores else (None, None)
    (results / "ensemble.json").write_text(
        json.dumps(
            {
                "selected": selected,
                "weights": {"v2-C": 0.04, "v2-B": 0.02, "v1-C": 0.0},
                "shift": 0.28,
                "shift_setting": "fit",
                "threshold": 0.3,
                "threshold_method": "best global (fitted)",
                "val_f1": 0.341,
                "public_f1": public,
                "private_f1": private,
                "n_members": 2,
                "original_shift": {"shift": 0.34, "n_models": 0, "threshold": None, "val_f1": None},
                "scoring_rule": "an image with no class at or above the threshold is given its most probable class",
                "per_class_vs_global": {
                    "estimate": -0.02,
                    "low": -0.05,
                    "high": 0.01,
                    "n_images": 40,
                    "n_resamples": 2000,
                },
            }
        )
    )
    pd.DataFrame(
        {
            "model": selected,
            "val_f1_at_0.5": [0.32, 0.30, 0.29],
            "weight": [0.04, 0.02, 0.0],
            "share": [2 / 3, 1 / 3, 0],
        }
    ).to_csv(results / "ensemble_members.csv", index=False)
    retested = [
        Finding("fine_tuning", "Fine-tuning raises validation F1.", "cited", "C minus control", REPRODUCED,
                "mean gain +0.060: the interval excludes 0", 0.06, 0.03, 0.09, "validation images, paired",
                deciding=[{"what": "stage C minus control", "estimate": 0.06, "low": 0.03, "high": 0.09},
                          {"what": "stage C minus base model", "estimate": 0.08, "low": 0.05, "high": 0.11}]),
        Finding("ensemble_beats_members", "The F1-weighted ensemble beats its members.", "cited", "ens minus best",
                NOT_REPRODUCED, "gain over v2-C +0.021: the interval includes 0", 0.021, -0.01, 0.05, "images, paired",
                {"scored_on": "the labelled test images (public and private)", "best_member": "v2-C", "members": 2}),
        Finding("shift_moves_public", "A shift of 0.36 instead of 0.34 moves the public score by about 0.02.",
                "cited", "public change", NOT_TESTABLE, "no chosen model's validation F1 is above 0.36"),
    ]  # fmt: skip
    (results / "findings.json").write_text(json.dumps({"findings": [f.as_dict() for f in retested]}))
    shifts = np.round(np.arange(0.0, 0.42, 0.02), 2)
    sweep = pd.DataFrame({"shift": shifts, "n_models": 3, "val_f1": 0.30 + 0.1 * shifts - 0.123456 * (shifts > 0.38)})
    if scores:
        sweep["public_f1"], sweep["private_f1"] = sweep["val_f1"] - 0.02, sweep["val_f1"] - 0.03
    sweep.to_csv(results / "shift_sweep.csv", index=False)
    comparison = pd.DataFrame(
        {
            "name": ["v2-C", "v1-C", "weighted (chosen)", "equal weights (all models)"],
            "kind": ["single", "single", "ensemble", "ensemble"],
            "role": ["single", "single", "chosen", "equal_all"],
            "n_models": [1, 1, 2, 12],
            "threshold": [0.3, 0.25, 0.3, 0.2],
            "val_f1": [0.320, 0.290, 0.341, 0.310],
        }
    )
    if scores:
        comparison["public_f1"], comparison["private_f1"] = (
            [0.28, 0.27, 0.301, 0.29],
            [0.27, 0.26, 0.289, 0.30],
        )
    comparison.to_csv(results / "ensemble_comparison.csv", index=False)
    pd.DataFrame(
        {
            "key": ["fixed", "global", "per_class"],
            "method": ["fixed 0.5", "best global (fitted)", "per-class (fitted)"],
            "fit_f1": [0.30, 0.34, 0.45],
            "holdout_f1": [0.29, 0.33, 0.31],
        }
    ).assign(gap=lambda d: d.fit_f1 - d.holdout_f1).to_csv(results / "thresholds.csv", index=False)
    board = pd.DataFrame(
        {
            "submission": ["4channels_cnn_from_scratch.csv"],
            "description": ["weighted ensemble"],
            "public_f1": [public],
            "private_f1": [private],
        }
    )
    board.to_csv(results / "leaderboard.csv", index=False)
    for i, stem in enumerate([*FIGURES, *REPEATS, EXTRA_FIGURE]):
        _png(figures / f"{stem}.png", i)
    (out_dir / "submission.csv").write_text("Id,Predicted\nabc,0 5\n")
    _write_beyond(results)
    return out_dir


def _write_beyond(results: Path) -> None:
    """Notebook 05's files: an ablation of two techniques and all together, and the pointing game."""
    rows = []
    for key, label, val, test, low, high, verdict in (
        ("baseline", "baseline (the report's)", 0.200, 0.190, 0.0, 0.0, ""),
        ("focal", "focal loss", 0.230, 0.225, 0.012, 0.058, "helps"),
        ("tta_mean", "8x TTA (mean)", 0.205, 0.186, -0.019, 0.011, "no clear difference"),
        ("all", "all together", 0.150, 0.140, -0.080, -0.021, "hurts"),
    ):
        d = test - 0.190
        rows.append(
            {
                "key": key,
                "technique": label,
                "val_f1": val,
                "public_f1": test + 0.01,
                "private_f1": test - 0.005,
                "test_f1": test,
                **{f"d_{s}": (val - 0.2 if s == "val" else d) for s in ("val", "public", "private", "test")},
                **{f"d_{s}_low": low for s in ("val", "public", "private", "test")},
                **{f"d_{s}_high": high for s in ("val", "public", "private", "test")},
                "verdict": verdict,
                "sentence": f"{label} sentence {verdict}" if verdict else "",
                "images_per_epoch": 300 if key == "all" else 200,
            }
        )
    pd.DataFrame(rows).to_csv(results / "beyond_ablation.csv", index=False)
    summary = {
        "variant": 0,
        "techniques": ["focal", "tta_mean"],
        "verdict_set": "test",
        "sets": {"val": 48, "public": 18, "private": 42, "test": 60},
        "rows": rows,
        "gradcam_model": "v2-C",
        "gradcam_layer": "the maps of every global-average-pooled block, weighted by the gradient at its pool",
        "gradcam_best": [0, 25],
        "gradcam_worst": [16],
        "pointing": {"maps": 70, "mass_on_pattern": 0.42, "pattern_share": 0.21, "peak_on_pattern": 0.6, "level": 0.2},
        "backend": "tensorflow",
    }
    (results / "beyond.json").write_text(json.dumps(summary))
    pd.DataFrame(
        {
            "class": [0, 16, 25],
            "name": ["Nucleoplasm", "Cytokinetic bridge", "Cytosol"],
            "val_images": [20, 3, 12],
            "val_f1": [0.6, 0.0, 0.5],
            "maps": [20, 3, 12],
            "mass_on_pattern": [0.5, 0.1, 0.7],
            "pattern_share": [0.2, 0.05, 0.35],
            "peak_on_pattern": [0.7, 0.0, 0.9],
            "lift": [2.5, 2.0, 2.0],
        }
    ).to_csv(results / "beyond_pointing.csv", index=False)


def _text(html: str) -> str:
    """Visible text, tags removed and whitespace collapsed, for checking sentences."""
    body = re.sub(r"<style.*?</style>|<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def _plain(html: str) -> str:
    """Visible text as read: tags removed without a space for them (a link inside a sentence stays inside it)."""
    body = re.sub(r"<style.*?</style>|<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", "", body)))


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    return make_fake_run(tmp_path / "run")


def test_report_has_every_section_toc_and_header(fake_run):
    html = render_report(fake_run).read_text()
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in html
        assert f'href="#{section}"' in html
    text = _text(html)
    assert "synthetic" in text and "240 training Ids, 60 test Ids" in text
    assert "quick: 3 epochs per base model" in text and "2 min 30 s" in text
    assert "Base models 0, 1, 2 (cf. the original report's Figure 1" in html.replace("&#39;", "'")
    assert (
        "Base model 1 and its three stages on one epoch axis (cf. the original report's Figures 2–4)"
        in html.replace("&#39;", "'")
    )
    assert "The shift is 0.280: of the swept shifts that leave at least two models a positive weight" in text
    assert "scaling 0.9–1.1" in text and "shear up to ±10°" in text  # as the training study recorded them
    assert "(2,000 resamples)" in text  # the bootstrap's resamples, as the ensemble study recorded them
    assert "Rumetshofer" in text and "human-protein-atlas-image-classification" in html


def test_title_header_and_every_printed_page_say_synthetic_data(tmp_path):
    html = render_report(make_fake_run(tmp_path / "synthetic")).read_text()
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    header = _text(html.split('<header class="run"')[1].split("</header>")[0])
    assert (
        "synthetic data" in title and "synthetic data" in _text(html.split("</h1>")[0]) and "synthetic data" in header
    )
    assert re.search(r'@top-right \{ content: "[^"]*rebuilt on synthetic data', html)  # the PDF's running head
    html = render_report(make_fake_run(tmp_path / "real", kind="real", scores=False)).read_text()
    assert "synthetic data" not in html.split("<body>")[0] + _text(html.split("</header>")[0])


def test_every_figure_is_embedded_as_a_data_uri_with_alt_text(fake_run):
    html = render_report(fake_run).read_text()
    sources = re.findall(r'<img src="([^"]*)" alt="([^"]+)"', html)
    assert len(sources) == len(FIGURES) + 1 == html.count("<img")
    assert all(src.startswith("data:image/png;base64,") for src, _ in sources)
    assert not re.search(
        r'(src|href)="(?!data:|#|https://www\.kaggle\.com|https://openreview\.net|https://github\.com)', html
    )
    assert "<link" not in html and "<script src" not in html
    labels = re.findall(r'<span class="label">Figure (A?\d+)\.</span>', html)
    n_body = len(FIGURES) - len(APPENDIX_FIGURES)  # the body's figures, then the appendix's and the extra one
    assert labels == [str(i) for i in range(1, n_body + 1)] + [f"A{i}" for i in range(1, len(APPENDIX_FIGURES) + 2)]
    assert len(re.findall(r"<figure id=\"fig-[^\"]+\"><img", html)) == len(sources)
    appendix = html.split('<section id="appendix-tables">')[1]
    assert f'id="fig-{EXTRA_FIGURE}"' in appendix and all(f'id="fig-{stem}"' in appendix for stem in APPENDIX_FIGURES)


def test_a_figure_that_repeats_another_or_a_table_is_left_out_and_said_so(fake_run):
    html = render_report(fake_run).read_text()
    for stem in REPEATS:  # the run wrote them; the appendix names each and what shows the same
        assert f'id="fig-{stem}"' not in html
        assert f"<code>{stem}</code>" in html.split('<section id="appendix-tables">')[1]
    text = _plain(html)
    assert "fig2_stage_A (Figure 9)" in text  # the stage chain, in the body
    assert re.search(r"beyond_ablation \(Table \d+\)", text) and re.search(r"base_val_f1 \(Figure \d+\)", text)


def test_every_table_is_numbered_and_the_long_ones_are_in_the_appendix(fake_run):
    html = render_report(fake_run).read_text()
    body, appendix = html.split('<section id="appendix-tables">')
    labels = re.findall(
        r'<div class="table" id="table-[^"]+"><p class="caption"><span class="label">Table (A?\d+)\.', html
    )
    assert html.count("<table") == len(labels) >= 8  # every table has its numbered caption
    body_labels = [label for label in labels if not label.startswith("A")]
    assert body_labels == [str(i) for i in range(1, len(body_labels) + 1)]
    assert labels[len(body_labels) :] == [f"A{i}" for i in range(1, len(labels) - len(body_labels) + 1)]
    for key in ("class_counts", "model_table", "models", "ensemble_members", "ensemble_comparison", "shift_sweep"):
        assert f'id="table-{key}"' in appendix and f'id="table-{key}"' not in body
        assert f'href="#table-{key}"' in body  # each cited where its section needs it
    for table in re.findall(r"<table.*?</table>", body, flags=re.S):
        assert table.count("<tr") - 1 <= 12  # no long table in the body
    # a short table shows in the body, the same one longer in the appendix (where="auto")
    text = _text(body)
    assert "Pointing game per class" in text.split("6. Beyond the original")[1]
    pointing = fake_run / "results" / "beyond_pointing.csv"
    table = pd.read_csv(pointing)
    pd.concat([table] * 5).to_csv(pointing, index=False)
    body, appendix = render_report(fake_run).read_text().split('<section id="appendix-tables">')
    assert "Pointing game per class" not in body and "Pointing game per class" in appendix
    assert re.search(r'every class is in <a href="#table-beyond_pointing">Table A\d+</a>', body)


def test_tables_are_rendered_with_three_decimals(fake_run):
    html = render_report(fake_run).read_text()
    assert html.count('<table class="data') >= 8
    assert "0.123456" not in html and "0.196544" not in html  # shift_sweep value 0.32-0.123456
    assert ">0.197<" in html
    assert ">597,388<" in html
    assert "/runs/quick/models" not in html  # the models table drops the path column


def test_numbers_in_the_text_follow_models_csv_and_the_comparison(fake_run):
    text = _text(render_report(fake_run).read_text())
    best = "everywhere in this report), is v2-C with a macro F1 of 0.320"
    assert best in text and "lies within 0.200–0.260" in text
    path = fake_run / "results" / "ensemble_comparison.csv"  # one best model: by the comparison's rule
    comparison = pd.read_csv(path)
    comparison.loc[comparison.name == "v1-C", "val_f1"] = 0.777
    comparison.to_csv(path, index=False)
    text = _text(render_report(fake_run).read_text())
    assert "everywhere in this report), is v1-C with a macro F1 of 0.777" in text and best not in text
    (fake_run / "results" / "ensemble_comparison.csv").unlink()  # without it: the models' table at 0.5
    models_csv = fake_run / "results" / "models.csv"
    models = pd.read_csv(models_csv)
    models.loc[models.model == "v0-A", "val_macro_f1"] = 0.777
    models.to_csv(models_csv, index=False)
    text = _text(render_report(fake_run).read_text())
    assert "The best single model on validation is v0-A (k3, stage A) with a macro F1 of 0.777" in text


def test_ensemble_sentences_follow_the_comparison_and_the_findings(fake_run):
    text = _text(render_report(fake_run).read_text())
    assert "the ensemble scores 0.341 against 0.320 for the best single model, v2-C (+0.021)" in text
    assert "the difference is +0.021 (95% interval -0.010 to +0.050, paired bootstrap over images)" in text
    assert "“The F1-weighted ensemble beats its members” is not reproduced here" in text
    assert "2 models keep a positive weight (v2-C, v2-B" in text
    assert "no model of this run keeps a positive weight: every chosen model's validation F1 is below 0.34" in text
    path = fake_run / "results" / "ensemble_comparison.csv"
    table = pd.read_csv(path)
    table.loc[table.kind == "ensemble", "val_f1"] = [0.300, 0.310]
    table.to_csv(path, index=False)
    text = _text(render_report(fake_run).read_text())
    assert "the ensemble scores 0.300 against 0.320 for the best single model, v2-C (-0.020)" in text


def test_findings_section_shows_each_verdict_from_the_file(fake_run):
    text = _text(render_report(fake_run).read_text())
    section = text.split("5. Findings of the original, re-tested")[1].split("6. Beyond the original")[0]
    assert "reproduced: mean gain +0.060" in section and "not testable: no chosen model" in section
    # each row of the findings table: the deciding estimates and intervals (all of them), then the verdict
    assert (
        "1 Fine-tuning raises validation F1. stage C minus control: +0.060 [+0.030, +0.090] "
        "stage C minus base model: +0.080 [+0.050, +0.110] reproduced" in section
    )
    assert "2 The F1-weighted ensemble beats its members. +0.021 [-0.010, +0.050] not reproduced" in section
    assert "3 A shift of 0.36 instead of 0.34 moves the public score by about 0.02. — not testable" in section
    assert "In all: 1 reproduced, 1 not reproduced, 1 not testable." in section
    path = fake_run / "results" / "findings.json"
    raw = json.loads(path.read_text())
    raw["findings"][0]["verdict"] = NOT_REPRODUCED
    path.write_text(json.dumps(raw))
    text = _text(render_report(fake_run).read_text())
    assert "In all: 2 not reproduced, 1 not testable." in text


def _findings_rows(html: str) -> dict[str, tuple[str, str]]:
    """The findings table of Section 5: claim -> (its deciding numbers, its verdict), as shown."""
    table = html.split('id="table-findings"')[1].split("</table>")[0]
    rows = {}
    for row in re.findall(r"<tr><td>.*?</tr>", table, flags=re.S):
        cells = [_plain(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        rows[cells[1]] = (cells[2], cells[3])
    return rows


def _conclusion(html: str) -> str:
    return _plain(html.split('<section id="conclusion">')[1].split("</section>")[0])


def test_the_conclusion_states_the_verdicts_the_findings_section_gives(fake_run):
    path = fake_run / "results" / "findings.json"
    raw = json.loads(path.read_text())
    for verdicts in ([REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE], [NOT_REPRODUCED] * 3, [REPRODUCED] * 3):
        for finding, verdict in zip(raw["findings"], verdicts):
            finding["verdict"] = verdict
        path.write_text(json.dumps(raw))
        html = render_report(fake_run).read_text()
        rows, conclusion = _findings_rows(html), _conclusion(html)
        shown = {claim: verdict for claim, (_, verdict) in rows.items()}
        assert shown == {f["claim"]: f["verdict"] for f in raw["findings"]}  # the section shows the file's verdicts
        reproduced = [claim for claim, verdict in shown.items() if verdict == REPRODUCED]
        findings = conclusion.split("this run reproduces ")[1]
        assert findings.startswith(f"{len(reproduced)} of {len(shown)}")
        parts = {
            REPRODUCED: findings.split("Not reproduced:")[0].split("Not testable here:")[0],
            NOT_REPRODUCED: findings.split("Not reproduced:")[1].split("Not testable here:")[0]
            if "Not reproduced:" in findings
            else "",
            NOT_TESTABLE: findings.split("Not testable here:")[1] if "Not testable here:" in findings else "",
        }
        for number, (claim, verdict) in enumerate(shown.items(), start=1):
            # each claim in the conclusion under the verdict the section's table gives it, and only there
            phrase = f"{claim[:1].lower()}{claim[1:].rstrip('.')} (Finding {number}"
            assert [v for v, part in parts.items() if phrase in part] == [verdict], (claim, verdict)
    # the numbers the conclusion states for a finding are the section's deciding numbers
    estimate = _findings_rows(html)["The F1-weighted ensemble beats its members."][0]
    assert estimate == "+0.021 [-0.010, +0.050]"
    assert "it differs by +0.021 (95% interval -0.010 to +0.050" in _conclusion(html)


def test_the_conclusion_states_the_ablations_verdicts_its_table_gives(fake_run):
    path = fake_run / "results" / "beyond.json"
    summary = json.loads(path.read_text())
    for verdicts in (("helps", "no clear difference", "hurts"), ("hurts", "helps", "no clear difference")):
        for row, verdict in zip(summary["rows"][1:], verdicts):
            row["verdict"] = verdict
        path.write_text(json.dumps(summary))
        html = render_report(fake_run).read_text()
        table = html.split('id="table-ablation"')[1].split("</table>")[0]
        shown = {}
        for row in re.findall(r"<tr><td>.*?</tr>", table, flags=re.S):
            cells = [_plain(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
            if cells[-1]:
                shown[cells[0]] = cells[-1]
        assert shown == {row["technique"]: v for row, v in zip(summary["rows"][1:], verdicts)}
        said = _plain(html.split('id="conclusion-beyond"')[1].split("</p>")[0])
        section = _plain(html.split('id="beyond-ablation"')[1].split('id="beyond-gradcam"')[0])
        verdicts_said = said.split("the interval says ")[1].split(".")[0]
        assert f"the interval says {verdicts_said}." in section  # the section's answer, word for word
        helps = [t for t, v in shown.items() if v == "helps"]
        hurts = [t for t, v in shown.items() if v == "hurts"]
        unclear = [t for t, v in shown.items() if v not in ("helps", "hurts")]
        assert verdicts_said.startswith(f"{', '.join(helps)} {'helps' if len(helps) == 1 else 'help'}")
        assert (
            f"; {', '.join(hurts)} hurt" in verdicts_said
            and f"; for {', '.join(unclear)} it includes 0" in verdicts_said
        )


def test_shift_and_threshold_sentences_follow_their_files(fake_run):
    text = _text(render_report(fake_run).read_text())
    assert "On validation the best shift among all swept was 0.380" in text
    assert "the ensemble uses 0.280" in text
    assert "the per-class thresholds overfit the fit set" in text
    assert "per-class thresholds minus the best global threshold: -0.020 (95% interval -0.050 to +0.010" in text
    assert "the interval includes 0, so this run cannot tell the two apart" in text
    path = fake_run / "results" / "thresholds.csv"
    table = pd.read_csv(path)
    table["holdout_f1"] = table["fit_f1"] - 0.005
    table["gap"] = 0.005
    table.to_csv(path, index=False)
    text = _text(render_report(fake_run).read_text())
    assert "no sign here that the per-class thresholds overfit" in text


def test_discussion_cites_the_original_report_and_says_scores_are_not_comparable(fake_run):
    text = _text(render_report(fake_run).read_text())
    discussion = text.split("7. Discussion")[1].split("8. Conclusion")[0]
    assert "the original report (cited)" in discussion
    assert "0.300–0.350 after 40 epochs" in discussion and "0.448 / 0.423" in discussion
    assert "0.301 / 0.289" in discussion  # this run's, read from ensemble.json
    assert "These scores are not comparable" in discussion
    assert "behave the same way on any data" not in text


def test_the_report_reads_like_a_report_not_a_log(fake_run):
    html = render_report(fake_run).read_text()
    text = _text(html)
    header = text.split("Contents")[0]
    assert "/data/synthetic" not in header and str(fake_run) not in header and "data: synthetic" in header
    assert "training the 12 models took 2 min 30 s in all" in header
    assert "All parameters" not in header and "Appendix B: the run's parameters" in text
    assert "train.base.epochs" in text.split("Appendix B: the run's parameters")[-1]
    assert not re.search(r"\b1 models\b|\b1 members\b", text)
    assert len(re.findall(r"Figure 1\.", text)) == 1  # numbered once, by the HTML caption
    # no paragraph twice, no table restated as a list, no section called "Leaderboard"
    paragraphs = [_text(p).strip() for p in re.findall(r"<p[^>]*>(.*?)</p>", html, flags=re.S)]
    paragraphs = [p for p in paragraphs if len(p) > 40]
    assert len(paragraphs) == len(set(paragraphs))
    sentences = [s for p in paragraphs for s in re.split(r"(?<=\.) ", p) if len(s) > 60]
    assert len(sentences) == len(set(sentences)), [s for s in sentences if sentences.count(s) > 1]
    assert "<ul>" not in html.split('<section id="references">')[0] and "sentence helps" not in text
    assert not re.search(r"<h[23][^>]*>[^<]*Leaderboard", html)
    # sections 4 to 6: each question answered under its evidence
    for section in ("experiments", "findings", "beyond"):
        part = html.split(f'<section id="{section}">')[1].split("</section>")[0]
        for question in re.split(r"<h3 ", part)[1:]:
            assert '<p class="answer' in question, question[:80]
    # printed: no forced page break but before the appendix
    style = html.split("<style>")[1].split("</style>")[0]
    assert re.findall(r"([^{}]*)\{[^}]*break-(?:before|after): page", style) == ["\n  #appendix-tables "]


def test_missing_optional_files_give_a_not_available_note(tmp_path):
    out = make_fake_run(tmp_path / "run", kind="real", scores=False)
    for rel in (
        "results/leaderboard.csv",
        "results/thresholds.csv",
        "results/ensemble.json",
        "figures/stages_continuous.png",
    ):
        (out / rel).unlink()
    html = render_report(out).read_text()
    text = _text(html)
    for rel in (
        "results/leaderboard.csv",
        "results/thresholds.csv",
        "results/ensemble.json",
        "figures/stages_continuous.png",
    ):
        assert f"Not available in this run: {rel}" in text
    assert html.count("<img") == len(FIGURES)  # one of the known figures gone, the extra one kept
    assert "No public or private score is available in this run" in text
    assert "These scores are not comparable" not in text and "real Kaggle data" in text


def test_real_data_without_a_solution_says_scores_are_not_available(tmp_path):
    text = _text(render_report(make_fake_run(tmp_path / "run", kind="real", scores=False)).read_text())
    assert "no public or private score is available in this run (no solution file" in text
    assert "No public or private score is available in this run: without the competition's solution" in text
    assert "not available in this run" in text.split("ensemble: public / private")[1][:200]
    assert "the ensemble scores 0.341 against 0.320 for the best single model" in text  # validation facts stated


def test_an_empty_run_directory_still_renders(tmp_path):
    (tmp_path / "run").mkdir()
    html = render_report(tmp_path / "run").read_text()
    assert all(f'id="{s}"' in html for s in SECTION_IDS if s != "beyond")  # 05 did not run
    assert "Not available in this run: results/models.csv" in _text(html)
    assert "<img" not in html
    assert "The settings:" not in _text(html) and "resamples)" not in _text(html)  # no study recorded them


def test_an_unreadable_result_file_is_reported_not_fatal(fake_run):
    (fake_run / "results" / "run.json").write_text("{not json")
    (fake_run / "results" / "models.csv").write_bytes(b"")
    results = load_results(fake_run)
    assert results["run"] is None and results["models"] is None
    assert set(results["errors"]) == {"results/run.json", "results/models.csv"}
    text = _text(render_report(fake_run).read_text())
    assert "Not available in this run: results/models.csv" in text


def test_load_results_collects_tables_figures_and_submission(fake_run):
    results = load_results(fake_run)
    assert results["missing"] == [] and results["errors"] == {}
    assert list(results["models"].columns)[:4] == ["model", "variant", "variant_name", "stage"]
    assert results["ensemble"].selected == ["v2-C", "v2-B", "v1-C"]
    assert set(results["figures"]) == {*FIGURES, *REPEATS, EXTRA_FIGURE}
    assert results["submission"] == fake_run / "submission.csv"


def test_the_report_is_written_atomically(fake_run, monkeypatch):
    path = render_report(fake_run)
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    (fake_run / "results" / "models.csv").unlink()
    with pytest.raises(OSError, match="disk full"):
        render_report(fake_run)
    assert path.read_bytes() == before  # the old report is intact...
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # ...and no temp file is left


def test_render_report_to_a_chosen_path(fake_run, tmp_path):
    target = tmp_path / "elsewhere" / "r.html"
    assert render_report(fake_run, target) == target and target.read_text().startswith("<!DOCTYPE html>")


def test_find_chromium_honours_the_environment(tmp_path, monkeypatch):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert browser.find_chromium() == str(fake)
    monkeypatch.delenv("CHROMIUM")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert browser.find_chromium() is None


def test_render_pdf_without_chromium_says_what_to_install(fake_run, monkeypatch):
    html = render_report(fake_run)
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(RuntimeError, match=r"apt-get install chromium"):
        browser.render_pdf(html)


# --------------------------------------------------------------------------- in a real browser

needs_chromium = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="headless Chromium not found: apt-get install chromium (or set $CHROMIUM)",
)


@needs_chromium
def test_report_in_headless_chromium_loads_every_image(fake_run):
    html_path = render_report(fake_run)
    dom = browser.dump_dom(html_path)
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in dom
    n_figures = len(FIGURES) + 1
    assert f'data-images-total="{n_figures}"' in dom
    assert f'data-images-loaded="{n_figures}"' in dom
    png = browser.screenshot(html_path, html_path.parent / "report.png")
    data = png.read_bytes()
    assert png == fake_run / "report" / "report.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2400) and len(data) > 50_000
    colours = Image.open(png).convert("L").resize((64, 120)).getextrema()
    assert colours[1] - colours[0] > 100  # text and figures drawn, not a blank page


@needs_chromium
def test_render_pdf_writes_a_pdf(fake_run):
    pdf = browser.render_pdf(render_report(fake_run))
    assert pdf == fake_run / "report" / "report.pdf"
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 20_000
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["report.html", "report.pdf"]


def test_beyond_section_states_the_ablation_and_the_pointing_game_from_its_files(fake_run):
    text = _text(render_report(fake_run).read_text())
    section = text.split("6. Beyond the original")[1].split("7. Discussion")[0]
    assert "focal loss 0.230 0.235 0.220 0.225 +0.030 [+0.012, +0.058] +0.035 [+0.012, +0.058] helps" in section
    assert "sentence helps" not in section and "sentence hurts" not in section  # the table says it: no bullets
    assert (
        "On this run the interval says focal loss helps; all together hurts; for 8x TTA (mean) it includes 0" in section
    )
    assert "interval on the 60 held-out test images" in section
    assert "All together trains on 300 images per epoch against the baseline's 200 (1.5 times" in section
    assert "42.0% of a map's mass falls on its class's pattern, which covers 21.0% of the image" in section
    assert (
        "2.0 times chance" in section
        and "most for Nucleoplasm (2.5 times chance) and least for Cytosol (2.0)" in section
    )
    assert "does best on (0 Nucleoplasm, 25 Cytosol) and worst on (16 Cytokinetic bridge)" in section
    # the last figure of the body: the extra one is in the appendix (the builder raises if out of order)
    n_body = len(FIGURES) - len(APPENDIX_FIGURES)
    assert f"Figure {n_body}. Grad-CAM of v2-C" in section and "Figure A" not in section


def _with_label_ratio_row(run: Path) -> Path:
    table = pd.read_csv(run / "results" / "beyond_ablation.csv")
    row = table[table["key"] == "focal"].assign(key="label_ratio", technique="thresholds by label ratio")
    pd.concat([table, row]).to_csv(run / "results" / "beyond_ablation.csv", index=False)
    summary = json.loads((run / "results" / "beyond.json").read_text())
    extra = {**next(r for r in summary["rows"] if r["key"] == "focal"), "key": "label_ratio"}
    summary["rows"].append({**extra, "technique": "thresholds by label ratio"})
    (run / "results" / "beyond.json").write_text(json.dumps(summary))
    return run


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_label_ratio_thresholds_say_whether_the_test_prior_is_the_training_one(tmp_path, shift):
    run = make_fake_run(tmp_path / "run", overrides={"synth.test_prior_shift": shift})
    text = _text(render_report(run).read_text())
    assert "label-ratio thresholds" not in text.split("6.1 Do the winners")[1].split("6.2 Where")[0]  # none ran
    text = _text(render_report(_with_label_ratio_row(run)).read_text())
    section = text.split("6.1 Do the winners")[1].split("6.2 Where")[0]
    same = "the training and test labels come from one sampler, so that rate is the test images' own prior"
    tilted = "drawn with a tilted prior ( synth.test_prior_shift 0.5), so the training rate"
    assert (same in section, tilted in section) == ((False, True) if shift else (True, False))
    data = text.split("2.1 Images and labels")[1].split("2.2 Augmentation")[0]
    assert "label set drawn whole from the label sets of Kaggle's training set" in data
    assert ("test images' sets were drawn with a tilted prior" in data) == bool(shift)


def test_a_run_without_notebook_05_has_no_beyond_section(tmp_path):
    out = make_fake_run(tmp_path / "run", beyond=False)
    text = _text(render_report(out).read_text())
    assert "Beyond the original" not in text and "6. Discussion" in text and "7. Conclusion" in text


def test_fine_tuning_is_counted_per_base_model_and_seed_and_controls_apart():
    from hpa_utils.reporting.facts import _model_facts

    rows = [
        {"model": f"v0{suffix}-s{seed}", "variant": 0, "stage": stage, "seed": seed, "val_macro_f1": f1}
        for seed, scores in ((0, (0.20, 0.25, 0.30)), (1, (0.22, 0.21, 0.90)))
        for (stage, suffix), f1 in zip((("base", ""), ("C", "-C"), ("ctl", "-ctl")), scores, strict=True)
    ]
    facts = _model_facts(pd.DataFrame(rows))
    assert (facts["improved"], facts["compared"]) == (1, 2)  # seed 0's C beats its base, seed 1's does not
    assert (facts["n"], facts["n_control"]) == (4, 2) and facts["best_name"] == "v0-C-s0"  # a control is no candidate


def test_the_chinese_names_are_set_in_an_embedded_font_that_has_their_glyphs(fake_run):
    import base64
    import io
    import re

    from fontTools.ttLib import TTFont

    from hpa_utils.reporting import fonts

    html = render_report(fake_run).read_text()
    names = "".join(re.findall(r'<span lang="zh-Hant">([^<]+)</span>', html))
    assert len(names) >= 6 and set(names) <= set(fonts.CJK_TEXT)
    data = re.search(r'font-family: "' + fonts.FAMILY + r'"; src: url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)', html)
    assert data, "the subset is embedded as a data URI"
    font = TTFont(io.BytesIO(base64.b64decode(data.group(1))))
    assert {ord(c) for c in names} <= set(font.getBestCmap()), "every character of the names has its glyph"
    assert "Open Font License" in font["name"].getDebugName(13)
    assert re.search(r':lang\(zh-Hant\) \{ font-family: "' + fonts.FAMILY + '"', html)
