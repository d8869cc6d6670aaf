"""The pointing game's baselines (hpa_utils.studies.gradcam): on hand-made maps and masks the uniform map scores
chance exactly and a map equal to the mask the maximum; the verdict against the class-agnostic cell-stain map
follows its paired interval; the classes shown follow the pointing score, ties broken by images then id; classes
the model never predicts are left out; and the report states the baselines from the stored numbers (an older
run's ``beyond.json``, without them, still renders). Fast: no training, no Keras."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hpa_utils.evaluation.bootstrap import Interval
from hpa_utils.studies.gradcam import (
    BETTER,
    MAPS,
    NO_BETTER,
    POINTING_COLUMNS,
    WORSE,
    baseline_maps,
    map_scores,
    per_class_pointing,
    pointing_scores,
    pointing_summary,
    pointing_verdict,
    shown_classes,
)


def _mask(size: int = 8) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[1:4, 2:6] = True  # 12 of 64 pixels
    return mask


def _image(size: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 4)).astype(np.uint8)


# ----------------------------------------------------------------------------- the maps, hand-made


def test_the_uniform_map_scores_exactly_chance():
    mask = _mask()
    mass, share, _ = pointing_scores(np.ones(mask.shape), mask)
    assert share == 12 / 64 and mass == share  # exactly: its mass on the pattern is the pattern's share
    record = map_scores(np.random.default_rng(1).random(mask.shape), baseline_maps(_image()), mask)
    assert record["mass_uniform"] == record["share"] == 12 / 64
    assert record["peak_uniform"] == 12 / 64  # its peak is undefined: the chance a random pixel lands on it
    summary = pointing_summary(pd.DataFrame([{"class": 0, **record}] * 3), n_resamples=50)
    assert summary["baselines"]["uniform"]["lift"] == 1.0
    assert summary["baselines"]["uniform"]["peak"] == summary["peak_chance"] == 12 / 64


def test_a_map_equal_to_the_mask_scores_the_maximum():
    mask = _mask()
    mass, share, hit = pointing_scores(mask.astype(float), mask)
    assert (mass, hit) == (1.0, True)
    rng = np.random.default_rng(2)
    for _ in range(20):  # no other map puts more of its mass on the pattern
        assert pointing_scores(rng.random(mask.shape), mask)[0] <= mass
    record = map_scores(mask.astype(float), baseline_maps(_image()), mask)
    summary = pointing_summary(pd.DataFrame([{"class": 0, **record}]), n_resamples=50)
    assert summary["baselines"]["gradcam"]["lift"] == pytest.approx(1 / share)  # the largest lift there is
    assert summary["baselines"]["gradcam"]["peak"] == 1.0


def test_the_class_agnostic_maps_are_the_cell_stains_and_the_green_channel():
    image = _image()
    maps = baseline_maps(image)
    np.testing.assert_array_equal(maps["cellstain"], image[..., 0].astype(np.float32) + image[..., 3])
    np.testing.assert_array_equal(maps["green"], image[..., 1].astype(np.float32))
    assert maps["cellstain"].dtype == np.float32  # no uint8 overflow: 200 + 200 stays 400
    # a map that is the green channel of a pattern drawn in green scores like the map equal to the mask
    green = np.zeros((8, 8, 4), np.uint8)
    green[..., 1] = _mask() * 200
    record = map_scores(np.zeros((8, 8)), baseline_maps(green), _mask())
    assert (record["mass_green"], record["peak_green"]) == (1.0, 1.0)
    assert (record["mass_gradcam"], record["peak_gradcam"]) == (0.0, 0.0)  # a map with no mass scores 0


# ----------------------------------------------------------------------------- the verdict


def _scores(gradcam: np.ndarray, cellstain: np.ndarray, share: float = 0.2) -> pd.DataFrame:
    """Per-map values, hand-made: Grad-CAM's and the cell-stain map's mass on the pattern (peaks: mass > share)."""
    n = len(gradcam)
    return pd.DataFrame(
        {
            "class": np.arange(n) % 3,
            "share": np.full(n, share),
            "mass_gradcam": gradcam,
            "peak_gradcam": (gradcam > share).astype(float),
            "mass_uniform": np.full(n, share),
            "peak_uniform": np.full(n, share),
            "mass_cellstain": cellstain,
            "peak_cellstain": (cellstain > share).astype(float),
            "mass_green": np.full(n, 0.5),
            "peak_green": np.ones(n),
        }
    )


def test_the_verdict_follows_the_interval_against_the_cell_stain_map():
    rng = np.random.default_rng(3)
    cellstain = rng.uniform(0.1, 0.4, 200)
    better = pointing_summary(_scores(cellstain + 0.1, cellstain), n_resamples=500)
    assert better["vs_cellstain"]["lift"]["low"] > 0 and better["verdict"] == BETTER
    assert better["vs_cellstain"]["lift"]["estimate"] == pytest.approx(0.1 / 0.2)  # in lift: mass over the share
    worse = pointing_summary(_scores(cellstain - 0.1, cellstain), n_resamples=500)
    assert worse["vs_cellstain"]["lift"]["high"] < 0 and worse["verdict"] == WORSE
    noise = rng.choice([-0.05, 0.05], 200)
    noise -= noise.mean()  # a difference of exactly 0 on average
    same = pointing_summary(_scores(cellstain + noise, cellstain), n_resamples=500)
    lift = same["vs_cellstain"]["lift"]
    assert lift["low"] < 0 < lift["high"] and same["verdict"] == NO_BETTER
    # the interval is paired over the maps, and its estimate is the difference of the two lifts
    base = better["baselines"]
    assert better["vs_cellstain"]["lift"]["estimate"] == pytest.approx(
        base["gradcam"]["lift"] - base["cellstain"]["lift"]
    )
    assert better["vs_cellstain"]["lift"]["n_images"] == 200 and set(better["baselines"]) == set(MAPS)
    # the older runs' keys are kept: Grad-CAM's figures at the top level
    assert better["mass_on_pattern"] == pytest.approx(base["gradcam"]["mass"]) and better["maps"] == 200
    assert {"maps", "mass_on_pattern", "pattern_share", "peak_on_pattern", "level"} <= set(better)
    json.dumps(better)  # stored as given in results/beyond.json


def test_pointing_verdict_reads_where_the_interval_lies():
    assert pointing_verdict(Interval(0.3, 0.1, 0.5, 10, 100)) == BETTER
    assert pointing_verdict(Interval(0.1, -0.1, 0.3, 10, 100)) == NO_BETTER
    assert pointing_verdict(Interval(0.0, 0.0, 0.0, 10, 100)) == NO_BETTER
    assert pointing_verdict(Interval(-0.3, -0.5, -0.1, 10, 100)) == WORSE


# ----------------------------------------------------------------------------- per class


def test_classes_never_predicted_are_left_out():
    rng = np.random.default_rng(4)
    scores = _scores(rng.uniform(0.2, 0.6, 30), rng.uniform(0.1, 0.4, 30))  # classes 0, 1, 2
    predicted = np.zeros(28, bool)
    predicted[[0, 2, 9]] = True  # 9 is predicted but has no maps
    table = per_class_pointing(scores, predicted)
    assert list(table.index) == [0, 2] and list(table.columns) == list(POINTING_COLUMNS)
    zero = scores[scores["class"] == 0]
    row = table.loc[0]
    assert row["maps"] == len(zero)
    assert row["lift"] == pytest.approx(zero["mass_gradcam"].mean() / zero["share"].mean())
    assert row["lift_cellstain"] == pytest.approx(zero["mass_cellstain"].mean() / zero["share"].mean())
    assert row["lift_vs_cellstain"] == pytest.approx(row["lift"] / row["lift_cellstain"])
    assert row["peak_chance"] == pytest.approx(zero["share"].mean())
    assert per_class_pointing(scores, np.zeros(28, bool)).empty
    # nor are they shown: a class that is not a candidate is never chosen, whatever its score
    score = np.full(28, np.nan)
    score[[0, 1, 2]] = [1.5, 9.0, 0.5]
    best, worst = shown_classes(score, np.ones(28), predicted, 2)
    assert best == [0, 2] and worst == [] and 1 not in best + worst


def test_the_classes_shown_follow_the_score_then_images_then_id():
    score = np.full(28, np.nan)
    score[[3, 5, 7, 8, 11, 20]] = [2.0, 0.5, 0.5, 0.5, 3.0, 2.0]
    images = np.zeros(28, int)
    images[[3, 5, 7, 8, 11, 20]] = [4, 10, 30, 10, 2, 4]
    candidates = np.zeros(28, bool)
    candidates[[3, 5, 7, 8, 11, 20]] = True
    best, worst = shown_classes(score, images, candidates, 3)
    assert best == [11, 3, 20]  # 3 and 20 tie at 2.0 and on images: the lower id first
    assert worst == [7, 5, 8]  # three tie at 0.5: the most validation images first, then the lower id
    # the best are not repeated among the worst
    best, worst = shown_classes(score, images, candidates, 4)
    assert best == [11, 3, 20, 7] and worst == [5, 8]
    # a class with no score is not a candidate
    candidates[0] = True
    assert 0 not in sum(shown_classes(score, images, candidates, 10), [])


# ----------------------------------------------------------------------------- the report


def _new_style_run(tmp_path, best=(25,), worst=(0,)):
    """The report tests' fake run, with notebook 05's files as a run with the baselines writes them."""
    from test_report import make_fake_run

    out = make_fake_run(tmp_path / "run")
    results = out / "results"
    summary = json.loads((results / "beyond.json").read_text())
    rng = np.random.default_rng(5)
    cellstain = rng.uniform(0.1, 0.4, 70)
    point = pointing_summary(_scores(cellstain - 0.08, cellstain), n_resamples=200)
    point.update(shown_by="pointing score", shown_from="predicted", classes_scored=2)  # as run_gradcam adds
    summary["pointing"] = point
    summary["gradcam_best"], summary["gradcam_worst"] = list(best), list(worst)
    (results / "beyond.json").write_text(json.dumps(summary))
    table = pd.DataFrame(
        {
            "class": [0, 16, 25],
            "name": ["Nucleoplasm", "Cytokinetic bridge", "Cytosol"],
            "val_images": [20, 3, 12],
            "val_f1": [0.6, 0.0, 0.5],
            "val_predicted": [18, 0, 11],
            "maps": [20.0, np.nan, 12.0],
            "mass_on_pattern": [0.5, np.nan, 0.7],
            "pattern_share": [0.2, np.nan, 0.35],
            "peak_on_pattern": [0.7, np.nan, 0.9],
            "lift": [2.5, np.nan, 2.0],
            "lift_cellstain": [2.0, np.nan, 1.0],
            "lift_green": [3.0, np.nan, 2.5],
            "lift_vs_cellstain": [1.25, np.nan, 2.0],
            "peak_cellstain": [0.5, np.nan, 0.4],
            "peak_green": [0.8, np.nan, 0.9],
            "peak_chance": [0.2, np.nan, 0.35],
        }
    )
    table.to_csv(results / "beyond_pointing.csv", index=False)
    return out, point


def test_the_report_states_the_baselines_and_the_verdict_from_the_stored_numbers(tmp_path):
    from test_report import _text

    from hpa_utils.reporting.render import render_html
    from hpa_utils.reporting.results import load_results

    out, point = _new_style_run(tmp_path)
    html = render_html(load_results(out), strict=True)  # every column shown is declared
    section = _text(html).split("6.2 Where the model looks")[1].split("7. Discussion")[0]
    assert point["verdict"] == WORSE
    assert "Grad-CAM points at the class's pattern worse than a map that ignores the class" in section
    assert "Against the class-agnostic cell-stain map (red + yellow)" in section
    lift = point["vs_cellstain"]["lift"]
    assert f"{lift['estimate']:+.3f} [{lift['low']:+.3f}, {lift['high']:+.3f}]" in section
    for key, values in point["baselines"].items():
        row = f"{MAPS[key]} {values['lift']:.3f} {values['peak']:.3f} {point['peak_chance']:.3f}"
        assert row in section, row
    assert "highest for Cytosol (2.0: lift 2.0 against 1.0) and lowest for Nucleoplasm (1.25" in section
    assert (
        "whose maps point at their pattern best (25 Cytosol) and worst (0 Nucleoplasm) against the cell-stain map"
        in section
    )
    # the per-class table: the predicted classes only, with the baselines' columns
    assert "Cytokinetic bridge" not in section.split("Pointing game per class")[1]
    assert "lift cellstain" in section and "peak chance" in section


def test_a_run_without_the_baselines_has_no_pointing_facts():
    from hpa_utils.reporting.facts import pointing_facts
    from hpa_utils.studies.beyond import BeyondSummary

    old = BeyondSummary(
        variant=0,
        techniques=[],
        verdict_set="val",
        sets={},
        rows=[],
        pointing={"maps": 70, "mass_on_pattern": 0.42, "pattern_share": 0.21, "peak_on_pattern": 0.6, "level": 0.2},
    )
    assert pointing_facts(old, None) is None and pointing_facts(None, None) is None


def test_the_report_reads_with_one_class_scored(tmp_path):
    """A model that predicts one class has a best class and no worst: the sentences say so, no empty list."""
    from test_report import _text

    from hpa_utils.reporting.render import render_html
    from hpa_utils.reporting.results import load_results

    out, _ = _new_style_run(tmp_path, best=(25,), worst=())
    section = _text(render_html(load_results(out), strict=True)).split("6.2 Where the model looks")[1]
    assert "best (25 Cytosol) against the cell-stain map" in section and "worst ()" not in section
    assert "on the one class scored for Cytosol (2.0: lift 2.0 against 1.0)." in section


def test_grad_cam_maps_the_best_single_model_by_the_comparisons_rule_never_a_control(tmp_path):
    from hpa_utils.config.resolve import resolve_config
    from hpa_utils.studies.tables import TABLES
    from hpa_utils.studies.training import best_single_model

    config = resolve_config("smoke", output_dir=tmp_path / "run", overrides={"train.seeds": 2})
    names = ["v0-s0", "v0-C-s0", "v0-ctl-s0", "v1-C-s0", "v1-C-s1"]
    table = pd.DataFrame(
        {
            "model": names,
            "stage": ["base", "C", "ctl", "C", "C"],
            "seed": [0, 0, 0, 0, 1],
            "val_macro_f1": [0.1, 0.25, 0.40, 0.20, 0.5],  # at 0.5: a control, then another seed, lead
            "path": [f"{n}.keras" for n in names],
        }
    )
    # before notebook 04: the run seed's models but the control, by training's F1
    assert best_single_model(table, config)["model"] == "v0-C-s0"
    comparison = pd.DataFrame(
        {
            "seed": [0, 0, 0, 0, 1],
            "name": ["v0-C-s0", "v1-C-s0", "v0-ctl-s0", "weighted (chosen)", "v1-C-s1"],
            "role": ["single", "single", "single", "chosen", "single"],
            "val_f1": [0.30, 0.33, 0.9, 0.99, 0.8],  # at their fitted thresholds v1-C-s0 is the best single
        }
    )
    config.paths.results.mkdir(parents=True)
    comparison.to_csv(config.paths.results / TABLES["ensemble_comparison"].file, index=False)
    assert best_single_model(table, config)["model"] == "v1-C-s0"
