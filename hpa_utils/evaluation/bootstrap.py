"""95% intervals by bootstrap over images: of one predictor's macro F1, and of the paired difference
between two predictors scored on the same images (each resample draws images once, for both).

Numpy only. A resample is a vector of counts (how often each image is drawn, multinomial), so the
per-class true/false positives of all resamples are one matrix product: 2,000 resamples of 600 images
and 28 classes take milliseconds. Binary predictions go in (threshold first, with the project's one
scoring rule, :func:`hpa_utils.evaluation.metrics.binarize`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hpa_utils.evaluation.metrics import as_binary_matrix, macro_f1

#: Resamples per interval and the interval's coverage.
N_RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate on the full set and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    n_images: int
    n_resamples: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return asdict(self)


def resample_counts(n_images: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, images) draw counts: each row draws ``n_images`` images with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_resamples).astype(np.float64)


def _macro_f1_per_resample(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
    t = as_binary_matrix(y_true, "y_true").astype(np.float64)
    p = as_binary_matrix(y_pred, "y_pred").astype(np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    tp = counts @ (t * p)
    denom = counts @ t + counts @ p
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 0.0)
    return f1.mean(axis=1)


def _interval(estimate: float, samples: np.ndarray, n_images: int) -> Interval:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), int(n_images), int(samples.size))


def macro_f1_interval(
    y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Interval:
    """Macro F1 of binary predictions, with its 95% bootstrap interval over images."""
    counts = resample_counts(len(y_true), n_resamples, seed)
    return _interval(macro_f1(y_true, y_pred), _macro_f1_per_resample(y_true, y_pred, counts), len(y_true))


def paired_f1_difference(
    y_true: np.ndarray,
    preds_a: np.ndarray | list[np.ndarray],
    preds_b: np.ndarray | list[np.ndarray],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Macro F1 of A minus that of B on the same images, with its paired 95% bootstrap interval.

    ``preds_a`` and ``preds_b`` may each be a list of prediction matrices (e.g. one per base variant):
    the difference is then the mean over the pairs, every pair resampled with the same images.
    """
    a_list = preds_a if isinstance(preds_a, list) else [preds_a]
    b_list = preds_b if isinstance(preds_b, list) else [preds_b]
    if len(a_list) != len(b_list) or not a_list:
        raise ValueError(f"need as many A as B predictions (got {len(a_list)} and {len(b_list)}), at least one")
    counts = resample_counts(len(y_true), n_resamples, seed)
    estimate = np.mean([macro_f1(y_true, a) - macro_f1(y_true, b) for a, b in zip(a_list, b_list)])
    samples = np.mean(
        [
            _macro_f1_per_resample(y_true, a, counts) - _macro_f1_per_resample(y_true, b, counts)
            for a, b in zip(a_list, b_list)
        ],
        axis=0,
    )
    return _interval(estimate, samples, len(y_true))


def paired_mean_difference(
    values_a: np.ndarray | list[np.ndarray],
    values_b: np.ndarray | list[np.ndarray],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean over images of A minus mean of B (per-image values, e.g. each image's loss), paired 95% interval;
    lists are averaged over their pairs as in :func:`paired_f1_difference`."""
    a_list = values_a if isinstance(values_a, list) else [values_a]
    b_list = values_b if isinstance(values_b, list) else [values_b]
    if len(a_list) != len(b_list) or not a_list:
        raise ValueError(f"need as many A as B value vectors (got {len(a_list)} and {len(b_list)}), at least one")
    diff = np.mean([np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in zip(a_list, b_list)], axis=0)
    counts = resample_counts(diff.size, n_resamples, seed)
    return _interval(float(diff.mean()), counts @ diff / diff.size, diff.size)


def mean_interval(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """Mean of a few values (e.g. one per model) with its 95% bootstrap interval over those values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no values to average")
    counts = resample_counts(values.size, n_resamples, seed)
    return _interval(float(values.mean()), counts @ values / values.size, values.size)
