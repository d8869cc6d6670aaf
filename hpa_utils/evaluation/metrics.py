"""Macro F1 as Kaggle scores it, threshold search, and the Keras F1 metric.

Numpy only, except :func:`keras_f1_metric`, which returns Keras' own
``F1Score`` metric for the per-epoch training curves.
"""

from __future__ import annotations

import numpy as np

from hpa_utils.data.labels import NUM_CLASSES

#: Candidate thresholds searched by the threshold fitters.
DEFAULT_THRESHOLD_GRID = np.round(np.arange(0.02, 0.96, 0.01), 2)


def _as_binary_matrix(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, classes) array, got shape {y.shape}")
    return y.astype(bool)


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-class F1 of binary predictions; a class with no true and no predicted
    positives scores 0 (sklearn's ``zero_division=0``).

    Args:
        y_true: (N, C) 0/1 labels.
        y_pred: (N, C) 0/1 predictions (already thresholded).

    Returns:
        (C,) float64 array of F1 scores.
    """
    t = _as_binary_matrix(y_true, "y_true")
    p = _as_binary_matrix(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    tp = np.sum(t & p, axis=0).astype(np.float64)
    denom = np.sum(t, axis=0) + np.sum(p, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over all classes (columns), as Kaggle scored HPA 2018.

    Equal to ``sklearn.metrics.f1_score(y_true, y_pred, average="macro",
    zero_division=0)`` on binary predictions.
    """
    return float(np.mean(f1_per_class(y_true, y_pred)))


def binarize(probabilities: np.ndarray, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """Threshold probabilities (N, C) with one global or (C,) per-class thresholds.

    Kaggle requires at least one label per image; this function does not force
    one (see :func:`hpa_utils.submission.predictions_to_targets`).
    """
    probabilities = np.asarray(probabilities)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim not in (0, 1) or (thresholds.ndim == 1 and thresholds.shape[0] != probabilities.shape[1]):
        raise ValueError(
            f"thresholds must be one number or one per class ({probabilities.shape[1]}), got shape {thresholds.shape}"
        )
    return (probabilities >= thresholds).astype(np.uint8)


def best_global_threshold(
    y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray = DEFAULT_THRESHOLD_GRID
) -> tuple[float, float]:
    """The single threshold on ``grid`` that maximises macro F1.

    Returns:
        (threshold, macro F1 at that threshold). Ties go to the threshold nearest 0.5.
    """
    scores = np.array([macro_f1(y_true, binarize(probabilities, t)) for t in grid])
    best = np.flatnonzero(scores == scores.max())
    pick = best[np.argmin(np.abs(np.asarray(grid)[best] - 0.5))]
    return float(grid[pick]), float(scores[pick])


def fit_per_class_thresholds(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    grid: np.ndarray = DEFAULT_THRESHOLD_GRID,
    default: float = 0.5,
) -> np.ndarray:
    """One threshold per class maximising that class's F1 on (y_true, probabilities).

    A class with no positives in ``y_true`` keeps ``default``: there is nothing
    to fit it on. Per-class thresholds fitted on little data overfit; compare them
    on held-out data.

    Returns:
        (C,) float64 thresholds.
    """
    t = _as_binary_matrix(y_true, "y_true")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    thresholds = np.full(t.shape[1], float(default))
    for c in range(t.shape[1]):
        if not t[:, c].any():
            continue
        pred = probabilities[:, c][None, :] >= grid[:, None]  # (G, N)
        tp = (pred & t[:, c][None, :]).sum(axis=1)
        denom = pred.sum(axis=1) + t[:, c].sum()
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        best = np.flatnonzero(f1 == f1.max())
        thresholds[c] = grid[best[np.argmin(np.abs(grid[best] - default))]]
    return thresholds


def keras_f1_metric(num_classes: int = NUM_CLASSES, threshold: float = 0.5, name: str = "f1"):
    """Keras' own macro F1 metric (``keras.metrics.F1Score``), accumulated over an epoch.

    This is what the training curves plot as train/validation F1; the exact
    validation macro F1 is computed in numpy by :func:`macro_f1` at each epoch end.
    """
    from hpa_utils.training.backend import keras

    return keras.metrics.F1Score(average="macro", threshold=threshold, name=name)
