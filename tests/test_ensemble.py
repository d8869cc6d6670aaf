"""Ensemble weights, weighted averages, the shift sweep, model selection and the threshold study."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hpa_utils.data.labels import NUM_CLASSES
from hpa_utils.evaluation.ensemble import (
    DEFAULT_SHIFTS,
    compare_models,
    equal_weight_mean,
    model_f1_scores,
    select_models,
    shift_sweep,
    weighted_mean,
    weights_from_f1,
)
from hpa_utils.evaluation.metrics import binarize, macro_f1
from hpa_utils.evaluation.thresholds import halves, threshold_study


def _labelled_set(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n, 28) and probabilities that are the labels blurred by ``noise``."""
    y = (rng.random((n, NUM_CLASSES)) < 0.2).astype(np.uint8)
    y[np.arange(n), rng.integers(0, NUM_CLASSES, n)] = 1
    p = np.clip(0.25 + 0.5 * y + rng.normal(0, noise, y.shape), 0, 1)
    return y, p


def test_weights_are_f1_minus_shift_with_a_warning_naming_the_clipped_model():
    with pytest.warns(UserWarning, match=r"clipped to 0 for model 2$"):
        weights = weights_from_f1([0.40, 0.44, 0.30], shift=0.34)
    assert isinstance(weights, np.ndarray)
    np.testing.assert_allclose(weights, [0.06, 0.10, 0.0], atol=1e-12)


def test_weights_keep_model_names_and_order_for_dict_input():
    with pytest.warns(UserWarning, match="m_low"):
        weights = weights_from_f1({"m_b": 0.44, "m_low": 0.2, "m_a": 0.40})
    assert list(weights.index) == ["m_b", "m_low", "m_a"]
    np.testing.assert_allclose(weights.to_numpy(), [0.10, 0.0, 0.06], atol=1e-12)


def test_weights_do_not_warn_when_no_model_is_clipped():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = weights_from_f1(pd.Series({"a": 0.45, "b": 0.42}), shift=0.34)
    np.testing.assert_allclose(weights.to_numpy(), [0.11, 0.08], atol=1e-12)


def test_weights_raise_when_the_shift_is_above_every_f1():
    with pytest.raises(ValueError, match="above every model's F1"):
        weights_from_f1([0.30, 0.33], shift=0.34)


def test_weighted_mean_equals_hand_computed_average():
    p1 = np.array([[0.2, 0.8], [1.0, 0.0]])
    p2 = np.array([[0.6, 0.4], [0.0, 1.0]])
    # weights 1 and 3 normalise to 0.25 and 0.75
    expected = np.array([[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(weighted_mean([p1, p2], [1, 3]), expected)
    np.testing.assert_allclose(weighted_mean({"x": p1, "y": p2}, {"y": 0.3, "x": 0.1}), expected)


def test_weighted_mean_ignores_models_with_zero_weight():
    p1, p2 = np.full((2, 3), 0.2), np.full((2, 3), 0.9)
    np.testing.assert_allclose(weighted_mean([p1, p2], [0.0, 0.5]), p2)


def test_weighted_mean_shape_mismatch_names_the_model():
    with pytest.raises(ValueError, match="probabilities of short have shape"):
        weighted_mean({"ok": np.zeros((4, 3)), "short": np.zeros((3, 3))}, {"ok": 1, "short": 1})


def test_weighted_mean_rejects_all_zero_weights():
    with pytest.raises(ValueError, match="sum to zero"):
        weighted_mean([np.zeros((2, 2))], [0.0])


def test_equal_weight_mean_is_the_plain_mean():
    arrays = [np.full((2, 2), v) for v in (0.1, 0.2, 0.6)]
    np.testing.assert_allclose(equal_weight_mean(arrays), np.full((2, 2), 0.3))


def _models(rng, f1_by_name, n=120):
    y_val, _ = _labelled_set(rng, n, 0.1)
    y_pub, _ = _labelled_set(rng, n, 0.1)
    val = {m: np.clip(0.25 + 0.5 * y_val + rng.normal(0, 0.3, y_val.shape), 0, 1) for m in f1_by_name}
    pub = {m: np.clip(0.25 + 0.5 * y_pub + rng.normal(0, 0.3, y_pub.shape), 0, 1) for m in f1_by_name}
    return y_val, val, y_pub, pub


def test_shift_sweep_includes_034_and_036_and_n_models_falls_as_the_shift_grows():
    rng = np.random.default_rng(0)
    f1 = {"a": 0.31, "b": 0.335, "c": 0.355, "d": 0.37, "e": 0.395, "f": 0.42}
    y_val, val, y_pub, pub = _models(rng, f1)
    table = shift_sweep(val, f1, y_val, extra_sets={"public": (pub, y_pub)})
    assert list(table.columns) == ["shift", "n_models", "threshold", "val_f1", "public_f1"]
    assert 0.34 in table["shift"].to_list() and 0.36 in table["shift"].to_list()
    assert len(table) == len(DEFAULT_SHIFTS) == 11
    n_models = table["n_models"].to_numpy()
    assert np.all(np.diff(n_models) <= 0) and n_models[0] == 6 and n_models[-1] == 1
    at_034 = table.set_index("shift").loc[0.34]
    direct = weighted_mean(val, {name: max(score - 0.34, 0.0) for name, score in f1.items()})
    assert at_034["val_f1"] == pytest.approx(macro_f1(y_val, binarize(direct, 0.5)))


def test_shift_sweep_gives_nan_where_every_weight_is_zero():
    rng = np.random.default_rng(1)
    f1 = {"a": 0.32, "b": 0.33}
    y_val, val, _, _ = _models(rng, f1, n=30)
    table = shift_sweep(val, f1, y_val, shifts=[0.30, 0.35])
    assert table["n_models"].to_list() == [2, 0]
    assert not np.isnan(table["val_f1"].iloc[0]) and np.isnan(table["val_f1"].iloc[1])


def test_select_models_keeps_top_k_by_validation_f1():
    f1 = {"m0": 0.42, "m1": 0.47, "m2": 0.40, "m3": 0.45}
    assert select_models(f1, k=2) == ["m1", "m3"]
    assert select_models(f1, min_f1=0.42) == ["m1", "m3", "m0"]
    with pytest.raises(ValueError, match="give k"):
        select_models(f1)


def test_compare_models_lists_every_model_and_ensemble_on_every_split():
    rng = np.random.default_rng(2)
    y_val, val, y_pub, pub = _models(rng, {"a": 0, "b": 0, "c": 0}, n=60)
    table = compare_models(
        {"val": val, "public": pub},
        {"val": y_val, "public": y_pub},
        ensembles={"equal": {"a": 1, "b": 1, "c": 1}, "a+b": {"a": 0.1, "b": 0.05}},
    )
    assert table["name"].to_list() == ["a", "b", "c", "equal", "a+b"]
    assert table["kind"].to_list() == ["single"] * 3 + ["ensemble"] * 2
    assert table["n_models"].to_list() == [1, 1, 1, 3, 2]
    expected = macro_f1(y_pub, binarize(equal_weight_mean(pub), 0.5))
    assert table.set_index("name").loc["equal", "public_f1"] == pytest.approx(expected)
    single = model_f1_scores(val, y_val)
    np.testing.assert_allclose(table["val_f1"].to_numpy()[:3], single.to_numpy())


def test_threshold_study_per_class_fit_picks_the_obvious_threshold():
    # class 0: positives at 0.25, negatives at 0.10 -> any threshold in (0.10, 0.25] is perfect; the
    # fitter keeps the one nearest 0.5, i.e. 0.25. The other classes are separable at 0.5.
    y = np.zeros((8, NUM_CLASSES), dtype=np.uint8)
    y[:4, 0] = 1
    y[4:, 1] = 1
    p = np.where(y == 1, 0.9, 0.1)
    p[:4, 0] = 0.25
    p[:4, 2] = 0.3  # at 0.5 these images have no label: the scoring rule gives them class 2, wrongly
    table = threshold_study(y, p, y, p)
    per_class = table.attrs["per_class_thresholds"]
    assert per_class[0] == pytest.approx(0.25)
    assert per_class[1] == pytest.approx(0.5)
    rows = table.set_index("method")
    assert rows.loc["per-class (fitted)", "fit_f1"] == pytest.approx(2 / NUM_CLASSES)
    assert rows.loc["fixed 0.5", "fit_f1"] == pytest.approx(1 / NUM_CLASSES)
    # the best global threshold must also catch class 0 (<= 0.25) without catching the negatives (0.1)
    assert 0.1 < table.attrs["global_threshold"] <= 0.25
    assert rows.loc["best global (fitted)", "fit_f1"] == pytest.approx(2 / NUM_CLASSES)


def test_threshold_study_fitted_thresholds_score_best_on_the_fit_set():
    rng = np.random.default_rng(3)
    y_fit, p_fit = _labelled_set(rng, 40, 0.3)
    y_hold, p_hold = _labelled_set(rng, 400, 0.3)
    study = threshold_study(y_fit, p_fit, y_hold, p_hold)
    assert study["key"].tolist() == ["fixed", "global", "per_class"]
    assert study["method"].tolist() == ["fixed 0.5", "best global (fitted)", "per-class (fitted)"]
    table = study.set_index("method")
    assert list(table.columns) == ["key", "thresholds", "fit_f1", "holdout_f1", "gap"]
    fit = table["fit_f1"]
    assert fit["per-class (fitted)"] >= fit["best global (fitted)"] >= fit["fixed 0.5"]
    # per-class thresholds fitted on 40 images do worse on held-out data than on the images they fit
    assert table.loc["per-class (fitted)", "gap"] > 0
    np.testing.assert_allclose(table["gap"], table["fit_f1"] - table["holdout_f1"])


def test_halves_are_disjoint_cover_every_row_and_repeat_for_a_seed():
    fit, hold = halves(11, seed=2)
    assert len(fit) == 5 and len(hold) == 6
    np.testing.assert_array_equal(np.sort(np.concatenate([fit, hold])), np.arange(11))
    again = halves(11, seed=2)
    np.testing.assert_array_equal(fit, again[0])
    np.testing.assert_array_equal(hold, again[1])
