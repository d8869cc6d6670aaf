"""Macro F1 as Kaggle scores it (checked against sklearn), thresholds, and Keras' F1 metric."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from hpa_utils.evaluation.metrics import binarize, f1_per_class, keras_f1_metric, macro_f1
from hpa_utils.evaluation.thresholds import best_global_threshold, fit_per_class_thresholds


@pytest.mark.parametrize("seed", range(20))
def test_macro_f1_equals_sklearn_on_random_cases_including_empty_classes(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y_true = (rng.random((n, 28)) < rng.uniform(0.0, 0.3)).astype(int)
    y_pred = (rng.random((n, 28)) < rng.uniform(0.0, 0.3)).astype(int)
    y_true[:, rng.integers(0, 28, 5)] = 0  # classes with no positives at all
    expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(f1_per_class(y_true, y_pred), f1_score(y_true, y_pred, average=None, zero_division=0))


def test_macro_f1_hand_made_case():
    y_true = np.array([[1, 0, 0], [1, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 1]])
    # class 0: tp 1, fp 0, fn 1 -> 2/3; class 1: 1; class 2: tp 0, fp 1 -> 0
    assert macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_macro_f1_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        macro_f1(np.zeros((3, 28)), np.zeros((4, 28)))


def test_binarize_with_global_and_per_class_thresholds():
    p = np.array([[0.1, 0.6], [0.4, 0.2]])
    np.testing.assert_array_equal(binarize(p, 0.5, at_least_one=False), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(binarize(p, np.array([0.05, 0.7])), [[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="one per class"):
        binarize(p, np.array([0.1, 0.2, 0.3]))


def test_an_image_with_no_class_above_the_threshold_gets_its_most_probable_class():
    p = np.zeros((3, 28))
    p[:, :3] = [[0.1, 0.6, 0.2], [0.4, 0.2, 0.45], [0.3, 0.1, 0.2]]
    np.testing.assert_array_equal(binarize(p, 0.5)[:, :3], [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    # the submission writer's rule, so a submission scores as the tables say
    from hpa_utils.evaluation.submission import predictions_to_targets

    assert predictions_to_targets(binarize(p, 0.5, at_least_one=False), p, ensure_one=True) == ["1", "2", "0"]


def test_threshold_fitting_finds_the_separating_threshold():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < 0.3).astype(int)
    cut = np.array([0.2, 0.5, 0.8])
    # positives just above each class's cut, negatives just below: only thresholds near the cut are perfect
    p = np.where(y == 1, cut + 0.05, cut - 0.05) + rng.uniform(-0.01, 0.01, y.shape)
    thresholds = fit_per_class_thresholds(y, p)
    assert np.all(np.abs(thresholds - cut) < 0.045)
    assert macro_f1(y, binarize(p, thresholds, at_least_one=False)) == 1.0  # some rows have no label
    best, score = best_global_threshold(y, p)
    assert score < 1.0 and 0.0 < best < 1.0


def test_per_class_threshold_of_a_class_without_positives_stays_at_the_default():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    p = np.array([[0.9, 0.8], [0.1, 0.7], [0.8, 0.2]])
    assert fit_per_class_thresholds(y, p, default=0.5)[1] == 0.5


def test_keras_f1_metric_over_a_whole_epoch_equals_the_exact_macro_f1():
    rng = np.random.default_rng(1)
    y = (rng.random((64, 28)) < 0.2).astype("float32")
    p = rng.random((64, 28)).astype("float32")
    metric = keras_f1_metric()
    for start in range(0, 64, 16):  # accumulated batch by batch, as during an epoch
        metric.update_state(y[start : start + 16], p[start : start + 16])
    assert float(metric.result()) == pytest.approx(macro_f1(y, p >= 0.5), abs=1e-5)
