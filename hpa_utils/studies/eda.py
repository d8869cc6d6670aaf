"""The exploratory analysis (notebook 01): the dataset, its classes, labels, stains and the split.

:func:`explore` is the study: it reads the dataset, makes (or reuses) the run's split, writes the
tables under ``results/`` and returns an :class:`EdaResult` that the notebook shows and plots.
The small summaries it is made of are public for the tests and for other callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa_utils.config.run_config import RunConfig
from hpa_utils.data.labels import CHANNELS, CLASS_NAMES, N_TRAIN_KAGGLE, NUM_CLASSES, TRAIN_COUNTS
from hpa_utils.io import save_table, write_json_atomic


def class_counts(y: np.ndarray) -> pd.DataFrame:
    """Images per class in ``y`` beside Kaggle's training counts scaled to the same number of images.

    Returns:
        Columns class_id, class_name, count, share, kaggle_count, kaggle_scaled.
    """
    y = np.asarray(y)
    counts = y.sum(axis=0).astype(int)
    kaggle = np.asarray(TRAIN_COUNTS)
    return pd.DataFrame(
        {
            "class_id": np.arange(NUM_CLASSES),
            "class_name": CLASS_NAMES,
            "count": counts,
            "share": counts / max(len(y), 1),
            "kaggle_count": kaggle,
            "kaggle_scaled": kaggle * len(y) / N_TRAIN_KAGGLE,
        }
    )


def labels_per_image(y: np.ndarray) -> pd.Series:
    """Number of images with 1, 2, ... labels."""
    sizes = np.asarray(y).sum(axis=1).astype(int)
    return pd.Series(sizes).value_counts().sort_index().rename("images").rename_axis("labels per image")


def channel_stats(images: np.ndarray, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Per-image mean and standard deviation of every channel (long format: image, channel, mean, std)."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    records = []
    for row in rows:
        pixels = np.asarray(images[row], dtype=np.float32).reshape(-1, len(CHANNELS))
        for channel, mean, std in zip(CHANNELS, pixels.mean(axis=0), pixels.std(axis=0)):
            records.append({"image": int(row), "channel": channel, "mean": float(mean), "std": float(std)})
    return pd.DataFrame(records)


def montage_rows(y: np.ndarray, n: int = 8, seed: int = 0) -> np.ndarray:
    """Rows for a montage that shows many different classes: each pick adds the most unseen labels."""
    y = np.asarray(y).astype(bool)
    order = np.random.default_rng(seed).permutation(len(y))  # random tie-breaking
    seen = np.zeros(y.shape[1], dtype=bool)
    chosen: list[int] = []
    for _ in range(min(n, len(y))):
        new = (y[order] & ~seen).sum(axis=1)
        new[np.isin(order, chosen)] = -1
        row = int(order[int(np.argmax(new))])
        chosen.append(row)
        seen |= y[row]
    return np.array(chosen)


def split_counts(y: np.ndarray, train_indices: np.ndarray, val_indices: np.ndarray) -> pd.DataFrame:
    """Per class: images in training and validation, and the validation share."""
    y = np.asarray(y)
    train = y[train_indices].sum(axis=0).astype(int)
    val = y[val_indices].sum(axis=0).astype(int)
    total = np.maximum(train + val, 1)
    return pd.DataFrame(
        {
            "class_id": np.arange(NUM_CLASSES),
            "class_name": CLASS_NAMES,
            "train": train,
            "val": val,
            "val_share": val / total,
        }
    )


def describe_dataset(dataset, image_size: int | None = None, n_val: int | None = None) -> dict:
    """What the run ran on: synthetic or real, sizes, source image size (for the report and run.json)."""
    # deferred: OpenCV
    from hpa_utils.data.dataset import read_png_header

    first = dataset.train_dir / f"{dataset.train_ids[0]}_green.png"
    width, height, _, _ = read_png_header(first)
    synthetic = (dataset.root / "synth.json").is_file()
    return {
        "kind": "synthetic" if synthetic else "real",
        "data_dir": str(dataset.root),
        "n_train": len(dataset.train_ids),
        "n_test": len(dataset.test_ids),
        "n_val": n_val,
        "image_size_source": f"{width}x{height}",
        "image_size": image_size,
        "has_solution": dataset.solution.is_file(),
    }


def sample_rows(n: int, k: int = 500, seed: int = 0) -> np.ndarray:
    """Up to ``k`` distinct random rows of ``range(n)``, sorted (a cheap sample for per-image statistics)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


MONTAGE_IMAGES = 8
MONTAGE_SIZE = 256  # px: sample images are shown sharper than the models see them
CHANNEL_STATS_SAMPLE = 500  # images: per-image intensities from a random sample are enough for the figure


@dataclass
class EdaResult:
    """What notebook 01 shows: every table is also written under the run's ``results/``.

    Attributes:
        description: what the run ran on (``results/dataset.json``).
        y: (N, 28) multi-hot training labels.
        class_counts: images per class beside Kaggle's (``results/class_counts.csv``).
        labels_per_image: images with 1, 2, ... labels.
        montage: (n, MONTAGE_SIZE, MONTAGE_SIZE, 4) uint8 sample images and ``montage_titles``, their labels.
        channel_stats: per-image mean/std of each stain, from a random sample of the decoded cache.
        split_balance: per-class counts on each side of the split (``results/split_balance.csv``).
        train_indices, val_indices: the run's split (``results/split_seed*_val*.csv``).
    """

    description: dict
    y: np.ndarray
    class_counts: pd.DataFrame
    labels_per_image: pd.Series
    montage: np.ndarray
    montage_titles: list[str]
    channel_stats: pd.DataFrame
    split_balance: pd.DataFrame
    train_indices: np.ndarray
    val_indices: np.ndarray


def explore(config: RunConfig) -> EdaResult:
    """Notebook 01's study: read and describe the dataset, make the split, build the image cache."""
    # deferred: OpenCV, scikit-learn
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import load_samples, open_dataset
    from hpa_utils.data.split import get_or_make_split

    paths = config.paths.make()
    data = open_dataset(config.data_dir)
    y = data.y
    fraction = config.data.val_fraction
    train_idx, val_idx = get_or_make_split(
        paths.split_file(config.seed, fraction), data.train_ids, y, fraction, config.seed
    )
    description = describe_dataset(data, config.data.image_size, n_val=len(val_idx))
    write_json_atomic(paths.results / "dataset.json", description)
    counts = class_counts(y)
    save_table(counts, paths.results / "class_counts.csv")
    balance = split_counts(y, train_idx, val_idx)
    save_table(balance, paths.results / "split_balance.csv")
    rows = montage_rows(y, n=MONTAGE_IMAGES, seed=config.seed)
    montage = load_samples(data.train_dir, [data.train_ids[r] for r in rows], size=MONTAGE_SIZE)
    images = open_cache(data, "train", config.data.image_size, config.cache_dir, workers=config.workers)
    stats = channel_stats(images, sample_rows(len(y), CHANNEL_STATS_SAMPLE, config.seed))
    return EdaResult(
        description=description,
        y=y,
        class_counts=counts,
        labels_per_image=labels_per_image(y),
        montage=montage,
        montage_titles=[data.train["labels"][r] for r in rows],
        channel_stats=stats,
        split_balance=balance,
        train_indices=train_idx,
        val_indices=val_idx,
    )
