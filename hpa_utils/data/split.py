"""Multilabel stratified train/validation split (iterative stratification).

As the report did, the split guarantees that every class with at least two
samples appears in both parts, and every class with a single sample is in
training. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from hpa_utils.errors import DataError
from hpa_utils.io import save_table


def stratified_split(y: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split samples into train and validation indices, stratified over all labels.

    Args:
        y: (N, C) multi-hot labels.
        val_fraction: share of samples in validation (0 < f < 1).
        seed: random seed; the same seed and labels give the same split.

    Returns:
        (train_indices, val_indices), each sorted ascending.
    """
    y = np.asarray(y).astype(np.uint8)
    if y.ndim != 2 or len(y) < 2:
        raise ValueError(f"need a (samples, classes) label matrix with at least 2 samples, got shape {y.shape}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(y)), y))
    in_val = np.zeros(len(y), dtype=bool)
    in_val[val] = True
    _guarantee_coverage(y, in_val, np.random.default_rng(seed))
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def _guarantee_coverage(y: np.ndarray, in_val: np.ndarray, rng: np.random.Generator) -> None:
    """Move samples so classes with >= 2 samples are in both parts, singletons in training.

    Moves prefer samples whose other labels are plentiful on the side they leave, so a
    move never takes the last example of another class away from a part.
    """
    totals = y.sum(axis=0)
    # rarest classes first: their moves are the most constrained
    for c in np.argsort(totals, kind="stable"):
        if totals[c] == 0:
            continue
        for _ in range(2):
            train_count = int(y[~in_val, c].sum())
            val_count = int(y[in_val, c].sum())
            if train_count == 0:
                source = in_val  # move one from validation to training
            elif val_count == 0 and totals[c] >= 2:
                source = ~in_val  # move one from training to validation
            else:
                break
            candidates = np.flatnonzero(source & (y[:, c] == 1))
            side_counts = y[source].sum(axis=0)
            # a candidate is safe if every other label it carries has >1 examples on its side
            others = y[candidates].astype(bool)
            others[:, c] = False
            safe = [i for i, mask in zip(candidates, others) if np.all(side_counts[mask] > 1)]
            pool = np.array(safe if safe else candidates)
            pick = pool[np.argmin(y[pool].sum(axis=1) + rng.random(len(pool)) * 0.5)]
            in_val[pick] = not in_val[pick]


def split_frame(ids: list[str], train_indices: np.ndarray, val_indices: np.ndarray) -> pd.DataFrame:
    """The split as a table: ``Id``, ``split`` ("train"/"val"), in the dataset's order."""
    part = np.full(len(ids), "", dtype=object)
    part[train_indices] = "train"
    part[val_indices] = "val"
    return pd.DataFrame({"Id": list(ids), "split": part})


def save_split(path: str | Path, ids: list[str], train_indices: np.ndarray, val_indices: np.ndarray) -> Path:
    """Write the split CSV atomically (temp file + rename)."""
    return save_table(split_frame(ids, train_indices, val_indices), path)


def load_split(path: str | Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a saved split and return index arrays into ``ids``.

    Raises:
        DataError: the file does not cover exactly ``ids`` or has an unknown split name.
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns) != ["Id", "split"]:
        raise DataError(f"{path}: expected header Id,split, found {','.join(frame.columns)}")
    if frame["Id"].tolist() != list(ids):
        raise DataError(f"{path}: the saved split's Ids differ from the dataset's; delete it to split anew")
    bad = frame.index[~frame["split"].isin(["train", "val"])]
    if len(bad):
        raise DataError(f"{path}, line {bad[0] + 2}: split must be 'train' or 'val', found {frame['split'][bad[0]]!r}")
    is_val = (frame["split"] == "val").to_numpy()
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def get_or_make_split(
    path: str | Path, ids: list[str], y: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Load the run's saved split if it matches the dataset, else make and save it."""
    path = Path(path)
    if path.is_file():
        try:
            return load_split(path, ids)
        except DataError:
            pass
    train, val = stratified_split(y, val_fraction, seed)
    save_split(path, ids, train, val)
    return train, val
