"""The reviewer's data-safety items: what ``overwrite`` may delete, the cache's checksums, paths that are not
UTF-8, the bound on image size, Ids with a trailing newline, and a full disk while the cache or the synthetic
dataset is written."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_dataset

from hpa_utils.config.checks import MAX_IMAGE_SIDE
from hpa_utils.data import cache, dataset, synth
from hpa_utils.data.cache import cache_files, open_cache
from hpa_utils.data.dataset import check_id, open_dataset, read_labels, validate_dataset
from hpa_utils.errors import DataError
from hpa_utils.io import write_atomic

SMALL = dict(n_train=4, n_test=2, size=32, workers=1)


def _hpa(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hpa_utils", *args],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=False,
        cwd=cwd,
    )


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` and its bytes (None for a folder)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


# ------------------------------------------------------------------------------ item 2: overwrite


def _foreign(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "important.txt").write_text("keep\n")
    return folder


def test_item02_overwrite_refuses_a_directory_the_generator_did_not_make(tmp_path):
    d = _foreign(tmp_path / "d")
    before = _tree(d)
    with pytest.raises(FileExistsError, match=re.escape(str(d))):
        synth.generate_dataset(d, overwrite=True, **SMALL)
    assert _tree(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # not even a partial build

    result = _hpa("synth", "--out", str(d), "--n-train", "4", "--n-test", "2", "--size", "32", "--overwrite")
    assert result.returncode not in (0,) and result.returncode > 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpa synth: ") and str(d) in lines[0], result.stderr
    assert _tree(d) == before


def test_item02_overwrite_refuses_a_file_and_a_foreign_manifest(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("mine")
    with pytest.raises(FileExistsError, match="not made by the generator"):
        synth.generate_dataset(file, overwrite=True, **SMALL)
    assert file.read_text() == "mine"

    other = tmp_path / "other"  # a synth.json of someone else's tool
    other.mkdir()
    (other / "synth.json").write_text('{"tool": "mine"}')
    (other / "data.bin").write_bytes(b"1")
    with pytest.raises(FileExistsError, match="not made by the generator"):
        synth.generate_dataset(other, overwrite=True, **SMALL)
    assert (other / "data.bin").read_bytes() == b"1"


def test_item02_overwrite_still_replaces_the_generators_own_dataset_and_uses_an_empty_directory(tmp_path):
    out = tmp_path / "ds"
    synth.generate_dataset(out, **SMALL)
    replaced = synth.generate_dataset(out, seed=3, overwrite=True, **SMALL)
    assert replaced["skipped"] is False and json.loads((out / "synth.json").read_text())["seed"] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synth.generate_dataset(empty, overwrite=True, **SMALL)["skipped"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "empty"]


def test_item02_a_hidden_partial_folder_the_generator_did_not_make_is_not_deleted(tmp_path):
    partial = synth.writer.partial_dir(tmp_path / "ds")
    _foreign(partial)
    before = _tree(partial)
    with pytest.raises(FileExistsError, match=re.escape(str(partial))):
        synth.generate_dataset(tmp_path / "ds", **SMALL)
    assert _tree(partial) == before


# ------------------------------------------------------------------------------ item 4: cache checksums


def _built_cache(tmp_path: Path, size: int = 32) -> tuple:
    data = open_dataset(write_tiny_dataset(tmp_path / "data", test=2))
    images = np.array(open_cache(data, "train", size, tmp_path / "cache"))
    npy, manifest = cache_files(tmp_path / "cache", "train", size)
    return data, images, npy, manifest


def test_item04_the_manifest_holds_each_samples_crc32(tmp_path, monkeypatch):
    data, images, npy, manifest = _built_cache(tmp_path)
    recorded = json.loads(manifest.read_text())
    assert recorded["checksum"] == "crc32"
    assert recorded["checksums"] == [zlib.crc32(sample.tobytes()) for sample in images]
    # the same checksums, in order, when worker processes build the cache
    monkeypatch.setattr(cache, "PROCESS_MIN_SAMPLES", 4)
    monkeypatch.setattr(cache, "CHUNK", 4)
    open_cache(data, "train", 32, tmp_path / "processes", workers=2)
    _, other = cache_files(tmp_path / "processes", "train", 32)
    assert json.loads(other.read_text())["checksums"] == recorded["checksums"]


def test_item04_a_flipped_sample_in_the_cache_is_named_and_the_cache_rebuilt(tmp_path, caplog):
    data, images, npy, manifest = _built_cache(tmp_path)
    array = np.load(npy, mmap_mode="r")
    row_bytes = images[0].nbytes
    with open(npy, "r+b") as handle:  # sample 2 overwritten with 0xFF, the file's size and mtime aside
        handle.seek(array.offset + 2 * row_bytes)
        handle.write(b"\xff" * row_bytes)
    del array
    with caplog.at_level(logging.WARNING, logger="hpa_utils.data.cache"):
        reopened = open_cache(data, "train", 32, tmp_path / "cache")
    np.testing.assert_array_equal(reopened, images)  # rebuilt: never the damaged bytes
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "id002 (train.csv line 4)" in warnings[0] and str(npy) in warnings[0] and "rebuilding" in warnings[0]

    # one flipped byte is found too
    with open(npy, "r+b") as handle:
        handle.seek(np.load(npy, mmap_mode="r").offset + 5 * row_bytes + 1234)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x10]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpa_utils.data.cache"):
        np.testing.assert_array_equal(open_cache(data, "train", 32, tmp_path / "cache"), images)
    assert any("id005 (train.csv line 7)" in r.getMessage() for r in caplog.records)


def test_item04_a_cache_without_checksums_is_rebuilt(tmp_path):
    data, images, npy, manifest = _built_cache(tmp_path)
    old = json.loads(manifest.read_text())
    old.pop("checksums"), old.pop("checksum")
    old["version"] = 1  # as the cache of the previous format was written
    manifest.write_text(json.dumps(old))
    with open(npy, "r+b") as handle:  # damaged: served as it was before checksums
        handle.seek(np.load(npy, mmap_mode="r").offset)
        handle.write(b"\xff" * 64)
    np.testing.assert_array_equal(open_cache(data, "train", 32, tmp_path / "cache"), images)
    assert len(json.loads(manifest.read_text())["checksums"]) == len(images)


def test_item04_the_scale_rehearsal_times_the_verification(tmp_path, monkeypatch, capsys):
    from hpa_utils.run import scale

    monkeypatch.setattr(scale, "SOURCE_SIZE", 64)  # the rehearsal's cache step, at a tiny size
    monkeypatch.setattr(scale, "CACHE_SIZE", 32)
    monkeypatch.setattr(scale, "DECODE_SAMPLE", 4)
    paths = scale.scale_paths("tiny", tmp_path)
    synth.generate_dataset(paths.data, paths.n_train, paths.n_test, 64, workers=1)
    result = scale._step_cache(paths)
    assert result["verify_seconds"] >= 0 and result["verify_gb_per_s"] > 0
    assert "train: checksums of" in capsys.readouterr().out


# ------------------------------------------------------------------------------ item 5: paths not UTF-8


def _not_utf8_folder(tmp_path: Path) -> Path:
    """A tiny dataset inside ``bad\\xe9dir`` (written under a plain name, then renamed: OpenCV is not asked)."""
    write_tiny_dataset(tmp_path / "plain" / "data", n=3, size=32, test=2)
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xe9dir")
    try:
        os.rename(os.fsencode(tmp_path / "plain"), bad)
    except OSError as error:  # a file system that takes only UTF-8 names
        pytest.skip(f"cannot name a folder with a non-UTF-8 byte here: {error}")
    return Path(os.fsdecode(bad)) / "data"


def test_item05_a_data_path_that_is_not_utf8_crashes_neither_validate_nor_cache(tmp_path):
    root = _not_utf8_folder(tmp_path)
    assert b"bad\xe9dir" in os.fsencode(root)
    cache_dir = root.parent / "cache"  # the cache, too, inside the folder whose name is not UTF-8
    for args in (("validate", str(root)), ("cache", str(root), "--cache-dir", str(cache_dir), "--size", "16")):
        result = _hpa(*args)
        assert result.returncode >= 0, f"hpa {args[0]} was killed by signal {-result.returncode}"
        assert result.returncode == 0 or len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.returncode == 0, result.stderr
    assert np.load(cache_dir / "train_16.npy").shape == (3, 16, 16, 4)


def test_item05_no_path_reaches_opencv_in_the_library():
    library = Path(dataset.__file__).resolve().parents[1]
    calls = [
        f"{path.relative_to(library)}:{n}"
        for path in library.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"cv2\.(imread|imwrite|imreadmulti|haveImageReader|haveImageWriter)\b", line)
    ]
    assert calls == []


# ------------------------------------------------------------------------------ item 9: image size bound


def _png_of_zeros(path: Path, width: int, height: int) -> Path:
    """A real 8-bit greyscale PNG of zeros, compressed row by row (a 9000-px one is about 80 KB)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def spy_decoder(monkeypatch):
    """The shapes of every image OpenCV decodes in ``hpa_utils.data.dataset``."""
    decoded: list[tuple[int, ...]] = []
    cv2 = dataset.cv2
    for name in ("imdecode", "imread"):
        real = getattr(cv2, name)

        def spy(*args, _real=real, **kwargs):
            image = _real(*args, **kwargs)
            decoded.append(None if image is None else image.shape)
            return image

        monkeypatch.setattr(cv2, name, spy)
    return decoded


def test_item09_an_image_over_max_image_side_is_refused_from_its_header(tmp_path, spy_decoder):
    assert MAX_IMAGE_SIDE == 8192
    root = write_tiny_dataset(tmp_path / "data", n=4, size=32)
    big = _png_of_zeros(root / "train" / "id001_green.png", 9000, 9000)
    assert big.stat().st_size < 200_000
    expected = f"{big}: image of 9000x9000 px (PNG header), outside 1..8192 px a side"

    for decode in (True, False):
        report = validate_dataset(root, decode=decode)
        assert any(p.startswith(expected) and p.endswith("(train.csv line 3)") for p in report.problems), report
    data = open_dataset(root)
    with pytest.raises(DataError, match=re.escape(expected)) as info:
        open_cache(data, "train", 16, tmp_path / "cache")
    assert "train.csv line 3" in str(info.value)
    with pytest.raises(DataError, match=re.escape(expected)):
        dataset.read_channel(big)
    assert (9000, 9000) not in spy_decoder and spy_decoder  # the others were decoded, the big one never
    assert not list((tmp_path / "cache").iterdir())


def test_item09_a_file_larger_than_any_allowed_png_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = _png_of_zeros(tmp_path / "x_green.png", 64, 64)
    monkeypatch.setattr(dataset, "MAX_PNG_BYTES", path.stat().st_size - 1)
    with pytest.raises(DataError, match=re.escape(f"{path}: file of")):
        dataset.read_channel(path)


# ------------------------------------------------------------------------------ item 10: Ids exactly


@pytest.mark.parametrize("bad", ["abc\n", "abc\r\n", "abc ", " abc", "abc\t", "abc\x00"])
def test_item10_an_id_with_a_trailing_newline_or_space_is_not_a_plain_name(bad):
    assert check_id(bad) is not None
    assert check_id("abc") is None and check_id("00070df0-bbc3-11e8-b2bc-ac1f6b6435d0") is None


def test_item10_a_trailing_newline_in_an_id_is_refused_naming_train_csv_and_its_line(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", n=4, size=32)
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace("id001,", '"id001\n",', 1))  # line 3: a quoted field
    with pytest.raises(DataError) as info:
        read_labels(csv)
    assert f"{csv}, line 3: Id 'id001\\n' is not a plain name" in str(info.value)
    report = validate_dataset(root)
    assert [p for p in report.problems if "line 3" in p and "'id001\\n'" in p and str(csv) in p], report.problems


# ------------------------------------------------------------------------------ a full disk


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_the_cache_is_built_leaves_no_temp_file_and_keeps_the_previous_cache(tmp_path, monkeypatch):
    data, images, npy, manifest = _built_cache(tmp_path)
    source = data.train_dir / "id003_red.png"  # a source changes: the cache is stale and rebuilt
    stamp = source.stat().st_mtime_ns + 10**9
    os.utime(source, ns=(stamp, stamp))
    before = _tree(tmp_path / "cache")
    monkeypatch.setattr(cache.os, "pwrite", _enospc)
    with pytest.raises(OSError) as info:
        open_cache(data, "train", 32, tmp_path / "cache", workers=2)
    assert info.value.errno == errno.ENOSPC
    assert _tree(tmp_path / "cache") == before  # the earlier array and manifest, no temp file

    with pytest.raises(OSError):  # a first build: nothing at all is left
        open_cache(data, "test", 32, tmp_path / "cache")
    assert _tree(tmp_path / "cache") == before
    monkeypatch.undo()

    def half_then_full(path, payload):  # the manifest, written last, fails half-way
        def write(tmp):
            tmp.write_text(json.dumps(payload)[:100])
            _enospc()

        return write_atomic(path, write)

    monkeypatch.setattr(cache, "write_json_atomic", half_then_full)
    with pytest.raises(OSError):
        open_cache(data, "train", 32, tmp_path / "cache")
    assert sorted(_tree(tmp_path / "cache")) == ["train_32.npy"]  # no manifest: not a complete cache
    monkeypatch.undo()
    assert open_cache(data, "train", 32, tmp_path / "cache").shape == images.shape
    assert json.loads(manifest.read_text())["checksums"]


def test_a_full_disk_while_the_dataset_is_written_keeps_the_previous_dataset_and_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    synth.generate_dataset(out, **SMALL)
    before = _tree(out)
    real_write_bytes = Path.write_bytes
    calls = []

    def fill_the_disk(self, data):
        calls.append(self.name)
        if len(calls) > 5:  # the sixth PNG finds the disk full half-way
            real_write_bytes(self, data[: len(data) // 2])
            _enospc()
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", fill_the_disk)
    with pytest.raises(OSError) as info:
        synth.generate_dataset(out, seed=7, overwrite=True, **SMALL)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert _tree(out) == before  # the previous, complete dataset
    partial = synth.writer.partial_dir(out)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "a temp file was left"
    assert not list(partial.glob("*.csv"))  # the partial build does not look complete
    assert len(list(partial.rglob("*.png"))) == 5  # the five PNGs written before, each whole, kept for the resume
    for png in partial.rglob("*.png"):
        assert dataset.read_channel(png).shape == (32, 32)
    summary = synth.generate_dataset(out, seed=7, overwrite=True, **SMALL)
    assert summary["skipped"] is False and json.loads((out / "synth.json").read_text())["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
