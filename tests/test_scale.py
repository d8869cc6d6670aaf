"""The Kaggle-scale rehearsal's machinery (``hpa scale``), at a tiny size: every step runs in its own process,
is measured and recorded, re-running skips what is recorded, and a missing PNG is named with its CSV line."""

from __future__ import annotations

import json

import pytest

from hpa_utils.data.dataset import validate_dataset
from hpa_utils.data.synth import generate_dataset
from hpa_utils.errors import DataError
from hpa_utils.run import scale


def test_the_tiny_rehearsal_measures_and_records_every_step(tmp_path):
    steps = ("generate", "cache", "predict", "bad-input")  # validate and split: tests/test_dataset.py, test_eda.py
    lines: list[str] = []
    record = scale.rehearse(("tiny",), steps, root=tmp_path, log=lines.append)
    done = record["tiny"]["steps"]
    assert list(done) == list(steps)
    for step, measured in done.items():
        assert measured["returncode"] == 0 and measured["seconds"] > 0, step
        assert 0 < measured["peak_anon_gib"] <= measured["peak_rss_gib"] < 8, step
    assert json.loads(scale.record_path(tmp_path).read_text()) == record
    paths = scale.scale_paths("tiny", tmp_path)
    submission = (paths.out / "submission.csv").read_text().splitlines()
    assert submission[0] == "Id,Predicted" and len(submission) == 1 + paths.n_test
    assert "channel file is missing (train.csv line" in done["bad-input"]["message"]
    assert (paths.cache / "train_256.npy").is_file() and (paths.cache / "test_256.npy").is_file()
    assert not (paths.data / ".cache").exists() and not list(paths.data.glob("*.npy"))  # the data stays read-only
    table = scale.format_table({"small": record["tiny"], "kaggle": record["tiny"]})
    assert table.count("\n") == 1 + len(steps) and "| cache |" in table

    lines.clear()
    scale.rehearse(("tiny",), ("cache",), root=tmp_path, log=lines.append)
    assert lines == [f"scale tiny: cache recorded ({done['cache']['seconds']:.0f} s), skipped"]


def test_a_missing_png_is_named_with_its_csv_line_by_validate_and_by_the_cache(tmp_path):
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset

    root = tmp_path / "data"
    generate_dataset(root, n_train=12, n_test=5, size=32, workers=1)
    dataset = open_dataset(root)
    (root / "train" / f"{dataset.train_ids[7]}_blue.png").unlink()
    (root / "test" / f"{dataset.test_ids[3]}_red.png").unlink()
    problems = validate_dataset(root).problems
    assert any(f"{dataset.train_ids[7]}_blue.png: channel file is missing (train.csv line 9)" in p for p in problems)
    assert any(
        f"{dataset.test_ids[3]}_red.png: channel file is missing (sample_submission.csv line 5)" in p for p in problems
    )
    with pytest.raises(DataError, match=r"_blue\.png: channel file is missing \(train\.csv line 9\)"):
        open_cache(dataset, "train", 16, tmp_path / "cache")
    with pytest.raises(DataError, match=r"_red\.png: channel file is missing \(sample_submission\.csv line 5\)"):
        open_cache(dataset, "test", 16, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written


def test_a_large_cache_is_decoded_in_worker_processes_to_the_same_array_and_errors_name_the_line(tmp_path, monkeypatch):
    import numpy as np

    from hpa_utils.data import cache
    from hpa_utils.data.dataset import open_dataset

    root = tmp_path / "data"
    generate_dataset(root, n_train=10, n_test=2, size=32, workers=1)
    dataset = open_dataset(root)
    threads = np.array(cache.open_cache(dataset, "train", 16, tmp_path / "threads", workers=2))
    monkeypatch.setattr(cache, "PROCESS_MIN_SAMPLES", 4)
    monkeypatch.setattr(cache, "CHUNK", 3)
    processes = np.array(cache.open_cache(dataset, "train", 16, tmp_path / "processes", workers=2))
    assert np.array_equal(threads, processes)

    broken = root / "train" / f"{dataset.train_ids[8]}_green.png"
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated PNG: found only when decoded, in a worker
    with pytest.raises(DataError, match=r"_green\.png: .*\(train\.csv line 10\)"):
        cache.open_cache(dataset, "train", 16, tmp_path / "broken", workers=2)
    assert not list((tmp_path / "broken").glob("*"))
