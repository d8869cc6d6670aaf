"""The training input: batches over the memory-mapped image cache, and one run's images, labels and split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpa_utils.backend import keras
from hpa_utils.data.cache import open_cache
from hpa_utils.data.dataset import open_dataset
from hpa_utils.data.split import get_or_make_split
from hpa_utils.training.augment import Augmenter
from hpa_utils.training.settings import TrainSettings


class CachedBatches(keras.utils.PyDataset):
    """Batches from the memory-mapped image cache, reshuffled every epoch, augmented in the workers.

    Batch ``i`` of epoch ``e`` depends only on (seed, e, i), so worker threads may build batches
    in any order and the run stays deterministic.

    Args:
        images: (N, H, W, 4) uint8 array or memmap (the whole split).
        labels: (N, C) multi-hot labels, or None for prediction.
        indices: rows of ``images`` in this dataset (e.g. the training part of the split).
        batch_size: samples per batch.
        shuffle: reshuffle the rows at every epoch.
        seed: the run's seed.
        augmenter: an :class:`~hpa_utils.training.augment.Augmenter`, or None.
        workers: threads building batches (Keras' PyDataset pool).
        transform: a function of a (B, H, W, C) batch, applied last (e.g. a test-time flip), or None.
    """

    def __init__(
        self, images, labels, indices, batch_size, shuffle=False, seed=0, augmenter=None, workers=1, transform=None
    ):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max(4, 2 * workers))
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.indices = np.asarray(indices)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augmenter = augmenter
        self.transform = transform
        self.epoch = 0
        self.order = self.indices

    def __len__(self) -> int:
        return int(np.ceil(len(self.indices) / self.batch_size))

    def on_epoch_begin(self) -> None:
        self.epoch += 1
        if self.shuffle:
            self.order = np.random.default_rng([self.seed, self.epoch]).permutation(self.indices)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        sorted_rows = np.sort(rows)  # memmap reads in file order
        x = self.images[sorted_rows]
        x = x[np.searchsorted(sorted_rows, rows)]
        if self.augmenter is not None:
            x = self.augmenter.augment(x, seed=self.epoch * 100003 + index)
        if self.transform is not None:
            x = self.transform(x)
        x = x.astype(np.float32) * np.float32(1 / 255)
        if self.labels is None:
            return (x,)
        return x, self.labels[rows]


@dataclass
class TrainingData:
    """The images and labels of one run: the cache, the labels, and the split.

    Opened by :func:`load_training_data`, it remembers its ``source`` (that function's arguments) and
    pickles as that, so a worker process re-opens the memory-mapped cache instead of receiving a copy
    of every image.
    """

    images: np.ndarray
    y: np.ndarray
    train_indices: np.ndarray
    val_indices: np.ndarray
    workers: int = 2
    source: dict | None = None

    def __reduce__(self):
        if self.source is None:
            return super().__reduce__()
        return (_reopen, (self.source,))

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def batches(self, part: str, settings: TrainSettings) -> CachedBatches:
        """The training batches (shuffled, augmented; with ``settings.oversample``, images of rare classes
        repeated by :func:`repeat_factor_rows`) or the validation batches (neither)."""
        training = part == "train"
        rows = self.train_indices if training else self.val_indices
        if training and settings.oversample:
            rows = repeat_factor_rows(self.y, rows, settings.oversample_threshold, settings.seed)
        return CachedBatches(
            self.images,
            self.y,
            rows,
            settings.batch_size,
            shuffle=training,
            seed=settings.seed,
            augmenter=Augmenter(seed=settings.seed, enabled=settings.augment) if training else None,
            workers=self.workers,
        )


def repeat_factors(y: np.ndarray, threshold: float) -> np.ndarray:
    """Repeat-factor sampling (Gupta et al., LVIS, 2019): each image's expected number of copies per epoch.

    A class seen in a share ``f_c`` of the images gets ``r_c = max(1, sqrt(threshold / f_c))``; an image
    gets the largest ``r_c`` of its labels (1 for an image without labels). Classes at least as common as
    ``threshold`` are not repeated; a class 100 times rarer than it is repeated 10 times.

    Args:
        y: (N, C) multi-hot labels of the images sampled from.
        threshold: the share of images above which a class is not oversampled, in (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"oversample threshold must be in (0, 1], got {threshold}")
    y = np.asarray(y, dtype=bool)
    share = y.mean(axis=0)
    with np.errstate(divide="ignore"):
        per_class = np.where(share > 0, np.sqrt(threshold / np.maximum(share, 1e-12)), 1.0)
    per_class = np.maximum(per_class, 1.0)
    return np.where(y, per_class[None, :], 1.0).max(axis=1, initial=1.0)


def repeat_factor_rows(y: np.ndarray, rows: np.ndarray, threshold: float, seed: int = 0) -> np.ndarray:
    """``rows`` with each repeated ``floor(r) + (u < frac(r))`` times (``r`` from :func:`repeat_factors` on
    the rows' own labels, ``u`` uniform from ``seed``): the same rows for one seed, so an epoch has a
    fixed length and a resumed run sees the same epochs."""
    rows = np.asarray(rows)
    factors = repeat_factors(np.asarray(y)[rows], threshold)
    whole = np.floor(factors)
    extra = np.random.default_rng([int(seed), 7919]).random(len(rows)) < factors - whole
    return np.repeat(rows, (whole + extra).astype(np.int64))


def load_training_data(
    data_dir: str | Path,
    cache_dir: str | Path,
    image_size: int,
    split_path: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 2,
) -> TrainingData:
    """Open the dataset, its decoded cache at ``image_size`` and the run's saved split (made if missing)."""
    source = {
        "data_dir": str(data_dir),
        "cache_dir": str(cache_dir),
        "image_size": int(image_size),
        "split_path": str(split_path),
        "val_fraction": float(val_fraction),
        "seed": int(seed),
        "workers": int(workers),
    }
    dataset = open_dataset(data_dir)
    images = open_cache(dataset, "train", image_size, cache_dir, workers=workers)
    y = dataset.y
    train, val = get_or_make_split(split_path, dataset.train_ids, y, val_fraction, seed)
    return TrainingData(images, y, train, val, workers=workers, source=source)


def _reopen(source: dict) -> TrainingData:
    return load_training_data(**source)
