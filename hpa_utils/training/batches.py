"""The training input: batches over the memory-mapped image cache, and one run's images, labels and split."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
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
    """Batches from the memory-mapped image cache, reshuffled every epoch, augmented in threads.

    The dataset spans ``epochs`` epochs, from epoch ``first_epoch`` (1-based) on: item ``i`` is batch
    ``i % steps`` of epoch ``first_epoch + i // steps`` (``steps``: batches per epoch). A batch's rows
    (epoch ``e``'s permutation, drawn from ``(seed, e)``) and its augmentation (drawn from
    ``(seed, e, batch)``) depend on its index alone: no state is set at an epoch's begin or end. Keras
    asks for batches from its input thread, ahead of training and across an epoch boundary, before or
    after the epoch callbacks have run (its ``on_epoch_begin`` comes after its prefetching has started),
    so batches built from state set there depended on timing. Train on it with
    ``model.fit(batches, steps_per_epoch=batches.steps, shuffle=False)``: Keras' own ``shuffle`` reorders
    the items with Python's global ``random`` and would mix the epochs.

    ``workers`` threads build the batches after the one asked for (at most ``2 * workers`` ahead, while
    they are asked for in order), in a pool of this dataset's own rather than Keras' PyDataset workers
    (whose queue restarts at item 0 every epoch); the batches are the same with any number of threads.

    Args:
        images: (N, H, W, 4) uint8 array or memmap (the whole split).
        labels: (N, C) multi-hot labels, or None for prediction.
        indices: rows of ``images`` in this dataset (e.g. the training part of the split).
        batch_size: samples per batch.
        shuffle: reshuffle the rows at every epoch.
        seed: the run's seed.
        augmenter: an :class:`~hpa_utils.training.augment.Augmenter`, or None.
        workers: threads building batches.
        transform: a function of a (B, H, W, C) batch, applied last (e.g. a test-time flip), or None.
        first_epoch: the epoch (from 1) of the first item, e.g. ``done + 1`` for a resumed job.
        epochs: how many epochs the items span.
    """

    def __init__(
        self,
        images,
        labels,
        indices,
        batch_size,
        shuffle=False,
        seed=0,
        augmenter=None,
        workers=1,
        transform=None,
        first_epoch=1,
        epochs=1,
    ):
        # workers=1 for Keras: no PyDataset enqueuer; the threads are this dataset's own (see above)
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.indices = np.asarray(indices)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augmenter = augmenter
        self.transform = transform
        self.threads = max(1, int(workers))
        self.first_epoch = int(first_epoch)
        self.epochs = int(epochs)
        if self.first_epoch < 1 or self.epochs < 1:
            raise ValueError(f"first_epoch and epochs must be at least 1, got {first_epoch} and {epochs}")
        self.steps = int(np.ceil(len(self.indices) / self.batch_size))
        self._lock = threading.Lock()
        self._orders: dict[int, np.ndarray] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future] = {}
        self._next = 0  # the index after the last one asked for

    def __len__(self) -> int:
        return self.steps * self.epochs

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The rows of epoch ``epoch`` (from 1) in their order: a permutation drawn from ``(seed, epoch)``
        when shuffling, else ``indices``."""
        if not self.shuffle:
            return self.indices
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                order = np.random.default_rng([self.seed, int(epoch)]).permutation(self.indices)
                self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}  # keep two epochs
                self._orders[epoch] = order
        return order

    def batch(self, epoch: int, index: int):
        """Batch ``index`` of epoch ``epoch`` (from 1): a function of (seed, epoch, index) and the data only."""
        rows = self.epoch_order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        sorted_rows = np.sort(rows)  # memmap reads in file order
        x = self.images[sorted_rows]
        x = x[np.searchsorted(sorted_rows, rows)]
        if self.augmenter is not None:
            x = self.augmenter.augment(x, seed=(int(epoch), int(index)))
        if self.transform is not None:
            x = self.transform(x)
        x = x.astype(np.float32) * np.float32(1 / 255)
        if self.labels is None:
            return (x,)
        return x, self.labels[rows]

    def __getitem__(self, index: int):
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self.threads == 1:
            return self._build(index)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hpa-batches")
            future = self._ahead.pop(index, None) or self._pool.submit(self._build, index)
            sequential, self._next = index in (0, self._next), index + 1
            if sequential:  # build the next ones meanwhile (not when asked in another order: Keras' shuffle)
                for behind in [i for i in self._ahead if i < index]:
                    self._ahead.pop(behind).cancel()
                for ahead in range(index + 1, min(index + 1 + 2 * self.threads, len(self))):
                    if ahead not in self._ahead:
                        self._ahead[ahead] = self._pool.submit(self._build, ahead)
        return future.result()

    def _build(self, index: int):
        return self.batch(self.first_epoch + index // self.steps, index % self.steps)

    def close(self) -> None:
        """Stop the threads (batches built ahead are dropped)."""
        with self._lock:
            for future in self._ahead.values():
                future.cancel()
            self._ahead.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


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

    def batches(self, part: str, settings: TrainSettings, first_epoch: int = 1, epochs: int = 1) -> CachedBatches:
        """The training batches (shuffled, augmented; with ``settings.oversample``, images of rare classes
        repeated by :func:`repeat_factor_rows`) or the validation batches (neither), of ``epochs`` epochs
        from epoch ``first_epoch`` on (see :class:`CachedBatches`)."""
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
            first_epoch=first_epoch,
            epochs=epochs,
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
