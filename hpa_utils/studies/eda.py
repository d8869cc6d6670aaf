"""Summaries for the exploratory analysis: tables the EDA notebook shows and plots draws."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpa_utils.data.labels import CHANNELS, CLASS_NAMES, NUM_CLASSES, TRAIN_COUNTS


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
            "kaggle_scaled": kaggle * len(y) / 31072,
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


def describe_dataset(dataset, params: dict, n_val: int | None = None) -> dict:
    """What the run ran on: synthetic or real, sizes, source image size (for the report and run.json)."""
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
        "image_size": params.get("image_size"),
        "has_solution": dataset.solution.is_file(),
    }


def sample_rows(n: int, k: int = 500, seed: int = 0) -> np.ndarray:
    """Up to ``k`` distinct random rows of ``range(n)``, sorted (a cheap sample for per-image statistics)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))
