"""The EDA summaries the first notebook shows."""

from __future__ import annotations

import numpy as np

from hpa_utils.data.labels import NUM_CLASSES
from hpa_utils.studies import eda


def _labels() -> np.ndarray:
    y = np.zeros((10, NUM_CLASSES), dtype=np.uint8)
    y[:6, 0] = 1
    y[[1, 7], 5] = 1
    y[8, 27] = 1
    y[[6, 9], 12] = 1
    y[[2, 3], 25] = 1
    y[4:6, 25] = 1
    y[7, 0] = 1
    return y


def test_class_counts_and_labels_per_image():
    y = _labels()
    counts = eda.class_counts(y)
    assert (
        counts.loc[0, "count"] == 7 and counts.loc[27, "count"] == 1 and counts.loc[27, "class_name"] == "Rods & rings"
    )
    assert counts["kaggle_scaled"].sum() > 0
    per_image = eda.labels_per_image(y)
    assert per_image.to_dict() == {1: 4, 2: 6}


def test_montage_rows_cover_as_many_classes_as_possible():
    y = _labels()
    rows = eda.montage_rows(y, n=4, seed=0)
    assert len(set(rows)) == 4
    covered = y[rows].any(axis=0).sum()
    assert covered == y.any(axis=0).sum()  # 5 classes fit in 4 images here


def test_channel_stats_long_format_and_split_counts():
    images = np.zeros((3, 8, 8, 4), dtype=np.uint8)
    images[1, ..., 2] = 100
    stats = eda.channel_stats(images)
    assert len(stats) == 12 and stats.query("image == 1 and channel == 'blue'")["mean"].item() == 100
    y = _labels()
    balance = eda.split_counts(y, np.arange(7), np.arange(7, 10))
    assert balance.loc[0, "train"] == 6 and balance.loc[0, "val"] == 1
    assert np.array_equal(eda.sample_rows(10, 20, 0), np.arange(10))
