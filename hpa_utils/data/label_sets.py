"""The label sets of Kaggle's training set: which classes occur together, and how often.

The package ships ``kaggle_labels/train_label_sets.csv`` (its ``README.md`` gives the source and licence):
each of the 577 distinct Target strings of the competition's ``train.csv`` with the number of images that
carry it. :func:`train_label_sets` reads it once; the helpers count classes, pairs and lifts in it, or in
any other list of label sets (e.g. a synthetic ``train.csv``), so that the two can be compared.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from hpa_utils.data.labels import NUM_CLASSES, parse_target

#: The shipped file, relative to this package (``hpa_utils.data``).
LABEL_SETS_FILE = ("kaggle_labels", "train_label_sets.csv")


@dataclass(frozen=True)
class LabelSets:
    """Distinct label sets and how many images carry each, in the file's order (most common first).

    Attributes:
        sets: ascending tuples of class ids, all distinct.
        counts: (len(sets),) int64, read-only: images per set.
    """

    sets: tuple[tuple[int, ...], ...]
    counts: np.ndarray

    @property
    def n_images(self) -> int:
        """Images in all: the sum of the counts."""
        return int(self.counts.sum())

    def multihot(self) -> np.ndarray:
        """(len(sets), 28) uint8: one row per set."""
        return _multihot(self.sets)

    def probabilities(self, prior_shift: float = 0.0) -> np.ndarray:
        """Probability of each set: proportional to ``count ** (1 - prior_shift)``.

        ``prior_shift`` 0 gives the sets' own frequencies (the training prior), 1 makes every set equally
        likely; values between tilt the prior toward the rare sets.

        Raises:
            ValueError: ``prior_shift`` is outside 0..1.
        """
        if not 0.0 <= float(prior_shift) <= 1.0:
            raise ValueError(f"prior_shift must be in 0..1, got {prior_shift}")
        weights = self.counts.astype(np.float64) ** (1.0 - float(prior_shift))
        return weights / weights.sum()


@functools.cache
def train_label_sets() -> LabelSets:
    """Kaggle's training label sets (577 sets, 31,072 images), read once from the package's file.

    Raises:
        ValueError: the file is malformed (a bad Target, a count below 1, a set twice).
    """
    node = resources.files("hpa_utils.data")
    for part in LABEL_SETS_FILE:
        node = node / part
    rows = list(csv.DictReader(io.StringIO(node.read_text(encoding="utf-8"))))
    sets = tuple(tuple(parse_target(row["Target"])) for row in rows)
    counts = np.array([int(row["count"]) for row in rows], dtype=np.int64)
    if len(set(sets)) != len(sets) or (counts < 1).any():
        raise ValueError(f"{'/'.join(LABEL_SETS_FILE)}: every set must appear once, with a count of at least 1")
    counts.setflags(write=False)
    return LabelSets(sets, counts)


def _multihot(label_sets: Iterable[Sequence[int]]) -> np.ndarray:
    rows = [list(s) for s in label_sets]
    out = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    lengths = [len(ids) for ids in rows]
    out[np.repeat(np.arange(len(rows)), lengths), [c for ids in rows for c in ids]] = 1
    return out


def _weighted(label_sets: Iterable[Sequence[int]] | None, weights: Sequence[float] | None):
    """(multi-hot float64 rows, weights): Kaggle's sets and counts when ``label_sets`` is None."""
    if label_sets is None:
        kaggle = train_label_sets()
        return kaggle.multihot().astype(np.float64), kaggle.counts.astype(np.float64)
    hot = _multihot(label_sets).astype(np.float64)
    w = np.ones(len(hot)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(hot),):
        raise ValueError(f"expected {len(hot)} weights, got shape {w.shape}")
    return hot, w


def class_counts(
    label_sets: Iterable[Sequence[int]] | None = None, weights: Sequence[float] | None = None
) -> np.ndarray:
    """(28,) images per class. Default: Kaggle's training set, from the label-set file (equal to
    ``labels.TRAIN_COUNTS``); else the given sets, each counted ``weights[i]`` times (default once).
    Integers, unless ``weights`` are given (then floats)."""
    hot, w = _weighted(label_sets, weights)
    return np.rint(w @ hot).astype(np.int64) if weights is None else w @ hot


def cooccurrence(
    label_sets: Iterable[Sequence[int]] | None = None, weights: Sequence[float] | None = None
) -> np.ndarray:
    """(28, 28) images that carry both class a and class b; the diagonal holds :func:`class_counts`.

    Default: Kaggle's training set; else the given sets, weighted as in :func:`class_counts`.
    """
    hot, w = _weighted(label_sets, weights)
    both = hot.T @ (hot * w[:, None])
    return np.rint(both).astype(np.int64) if weights is None else both


def conditional_frequencies(
    label_sets: Iterable[Sequence[int]] | None = None, weights: Sequence[float] | None = None
) -> np.ndarray:
    """(28, 28) P(b | a): row a is the share of the images of class a that also carry class b (the
    diagonal is 1); NaN for a class that does not occur."""
    both = cooccurrence(label_sets, weights).astype(np.float64)
    diag = np.diag(both).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(diag[:, None] > 0, both / diag[:, None], np.nan)


def lift_matrix(
    label_sets: Iterable[Sequence[int]] | None = None, weights: Sequence[float] | None = None
) -> np.ndarray:
    """(28, 28) lift P(a and b) / (P(a) P(b)) of every pair: 1 for classes that occur independently, above 1
    for classes that come together. NaN where a class does not occur."""
    hot, w = _weighted(label_sets, weights)
    n = w.sum()
    both = hot.T @ (hot * w[:, None])
    single = np.diag(both).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.outer(single, single) > 0, both * n / np.outer(single, single), np.nan)


def lift(
    a: int, b: int, label_sets: Iterable[Sequence[int]] | None = None, weights: Sequence[float] | None = None
) -> float:
    """The lift P(a and b) / (P(a) P(b)) of classes ``a`` and ``b`` (Kaggle's training set by default);
    NaN when either class does not occur."""
    for c in (a, b):
        if not 0 <= int(c) < NUM_CLASSES:
            raise ValueError(f"class id {c} is outside 0..{NUM_CLASSES - 1}")
    return float(lift_matrix(label_sets, weights)[int(a), int(b)])
