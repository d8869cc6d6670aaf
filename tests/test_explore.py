"""Notebook 06's explorer: the images each filter returns, the F1 at a threshold (the project's one rule), what a
class is confused with, the widgets' wiring without a browser, its figures, and the explorer on a smoke run."""

from __future__ import annotations

import html
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from hpa_utils.data.labels import CLASS_NAMES, NUM_CLASSES
from hpa_utils.evaluation.metrics import binarize, f1_per_class, macro_f1
from hpa_utils.reporting import explore, plots
from hpa_utils.studies import explore as study
from hpa_utils.studies.explore import Exploration

# four images, classes 0 and 1 shown; class 0 true on images 0, 1, 2 and predicted on 0, 2, 3
Y_TRUE = np.zeros((4, NUM_CLASSES), dtype=np.uint8)
Y_TRUE[[0, 1, 2], 0] = 1
Y_TRUE[[1, 3], 1] = 1
PROBABILITIES = np.full((4, NUM_CLASSES), 0.05)
PROBABILITIES[:, 0] = [0.9, 0.2, 0.6, 0.7]
PROBABILITIES[:, 1] = [0.1, 0.8, 0.1, 0.3]


class StubExploration(Exploration):
    """An exploration whose Grad-CAM maps are made up (counted, so a test sees which images get one)."""

    def grad_cam(self, indices, class_id):
        self._cams.setdefault("asked", []).extend((int(i), int(class_id)) for i in indices)
        return np.ones((len(list(indices)), 16, 16), dtype=np.float32) * 0.5


def stub_exploration(n: int = 40, seed: int = 0) -> StubExploration:
    rng = np.random.default_rng(seed)
    y = rng.random((n, NUM_CLASSES)) < 0.15
    y[np.arange(n), rng.integers(0, NUM_CLASSES, n)] = True
    p = np.clip(0.55 * y + rng.random((n, NUM_CLASSES)) * 0.6, 0, 1)
    images = rng.integers(0, 255, (n + 5, 16, 16, 4), dtype=np.uint8)
    return StubExploration(
        ids=[f"id{i:03d}" for i in range(n)],
        y_true=y,
        probabilities=p,
        predictor="weighted ensemble of 2 models",
        members={"a": 0.6, "b": 0.4},
        threshold=0.4,
        fitted=np.full(NUM_CLASSES, 0.3),
        images=images,
        rows=np.arange(5, n + 5),
        cam_model="a",
        cam_model_path=Path("a.keras"),
    )


# ----------------------------------------------------------------------------- the logic


def test_each_filter_returns_its_images_in_the_order_shown():
    y_pred = binarize(PROBABILITIES, 0.5)
    assert study.select_images(Y_TRUE, y_pred, PROBABILITIES, 0, "all").tolist() == [0, 2, 1]
    assert study.select_images(Y_TRUE, y_pred, PROBABILITIES, 0, "hits").tolist() == [0, 2]
    assert study.select_images(Y_TRUE, y_pred, PROBABILITIES, 0, "misses").tolist() == [1]
    assert study.select_images(Y_TRUE, y_pred, PROBABILITIES, 0, "false alarms").tolist() == [3]
    assert study.select_images(Y_TRUE, y_pred, PROBABILITIES, 5, "all").tolist() == []
    assert study.outcomes(Y_TRUE, y_pred, 1).tolist() == ["true negative", "hit", "true negative", "miss"]
    with pytest.raises(ValueError, match="not one of"):
        study.select_images(Y_TRUE, y_pred, PROBABILITIES, 0, "errors")


def test_misses_come_surest_first_and_a_lower_threshold_turns_a_miss_into_a_hit():
    probabilities = PROBABILITIES.copy()
    probabilities[:, 0] = [0.3, 0.1, 0.2, 0.05]  # class 0 true on 0, 1, 2: all missed at 0.5
    y_pred = binarize(probabilities, 0.5, at_least_one=False)
    assert study.select_images(Y_TRUE, y_pred, probabilities, 0, "misses").tolist() == [1, 2, 0]
    thresholds = np.full(NUM_CLASSES, 0.5)
    thresholds[0] = 0.25
    y_pred = binarize(probabilities, thresholds, at_least_one=False)
    assert study.select_images(Y_TRUE, y_pred, probabilities, 0, "hits").tolist() == [0]


def test_the_f1_at_a_threshold_is_macro_f1_of_the_binarized_predictions():
    rng = np.random.default_rng(1)
    y = rng.random((60, NUM_CLASSES)) < 0.2
    p = rng.random((60, NUM_CLASSES))
    per_class = rng.uniform(0.1, 0.9, NUM_CLASSES)
    for thresholds in (0.5, 0.2, per_class):
        scores = study.scores_at(y, p, thresholds)
        assert scores.macro == pytest.approx(macro_f1(y, binarize(p, thresholds)))
        assert np.allclose(scores.per_class, f1_per_class(y, binarize(p, thresholds)))


def test_the_cooccurrence_counts_true_against_predicted_classes():
    y_pred = binarize(PROBABILITIES, 0.5)  # image 0: {0}, 1: {1}, 2: {0}, 3: {0}
    matrix = study.cooccurrence(Y_TRUE, y_pred)
    assert matrix.shape == (NUM_CLASSES, NUM_CLASSES)
    assert matrix[0, 0] == 2 and matrix[0, 1] == 1 and matrix[1, 0] == 1 and matrix[1, 1] == 1
    assert matrix.sum() == (Y_TRUE.sum(axis=1) * y_pred.sum(axis=1)).sum()


def test_confusions_split_each_count_into_right_and_wrong():
    y_pred = binarize(PROBABILITIES, 0.5)
    table = study.confusions(Y_TRUE, y_pred, 0)
    assert table.attrs == {"n_true": 3, "n_predicted": 3}
    assert table.loc[0, "predicted_on_true"] == 2 and table.loc[0, "predicted_on_true_wrong"] == 0  # hits
    # image 1 carries 0 and 1; 1 is predicted on it, and it carries 1: a right prediction, 0 missed
    assert table.loc[1, "predicted_on_true"] == 1 and table.loc[1, "predicted_on_true_wrong"] == 0
    # image 3 (class 1 only) is a false alarm of 0: by its true class, 1
    assert table.loc[1, "true_on_predicted"] == 1 and table.loc[1, "true_on_predicted_false_alarm"] == 1
    assert table.loc[0, "true_on_predicted"] == 2 and table.loc[0, "true_on_predicted_false_alarm"] == 0
    assert table.loc[1, "name"] == CLASS_NAMES[1]


# ----------------------------------------------------------------------------- the widgets, without a browser


def test_moving_a_class_slider_updates_its_f1_and_the_macro_f1():
    data = stub_exploration()
    explorer = explore.Explorer(data, class_id=3)
    before = explorer.macro.value
    assert f"{explorer.scores.macro:.3f}" in before
    explorer.sliders[3].value = 0.9
    assert explorer.class_thresholds[3] == pytest.approx(0.9)
    expected = np.full(NUM_CLASSES, 0.4)
    expected[3] = 0.9
    want = study.scores_at(data.y_true, data.probabilities, expected)
    assert explorer.f1_labels[3].value == f"<b>F1 {want.per_class[3]:.2f}</b>"
    assert f"{want.macro:.3f}" in explorer.macro.value


def test_the_global_slider_and_the_fitted_button_set_every_class():
    data = stub_exploration()
    explorer = explore.Explorer(data)
    explorer.global_slider.value = 0.7
    assert np.allclose(explorer.class_thresholds, 0.7) and all(s.value == 0.7 for s in explorer.sliders)
    assert f"{study.scores_at(data.y_true, data.probabilities, 0.7).macro:.3f}" in explorer.macro.value
    explorer.to_fitted.click()
    assert np.allclose(explorer.class_thresholds, data.fitted)


def test_the_gallery_follows_the_class_the_filter_and_the_pages_with_maps_for_the_shown_images_only():
    data = stub_exploration(n=60)
    explorer = explore.Explorer(data, per_page=4)
    first = explorer.gallery.value
    assert first[:3] == b"\xff\xd8\xff"  # a JPEG
    asked = data._cams["asked"]
    assert len(asked) == len(explorer.shown()) <= 4 and {c for _, c in asked} == {explorer.class_id}
    explorer.picker.value = (explorer.class_id + 1) % NUM_CLASSES
    assert explorer.gallery.value != first
    explorer.filter.value = "false alarms"
    rows = study.select_images(data.y_true, explorer.predictions, data.probabilities, explorer.class_id, "false alarms")
    assert explorer.shown().tolist() == rows[:4].tolist()
    assert explorer.where.value.startswith(f"images 1-{min(4, len(rows))} of {len(rows)}")
    if len(rows) > 4:
        explorer.next.click()
        assert explorer.shown().tolist() == rows[4:8].tolist()


def test_each_view_carries_its_first_view_for_a_front_end_without_widgets():
    explorer = explore.Explorer(stub_exploration())
    for view, static in ((explorer.images, "image/jpeg"), (explorer.confusions, "image/png")):
        bundle = view._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle and static in bundle
    table = html.unescape(explorer.thresholds._repr_mimebundle_()["text/html"])
    assert "fitted threshold" in table and CLASS_NAMES[27] in table and "macro F1" in table


# ----------------------------------------------------------------------------- the figures


def test_the_gallery_figure_names_the_class_the_outcomes_and_the_true_labels():
    data = stub_exploration()
    y_pred = binarize(data.probabilities, 0.4)
    panels = study.gallery_panels(data, [0, 1, 2], 5, y_pred)
    fig = plots.plot_class_gallery(panels, 5)
    texts = [text for ax in fig.axes for text in (ax.get_title(loc="left"), ax.get_xlabel())]
    assert CLASS_NAMES[5] in fig.get_suptitle()
    assert texts[0].startswith(f"{panels[0]['outcome']} · id000")
    assert texts[1].replace("\n", " ").startswith(f"true: {CLASS_NAMES[int(panels[0]['true'][0])]}")
    empty = plots.plot_class_gallery([], 5)
    assert "No validation image" in empty.axes[0].texts[0].get_text()


def test_the_confusion_figure_shows_both_directions():
    y_pred = binarize(PROBABILITIES, 0.5)
    fig = plots.plot_confusions(study.confusions(Y_TRUE, y_pred, 0), 0)
    left, right = fig.axes
    assert "3 image(s)" in left.get_title(loc="left") and "3 image(s)" in right.get_title(loc="left")
    assert CLASS_NAMES[0] in fig.get_suptitle()
    assert any(CLASS_NAMES[1] in t.get_text() for t in right.get_yticklabels())


# ----------------------------------------------------------------------------- on a smoke run


def test_the_explorer_shows_the_chosen_predictor_of_a_smoke_run(smoke_run):
    """The explorer's predictor is notebook 04's: at the chosen threshold it scores ensemble.json's validation F1;
    its Grad-CAM maps have the images' size; the executed 06 shows each view's first view."""
    from hpa_utils.config.resolve import load_config
    from hpa_utils.studies.explore import open_exploration

    out = smoke_run[0]
    config = load_config(out / "config.json")
    summary = json.loads((out / "results" / "ensemble.json").read_text())
    data = open_exploration(config, log=lambda line: None)
    assert data.threshold == pytest.approx(summary["threshold"])
    assert macro_f1(data.y_true, binarize(data.probabilities, data.threshold)) == pytest.approx(summary["val_f1"])
    assert set(data.members) == {m for m, w in summary["weights"].items() if w > 0}
    maps = data.grad_cam([0, 1], 0)
    assert maps.shape == (2, *data.images.shape[1:3]) and 0 <= maps.min() and maps.max() <= 1
    executed = nbformat.read(out / "notebooks" / "06_explore.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [kind for o in outputs for kind in o.get("data", {}) if kind.startswith("image/")] == [
        "image/jpeg",
        "image/png",
    ]
    assert any("fitted threshold" in o.get("data", {}).get("text/html", "") for o in outputs)
