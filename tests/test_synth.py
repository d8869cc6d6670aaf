"""Tests of the synthetic HPA dataset generator (small sizes: a few seconds)."""

from __future__ import annotations

import csv
import multiprocessing
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_utils.data import synth
from hpa_utils.data.labels import CHANNELS, LABELS_PER_IMAGE_COUNTS, NUM_CLASSES, TRAIN_COUNTS, parse_target
from hpa_utils.errors import DataError

ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SMALL = dict(n_train=12, n_test=6, size=64)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*/*.png"))}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Seed 0 with one and two workers, and seed 1."""
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for name, seed, workers in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
        out[name] = root / name
        summary = synth.generate_dataset(out[name], seed=seed, workers=workers, **SMALL)
        assert summary["skipped"] is False
    return out


def test_kaggle_layout_and_csvs(datasets):
    root = datasets["a"]
    assert sorted(p.name for p in root.iterdir()) == [
        "sample_submission.csv",
        "solution.csv",
        "synth.json",
        "test",
        "train",
        "train.csv",
    ]
    assert not list(root.parent.glob("*.tmp-*"))

    header, train = _rows(root / "train.csv")
    assert header == ["Id", "Target"] and len(train) == SMALL["n_train"]
    for row in train:
        assert ID_RE.match(row["Id"]) and row["Id"].endswith("-ac1f6b6435d0")
        assert 1 <= len(parse_target(row["Target"])) <= 5
    header, sub = _rows(root / "sample_submission.csv")
    assert header == ["Id", "Predicted"] and {r["Predicted"] for r in sub} == {"0"}
    header, sol = _rows(root / "solution.csv")
    assert header == ["Id", "Target", "Usage"]
    assert [r["Id"] for r in sol] == [r["Id"] for r in sub]
    assert sum(r["Usage"] == "Public" for r in sol) == round(0.3 * SMALL["n_test"])
    assert {r["Usage"] for r in sol} == {"Public", "Private"}

    train_ids, test_ids = [r["Id"] for r in train], [r["Id"] for r in sub]
    assert train_ids == sorted(train_ids) and test_ids == sorted(test_ids)
    assert not set(train_ids) & set(test_ids)
    for split, ids in (("train", train_ids), ("test", test_ids)):
        expected = {f"{i}_{c}.png" for i in ids for c in CHANNELS}
        assert {p.name for p in (root / split).iterdir()} == expected


def test_pngs_are_8bit_single_channel(datasets):
    size = SMALL["size"]
    for name, img in list(_pixels(datasets["a"]).items())[:24]:
        assert img.dtype == np.uint8 and img.shape == (size, size), name
    from PIL import Image

    with Image.open(next((datasets["a"] / "train").glob("*_green.png"))) as im:
        assert im.mode == "L" and im.size == (size, size)


def test_deterministic_and_independent_of_workers(datasets):
    a, b, c = datasets["a"], datasets["b"], datasets["c"]
    for name in ("train.csv", "sample_submission.csv", "solution.csv", "synth.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    pa, pb = _pixels(a), _pixels(b)
    assert pa.keys() == pb.keys()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert (a / "train.csv").read_bytes() != (c / "train.csv").read_bytes()
    first_a = sorted(pa.items())[0][1]
    first_c = sorted(_pixels(c).items())[0][1]
    assert not np.array_equal(first_a, first_c)


def test_render_image_is_reproducible():
    one = synth.render_image([0, 25], size=64, seed=3)
    assert one.shape == (64, 64, 4) and one.dtype == np.uint8
    assert np.array_equal(one, synth.render_image([0, 25], size=64, seed=3))
    assert not np.array_equal(one, synth.render_image([0, 25], size=64, seed=4))


def test_label_distribution_follows_kaggle():
    labels = synth.sample_labels(np.random.default_rng(0), 20000)
    assert all(len(set(t)) == len(t) and t == sorted(t) for t in labels)
    sizes = np.bincount([len(t) for t in labels], minlength=6)[1:] / len(labels)
    total = sum(LABELS_PER_IMAGE_COUNTS.values())
    expected = np.array([LABELS_PER_IMAGE_COUNTS[k] / total for k in range(1, 6)])
    assert np.abs(sizes - expected).max() < 0.015
    counts = np.bincount([c for t in labels for c in t], minlength=NUM_CLASSES)
    assert counts.argmax() == 0 and np.argsort(counts)[-2] == 25
    rank = np.corrcoef(np.argsort(np.argsort(counts)), np.argsort(np.argsort(TRAIN_COUNTS)))[0, 1]
    assert rank > 0.95
    assert counts[[8, 9, 10, 15, 27]].max() < 0.01 * counts[0]  # the rare classes stay rare


def test_ids_are_unique_and_kaggle_like():
    ids = synth.make_ids(np.random.default_rng(1), 500)
    assert len(set(ids)) == 500 and ids == sorted(ids)
    assert all(ID_RE.match(i) and i[14:18] == "11e8" for i in ids)


def test_every_painter_draws_something():
    for seed in range(3):
        field = synth.make_field(np.random.default_rng(seed), 96, mitotic=True)
        for class_id in range(NUM_CLASSES):
            pattern = synth.PAINTERS[class_id](field, np.random.default_rng(seed))
            assert pattern.shape == (96, 96) and pattern.max() > 0, class_id


def test_skip_when_complete_and_refuse_foreign_dirs(tmp_path):
    out = tmp_path / "ds"
    params = dict(n_train=3, n_test=2, size=48, workers=1)
    synth.generate_dataset(out, **params)
    stamp = (out / "train.csv").stat().st_mtime_ns
    again = synth.generate_dataset(out, **params)
    assert again["skipped"] is True and (out / "train.csv").stat().st_mtime_ns == stamp

    with pytest.raises(DataError, match="different synthetic dataset.*seed"):
        synth.generate_dataset(out, seed=5, **params)
    replaced = synth.generate_dataset(out, seed=5, overwrite=True, **params)
    assert replaced["skipped"] is False and '"seed": 5' in (out / "synth.json").read_text()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a synthetic HPA dataset"):
        synth.generate_dataset(foreign, **params)
    assert (foreign / "notes.txt").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert synth.generate_dataset(empty, **params)["skipped"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "empty", "foreign"]


def test_an_interrupted_build_leaves_no_dataset_and_the_next_call_resumes_it(tmp_path, monkeypatch):
    params = {"n_train": 6, "n_test": 2, "size": 48, "workers": 1}
    real_write = synth.writer._write_image
    calls = []

    interrupted = []

    def flaky(prefix, channels):
        calls.append(Path(prefix).name)
        if len(calls) == 4 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        real_write(prefix, channels)

    monkeypatch.setattr(synth.writer, "_write_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        synth.generate_dataset(tmp_path / "ds", **params)
    assert len(calls) == 4
    assert [p.name for p in tmp_path.iterdir()] == [".ds.partial"]  # nothing that looks like a dataset
    assert len(list((tmp_path / ".ds.partial" / "train").glob("*.png"))) == 3 * 4

    calls.clear()
    summary = synth.generate_dataset(tmp_path / "ds", **params)
    assert summary["skipped"] is False and len(calls) == 8 - 3  # only the images not written before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    monkeypatch.setattr(synth.writer, "_write_image", real_write)
    fresh = synth.generate_dataset(tmp_path / "fresh", **params)
    for path in sorted((tmp_path / "fresh").rglob("*.*")):
        resumed = tmp_path / "ds" / path.relative_to(tmp_path / "fresh")
        assert resumed.read_bytes() == path.read_bytes(), resumed
    assert fresh["skipped"] is False


def test_a_partial_build_of_other_parameters_is_discarded(tmp_path):
    partial = tmp_path / ".ds.partial"
    (partial / "train").mkdir(parents=True)
    (partial / "synth.json").write_text('{"n_train": 99}')
    (partial / "train" / "stale_green.png").write_bytes(b"old")
    synth.generate_dataset(tmp_path / "ds", n_train=2, n_test=1, size=32, workers=1)
    assert not partial.exists() and not (tmp_path / "ds" / "train" / "stale_green.png").exists()


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patch must reach the workers")
def test_failing_worker_leaves_no_dataset(tmp_path, monkeypatch):
    def broken(prefix, channels):
        raise OSError("disk full")

    monkeypatch.setattr(synth.writer, "_write_image", broken)
    with pytest.raises(OSError, match="disk full"):
        synth.generate_dataset(tmp_path / "ds", n_train=40, n_test=8, size=32, workers=2)
    assert not (tmp_path / "ds").exists()
    assert not list((tmp_path / ".ds.partial").rglob("*.png"))


def test_prints_nothing_by_default(tmp_path, capfd):
    synth.generate_dataset(tmp_path / "ds", n_train=2, n_test=1, size=32, workers=1)
    assert capfd.readouterr() == ("", "")


def test_mean_green_alone_is_a_weak_predictor():
    means = {
        c: np.array([synth.render_image([c], 64, seed=1000 * c + i)[..., 1].mean() for i in range(50)]) for c in (0, 25)
    }
    a, b = means[0], means[25]
    pooled = np.sqrt((a.var() + b.var()) / 2)
    assert abs(a.mean() - b.mean()) < 0.5 * pooled
    values, truth = np.concatenate([a, b]), np.r_[np.zeros(len(a)), np.ones(len(b))]
    best = max(max(np.mean((values > t) == truth), np.mean((values <= t) == truth)) for t in values)
    assert best < 0.7
