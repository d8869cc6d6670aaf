"""95% intervals by bootstrap over images: of one predictor's macro F1, and of the paired difference
between two predictors scored on the same images (each resample draws images once, for both).

Over training seeds too: a difference measured once per seed (``groups``: the seed of each pair) gets a
two-level bootstrap, seeds then images. Each resample draws the seeds with replacement, and one set of image
counts shared by every seed and both predictors (paired); its value is the mean over the drawn seeds of each
seed's difference. So the interval holds what another training seed would change as well as which images
were drawn; with one seed it is the bootstrap over images alone (``n_seeds`` says which).

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
    n_seeds: int = 1

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


def _interval(estimate: float, samples: np.ndarray, n_images: int, n_seeds: int = 1) -> Interval:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), int(n_images), int(samples.size), int(n_seeds))


def _over_seeds(per_pair: np.ndarray, full: np.ndarray, groups, n_resamples: int, seed: int):
    """The estimate and the resampled values of a mean over pairs, two-level when ``groups`` (each pair's seed)
    holds more than one seed: (estimate, samples, number of seeds).

    ``per_pair``: (pairs, resamples) differences under the image resamples; ``full``: (pairs,) on all images.
    A seed's value is the mean over its pairs; the estimate is the mean over seeds of those.
    """
    labels = list(range(len(full))) if groups is None else list(groups)
    if len(labels) != len(full):
        raise ValueError(f"groups gives {len(labels)} seeds for {len(full)} pairs")
    seeds = list(dict.fromkeys(labels)) if groups is not None else [0]
    if groups is None:
        return float(np.mean(full)), per_pair.mean(axis=0), 1
    member = np.array([[label == s for label in labels] for s in seeds], dtype=np.float64)  # (seeds, pairs)
    member /= member.sum(axis=1, keepdims=True)
    by_seed, full_by_seed = member @ per_pair, member @ full  # (seeds, resamples), (seeds,)
    if len(seeds) == 1:
        return float(full_by_seed[0]), by_seed[0], 1
    draws = np.random.default_rng([seed, 1]).multinomial(
        len(seeds), np.full(len(seeds), 1.0 / len(seeds)), size=per_pair.shape[1]
    )  # (resamples, seeds): how often each seed is drawn
    samples = (draws * by_seed.T).sum(axis=1) / len(seeds)
    return float(full_by_seed.mean()), samples, len(seeds)


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
    groups: list | None = None,
) -> Interval:
    """Macro F1 of A minus that of B on the same images, with its paired 95% bootstrap interval.

    ``preds_a`` and ``preds_b`` may each be a list of prediction matrices (e.g. one per base variant):
    the difference is then the mean over the pairs, every pair resampled with the same images. ``groups``:
    the training seed of each pair; with more than one seed the interval is two-level (seeds, then images)
    and the estimate the mean over seeds of each seed's mean difference.
    """
    a_list = preds_a if isinstance(preds_a, list) else [preds_a]
    b_list = preds_b if isinstance(preds_b, list) else [preds_b]
    if len(a_list) != len(b_list) or not a_list:
        raise ValueError(f"need as many A as B predictions (got {len(a_list)} and {len(b_list)}), at least one")
    counts = resample_counts(len(y_true), n_resamples, seed)
    full = np.array([macro_f1(y_true, a) - macro_f1(y_true, b) for a, b in zip(a_list, b_list)])
    per_pair = np.array(
        [
            _macro_f1_per_resample(y_true, a, counts) - _macro_f1_per_resample(y_true, b, counts)
            for a, b in zip(a_list, b_list)
        ]
    )
    return _interval(*_estimate_and_samples(per_pair, full, groups, n_resamples, seed, len(y_true)))


def paired_mean_difference(
    values_a: np.ndarray | list[np.ndarray],
    values_b: np.ndarray | list[np.ndarray],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    groups: list | None = None,
) -> Interval:
    """Mean over images of A minus mean of B (per-image values, e.g. each image's loss), paired 95% interval;
    lists are averaged over their pairs, and ``groups`` (each pair's seed) resampled, as in
    :func:`paired_f1_difference`."""
    a_list = values_a if isinstance(values_a, list) else [values_a]
    b_list = values_b if isinstance(values_b, list) else [values_b]
    if len(a_list) != len(b_list) or not a_list:
        raise ValueError(f"need as many A as B value vectors (got {len(a_list)} and {len(b_list)}), at least one")
    diffs = np.array([np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in zip(a_list, b_list)])
    n_images = diffs.shape[1]
    counts = resample_counts(n_images, n_resamples, seed)
    per_pair = diffs @ counts.T / n_images  # (pairs, resamples)
    return _interval(*_estimate_and_samples(per_pair, diffs.mean(axis=1), groups, n_resamples, seed, n_images))


def _estimate_and_samples(per_pair, full, groups, n_resamples, seed, n_images):
    estimate, samples, n_seeds = _over_seeds(per_pair, full, groups, n_resamples, seed)
    return estimate, samples, n_images, n_seeds


def mean_interval(
    values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, groups: list | None = None
) -> Interval:
    """Mean of a few values (e.g. one per model) with its 95% bootstrap interval over those values; with
    ``groups`` (each value's training seed, more than one seed) two-level: seeds, then values within a seed."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no values to average")
    if groups is None or len(set(groups)) < 2:
        counts = resample_counts(values.size, n_resamples, seed)
        return _interval(float(values.mean()), counts @ values / values.size, values.size)
    labels = np.asarray(list(groups))
    seeds = list(dict.fromkeys(groups))
    rng = np.random.default_rng([seed, 2])
    by_seed = [values[labels == s] for s in seeds]
    samples = np.empty(n_resamples)
    for r in range(n_resamples):
        drawn = rng.integers(len(seeds), size=len(seeds))
        samples[r] = np.mean([rng.choice(by_seed[g], size=by_seed[g].size).mean() for g in drawn])
    estimate = float(np.mean([v.mean() for v in by_seed]))
    return _interval(estimate, samples, values.size, len(seeds))
