"""The data layer: reader, validation of every bad-input case, decoded-image cache, split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from hpa_utils.data.cache import cache_files, open_cache
from hpa_utils.data.dataset import load_sample, open_dataset, read_labels, validate_dataset
from hpa_utils.data.labels import NUM_CLASSES, multihot_to_target, parse_target, target_to_multihot
from hpa_utils.data.split import get_or_make_split, load_split, stratified_split
from hpa_utils.errors import DataError

# ----------------------------------------------------------------------------- labels


def test_target_round_trips_through_multihot():
    vector = target_to_multihot("16 0")
    assert vector.shape == (NUM_CLASSES,) and vector.sum() == 2 and vector[0] == vector[16] == 1
    assert multihot_to_target(vector) == "0 16"


@pytest.mark.parametrize("bad", ["", "  ", "28", "-1", "a", "1.5", "3,4"])
def test_parse_target_rejects_bad_tokens(bad):
    with pytest.raises(ValueError):
        parse_target(bad)


# ----------------------------------------------------------------------------- real sample


def test_real_sample_loads_as_rgby_uint8_at_requested_size(real_sample):
    dataset = open_dataset(real_sample)
    assert len(dataset.train_ids) == 40
    sample_id = dataset.train_ids[0]
    image = dataset.load("train", sample_id, size=128)
    assert image.shape == (128, 128, 4) and image.dtype == np.uint8
    native = dataset.load("train", sample_id)
    assert native.shape == (512, 512, 4)
    # channel order R, G, B, Y: channel 1 is the green file, area-resized
    green = cv2.imread(str(dataset.train_dir / f"{sample_id}_green.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(image[..., 1], cv2.resize(green, (128, 128), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(native[..., 3], cv2.imread(str(dataset.train_dir / f"{sample_id}_yellow.png"), 0))


def test_real_sample_validates_with_summary(real_sample):
    report = validate_dataset(real_sample)
    assert report.ok, report.problems
    assert report.n_train == 40 and report.class_counts[0] == 13
    assert "512x512 (160 files)" in report.summary()


def test_real_sample_cache_matches_direct_loading(real_sample, tmp_path):
    dataset = open_dataset(real_sample)
    cached = open_cache(dataset, "train", 96, tmp_path / "cache")
    assert cached.shape == (40, 96, 96, 4)
    for index in (0, 17, 39):
        np.testing.assert_array_equal(cached[index], dataset.load("train", dataset.train_ids[index], 96))
    # nothing was written beside the (read-only) data
    assert not any(p.name.startswith(".") for p in real_sample.iterdir())


# ----------------------------------------------------------------------------- generated data


def test_tiny_dataset_reads_train_and_test(tiny_dataset):
    dataset = open_dataset(tiny_dataset)
    assert dataset.train_ids[:2] == ["id000", "id001"] and dataset.test_ids == ["test000", "test001"]
    assert dataset.y.shape == (6, NUM_CLASSES)
    assert dataset.load("test", "test001", 32).shape == (32, 32, 4)


def test_cache_is_reused_then_rebuilt_when_a_source_changes(tiny_dataset, tmp_path):
    dataset = open_dataset(tiny_dataset)
    cache_dir = tmp_path / "cache"
    first = open_cache(dataset, "train", 32, cache_dir)
    npy, manifest = cache_files(cache_dir, "train", 32)
    stamp = npy.stat().st_mtime_ns
    again = open_cache(dataset, "train", 32, cache_dir)
    assert npy.stat().st_mtime_ns == stamp, "a matching cache must be reused"
    np.testing.assert_array_equal(first, again)
    assert json.loads(manifest.read_text())["ids"] == dataset.train_ids
    # change one source image: the cache must be rebuilt with the new pixels
    path = tiny_dataset / "train" / "id002_blue.png"
    cv2.imwrite(str(path), np.full((64, 64), 200, np.uint8))
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    rebuilt = open_cache(dataset, "train", 32, cache_dir)
    assert (rebuilt[2, ..., 2] == 200).all()


def test_interrupted_cache_build_leaves_no_valid_looking_cache(tiny_dataset, tmp_path):
    dataset = open_dataset(tiny_dataset)
    (tiny_dataset / "train" / "id004_red.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match="id004_red.png"):
        open_cache(dataset, "train", 32, cache_dir)
    npy, manifest = cache_files(cache_dir, "train", 32)
    assert not npy.exists() and not manifest.exists()
    assert list(cache_dir.iterdir()) == []


def test_stale_manifest_without_array_is_rebuilt(tiny_dataset, tmp_path):
    dataset = open_dataset(tiny_dataset)
    cache_dir = tmp_path / "cache"
    open_cache(dataset, "train", 32, cache_dir)
    npy, _ = cache_files(cache_dir, "train", 32)
    npy.write_bytes(b"garbage")  # e.g. a half-copied file
    assert open_cache(dataset, "train", 32, cache_dir).shape == (6, 32, 32, 4)


# ----------------------------------------------------------------------------- bad input


def _corrupt(root: Path, case: str) -> str:
    """Break ``root`` in one way; return a fragment the error must contain."""
    csv = root / "train.csv"
    train = root / "train"
    if case == "missing train.csv":
        csv.unlink()
        return "train.csv: file not found"
    if case == "missing column":
        csv.write_text(csv.read_text().replace("Id,Target", "Id,Labels"))
        return "missing column(s) Target"
    if case == "token not an integer":
        csv.write_text(csv.read_text().replace("id002,2 5", "id002,2 five"))
        return "line 4: Target token 'five'"
    if case == "token out of range":
        csv.write_text(csv.read_text().replace("id002,2 5", "id002,2 28"))
        return "line 4: Target token '28' is outside"
    if case == "empty target":
        csv.write_text(csv.read_text().replace("id002,2 5", "id002,"))
        return "line 4: Target is empty"
    if case == "duplicate id":
        csv.write_text(csv.read_text().replace("id003,", "id001,"))
        return "line 5: duplicate Id 'id001' (first on line 3)"
    if case == "id with path separator":
        csv.write_text(csv.read_text().replace("id003,", "../id003,"))
        return "line 5: Id '../id003' is not a plain name"
    if case == "missing channel file":
        (train / "id001_yellow.png").unlink()
        return "id001_yellow.png: channel file is missing"
    if case == "truncated png":
        path = train / "id003_green.png"
        path.write_bytes(path.read_bytes()[:200])
        return "id003_green.png: unreadable or truncated PNG"
    if case == "not a png":
        (train / "id003_green.png").write_bytes(b"hello")
        return "id003_green.png: not a PNG file"
    if case == "rgb png":
        cv2.imwrite(str(train / "id005_red.png"), np.zeros((64, 64, 3), np.uint8))
        return "id005_red.png: expected an 8-bit single-channel PNG, found 8-bit RGB"
    if case == "16-bit png":
        cv2.imwrite(str(train / "id005_red.png"), np.zeros((64, 64), np.uint16))
        return "id005_red.png: expected an 8-bit single-channel PNG, found 16-bit greyscale"
    if case == "channel sizes differ":
        cv2.imwrite(str(train / "id000_blue.png"), np.zeros((32, 32), np.uint8))
        return "id000_*.png: channels have different sizes (red 64x64, green 64x64, blue 32x32, yellow 64x64)"
    raise AssertionError(case)


BAD_CASES = [
    "missing train.csv",
    "missing column",
    "token not an integer",
    "token out of range",
    "empty target",
    "duplicate id",
    "id with path separator",
    "missing channel file",
    "truncated png",
    "not a png",
    "rgb png",
    "16-bit png",
    "channel sizes differ",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_validate_reports_each_bad_input_with_file_and_row(tmp_path, case):
    root = _write_labelled(tmp_path)
    expected = _corrupt(root, case)
    report = validate_dataset(root)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems
    assert all(str(root) in problem for problem in report.problems), report.problems


@pytest.mark.parametrize("case", ["token out of range", "truncated png", "rgb png", "channel sizes differ"])
def test_cli_validate_exits_nonzero_with_one_line_per_problem_and_no_traceback(tmp_path, case):
    root = _write_labelled(tmp_path)
    expected = _corrupt(root, case)
    result = subprocess.run(
        [sys.executable, "-m", "hpa_utils", "validate", str(root)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["missing channel file", "truncated png", "16-bit png", "channel sizes differ"])
def test_loader_raises_the_same_data_error(tmp_path, case):
    root = _write_labelled(tmp_path)
    expected = _corrupt(root, case)
    dataset = open_dataset(root)
    with pytest.raises(DataError) as info:
        for sample_id in dataset.train_ids:
            load_sample(dataset.train_dir, sample_id, 32)
    assert expected in str(info.value)


@pytest.mark.parametrize("case", ["token not an integer", "duplicate id", "id with path separator"])
def test_reader_raises_data_error_for_bad_csv_rows(tmp_path, case):
    root = _write_labelled(tmp_path)
    expected = _corrupt(root, case)
    with pytest.raises(DataError, match=expected.split(": ", 1)[0]) as info:
        read_labels(root / "train.csv")
    assert expected in str(info.value)


def test_cli_validate_prints_summary_and_exits_zero_on_good_data(tiny_dataset):
    result = subprocess.run(
        [sys.executable, "-m", "hpa_utils", "validate", str(tiny_dataset)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "6 training Ids, 2 test Ids" in result.stdout and "images per class" in result.stdout


def _write_labelled(tmp_path: Path) -> Path:
    from conftest import write_tiny_dataset

    root = write_tiny_dataset(tmp_path / "data")
    # make row texts predictable for the corruptions: id00i -> "i i+3"
    frame = pd.read_csv(root / "train.csv", dtype=str)
    assert frame.loc[2, "Target"] == "2 5"
    return root


# ----------------------------------------------------------------------------- split


def _rare_labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((300, NUM_CLASSES)) < np.linspace(0.3, 0.002, NUM_CLASSES)).astype(np.uint8)
    y[rng.integers(0, 300, 40), 0] = 1
    y[:, 26] = 0
    y[[5, 77], 26] = 1  # a class with exactly two samples
    y[:, 27] = 0
    y[123, 27] = 1  # a class with a single sample
    y[y.sum(axis=1) == 0, 0] = 1
    return y


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_puts_every_class_in_training_and_classes_of_two_in_both(seed):
    y = _rare_labels(seed)
    train, val = stratified_split(y, val_fraction=0.2, seed=seed)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(y)
    totals = y.sum(axis=0)
    assert np.all(y[train].sum(axis=0)[totals > 0] > 0)
    assert np.all(y[val].sum(axis=0)[totals >= 2] > 0)
    assert y[train, 27].sum() == 1
    assert 0.15 < len(val) / len(y) < 0.25


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    y = _rare_labels()
    a = stratified_split(y, 0.2, seed=7)
    b = stratified_split(y, 0.2, seed=7)
    c = stratified_split(y, 0.2, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_is_saved_and_reloaded_with_the_run(tmp_path):
    y = _rare_labels()
    ids = [f"s{i}" for i in range(len(y))]
    path = tmp_path / "results" / "split.csv"
    train, val = get_or_make_split(path, ids, y, 0.2, seed=3)
    assert path.is_file()
    again = load_split(path, ids)
    np.testing.assert_array_equal(again[1], val)
    with pytest.raises(DataError, match="differ"):
        load_split(path, ids[:-1])
