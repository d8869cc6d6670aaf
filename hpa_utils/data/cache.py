"""The decoded-image cache: decode each sample's four PNGs once, reuse them every epoch.

Decoding four PNGs per sample every epoch is what limits the Kaggle kernels. Here
a (split, size) pair is decoded once, in parallel threads, into one uint8 ``.npy``
file (N, size, size, 4) that training memory-maps. A JSON manifest beside it records
the Ids, the size, each source file's size and mtime, and a CRC-32 of each cached
sample's bytes; the cache is reused while the manifest matches the data and rebuilt
when it does not.

Integrity: every time a cache is opened for reuse, each sample's bytes are checked
against the CRC-32 recorded when it was built (zlib's, in threads). The check reads the
whole array once and costs about what ``np.load(npy, mmap_mode="r").sum()`` costs: on a
2-core development machine 3-5 GB/s from the page cache and 1.1-1.3 GB/s from disk, so
2-2.5 s (page cache) to 6-8 s (disk) for Kaggle's 31,072 Ids at 256 px (8.1 GB) and a
quarter of that at 128 px (2.0 GB). A sample that no longer matches (a flipped byte on
disk, a file written over) is named with its Id and the cache file in one warning, and
the cache is rebuilt. A cache of an earlier format (without checksums) is rebuilt.

Atomicity: the array is written to a temporary file and renamed into place, and
the manifest (the "this cache is complete" marker) is written last, also by
rename. An interrupted build therefore never leaves a cache that looks valid.

Memory: the build writes each decoded sample at its offset with ``os.pwrite``
(no writable memory map), from worker processes for a large cache (threads for a
small one), so each process holds a few samples at a time whatever the dataset's
size: at Kaggle's 31,072 Ids and 256 px the array is 8.1 GB, and the build's
resident memory stays under 1 GB (docs/scale.md).
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import signal
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hpa_utils.data.dataset import HPADataset, channel_paths, default_workers, load_sample, row_source
from hpa_utils.errors import DataError
from hpa_utils.io import write_json_atomic

#: 2: the manifest holds a CRC-32 per sample (``checksums``); a cache of version 1 is rebuilt.
CACHE_FORMAT_VERSION = 2
#: The checksum of each cached sample, recorded in the manifest: zlib's CRC-32 of the sample's bytes. Measured
#: on one core over 256-px samples in memory: 3.2 GB/s, against BLAKE2b 0.9, SHA-1 1.9, MD5 0.7 (and numpy's
#: ``sum`` 2.7); zlib releases the GIL, so the check runs in threads, one per core.
CHECKSUM = "crc32"
#: Samples checked per task of the verification's threads.
VERIFY_CHUNK = 64

_log = logging.getLogger(__name__)


def cache_files(cache_dir: str | Path, split: str, size: int) -> tuple[Path, Path]:
    """Paths of the array and the manifest for ``(split, size)``."""
    base = Path(cache_dir) / f"{split}_{int(size)}"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def _signature(image_dir: Path, ids: list[str], split: str = "train") -> list[list[int]]:
    """[size, mtime_ns] of every channel file, four per Id, in order."""
    out = []
    for index, sample_id in enumerate(ids):
        for path in channel_paths(image_dir, sample_id):
            try:
                stat = path.stat()
            except FileNotFoundError:
                raise DataError(f"{path}: channel file is missing ({row_source(split, index)})") from None
            out.append([stat.st_size, stat.st_mtime_ns])
    return out


def sample_checksum(sample: np.ndarray) -> int:
    """The CRC-32 of one sample's bytes (C order), as recorded in the manifest's ``checksums``."""
    return zlib.crc32(np.ascontiguousarray(sample).reshape(-1))


def _valid_manifest(npy: Path, manifest_path: Path, expected: dict) -> dict | None:
    """The manifest when it exists, matches ``expected``, holds a checksum per Id and the array has the right
    shape; else None."""
    if not (npy.is_file() and manifest_path.is_file()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or any(manifest.get(key) != value for key, value in expected.items()):
        return None
    checksums = manifest.get("checksums")
    if not isinstance(checksums, list) or len(checksums) != len(expected["ids"]):
        return None
    try:
        array = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    size = expected["size"]
    if array.dtype != np.uint8 or array.shape != (len(expected["ids"]), size, size, 4):
        return None
    return manifest


def cache_is_valid(npy: Path, manifest_path: Path, expected: dict) -> bool:
    """True when the manifest exists, matches ``expected`` and the array has the right shape (the samples'
    checksums are checked by :func:`verify_cache`)."""
    return _valid_manifest(npy, manifest_path, expected) is not None


def damaged_rows(npy: Path, checksums: list[int], workers: int | None = None) -> list[int]:
    """Rows of the cache array ``npy`` whose bytes no longer match ``checksums`` (recorded when it was built).

    Reads the whole array once through a memory map (its pages are the kernel's file cache, not the
    process's own memory), in threads: zlib computes the CRC-32 without the GIL.
    """
    array = np.load(npy, mmap_mode="r")
    flat = array.reshape(len(array), -1)

    def check(first: int) -> list[int]:
        last = min(first + VERIFY_CHUNK, len(flat))
        return [row for row in range(first, last) if sample_checksum(flat[row]) != checksums[row]]

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return [row for rows in pool.map(check, range(0, len(flat), VERIFY_CHUNK)) for row in rows]


def verify_cache(
    npy: Path, checksums: list[int], ids: list[str], split: str = "train", workers: int | None = None
) -> str | None:
    """None when every sample of the cache array ``npy`` matches its recorded checksum, else one sentence naming
    the damaged samples (Id and CSV line) and the cache file."""
    bad = damaged_rows(npy, checksums, workers)
    if not bad:
        return None
    named = ", ".join(f"{ids[row]} ({row_source(split, row)})" for row in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{npy}: sample {named}{more} does not match the checksum recorded when the cache was built"


def open_cache(
    dataset: HPADataset,
    split: str,
    size: int,
    cache_dir: str | Path,
    workers: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The decoded images of one split at one size, as a read-only memory map.

    Builds the cache when it is missing or stale (Ids, size or any source file's
    size/mtime changed) or a sample no longer matches its checksum (said in one
    warning, naming the Id and the cache file); otherwise reuses it.

    Args:
        dataset: the opened dataset.
        split: ``"train"`` or ``"test"``.
        size: side in pixels.
        cache_dir: where the cache lives (never inside the data directory).
        workers: decoding threads (default: one per core).
        progress: show a tqdm bar while building.

    Returns:
        ``np.memmap`` of shape (N, size, size, 4), uint8, rows in ``dataset.ids(split)`` order.

    Raises:
        DataError: a source image is missing or unreadable (nothing is left behind).
    """
    ids = dataset.ids(split)
    image_dir = dataset.image_dir(split)
    npy, manifest_path = cache_files(cache_dir, split, size)
    expected = {
        "version": CACHE_FORMAT_VERSION,
        "checksum": CHECKSUM,
        "size": int(size),
        "ids": ids,
        "files": _signature(image_dir, ids, split),
    }
    manifest = _valid_manifest(npy, manifest_path, expected)
    if manifest is not None:
        damage = verify_cache(npy, manifest["checksums"], ids, split, workers)
        if damage:
            _log.warning("%s; rebuilding the cache", damage)
            manifest = None
    if manifest is None:
        build_cache(image_dir, ids, size, npy, manifest_path, expected, workers, progress, split=split)
    return np.load(npy, mmap_mode="r")


#: A cache of at least this many samples is decoded in worker processes (one per core), a smaller one in
#: threads: two decoding threads in one process reached 0.70 of twice one thread's rate at Kaggle's size
#: (docs/scale.md), while starting the processes costs about a second.
PROCESS_MIN_SAMPLES = 2000
#: Samples per task handed to a worker.
CHUNK = 64


def _fill_rows(path: str, offset: int, size: int, image_dir: str, ids: list[str], first: int, split: str) -> list[int]:
    """Decode ``ids`` (rows ``first``, ``first + 1``, ...) and write each at its offset in the array file;
    returns each sample's checksum (:func:`sample_checksum`)."""
    row_bytes = size * size * 4
    checksums = []
    fd = os.open(path, os.O_WRONLY)
    try:
        for k, sample_id in enumerate(ids):
            try:
                sample = np.ascontiguousarray(load_sample(image_dir, sample_id, size))
            except DataError as error:
                raise DataError(f"{error} ({row_source(split, first + k)})") from None
            data = sample.reshape(-1)
            written = os.pwrite(fd, data, offset + (first + k) * row_bytes)
            if written != row_bytes:  # a short write: how a nearly full disk can end one
                raise OSError(errno.ENOSPC, f"short write of a cached sample ({written} of {row_bytes} bytes)", path)
            checksums.append(sample_checksum(data))
    finally:
        os.close(fd)
    return checksums


def _init_decoder() -> None:
    """A decoding worker: one OpenCV thread, and Ctrl-C is the parent's to handle (it stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


def build_cache(
    image_dir: Path,
    ids: list[str],
    size: int,
    npy: Path,
    manifest_path: Path,
    manifest: dict,
    workers: int | None = None,
    progress: bool = False,
    split: str = "train",
) -> float:
    """Decode ``ids`` into ``npy`` atomically and write ``manifest`` with each sample's checksum; returns
    samples/s.

    An error while the array is written (a bad image, a full disk, Ctrl-C) removes the temporary array and
    leaves any earlier cache files as they were: nothing half-written is ever named ``npy``, and
    ``manifest_path`` (the mark of a complete cache) is written last.

    Raises:
        OSError: writing failed (e.g. the disk is full); propagated as it is.
        DataError: a source image is missing or unreadable; the message names the file and its line in
            ``train.csv`` (``split`` "train") or ``sample_submission.csv`` ("test").
    """
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f".{npy.name}.tmp-{os.getpid()}")
    shape = (len(ids), size, size, 4)
    workers = workers or default_workers()
    start = time.perf_counter()
    pool = None
    try:
        with open(tmp, "wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
            )
            offset = handle.tell()
            handle.truncate(offset + len(ids) * size * size * 4)
        if workers > 1 and len(ids) >= PROCESS_MIN_SAMPLES:
            context = multiprocessing.get_context("spawn")  # safe in a process that runs TensorFlow's threads
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_decoder)
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
        futures = [
            pool.submit(_fill_rows, str(tmp), offset, size, str(image_dir), ids[i : i + CHUNK], i, split)
            for i in range(0, len(ids), CHUNK)
        ]
        bar = None
        if progress:
            bar = tqdm(total=len(ids), desc=f"caching {image_dir.name} at {size}px", unit="img")
        checksums: list[int] = []
        for future in futures:  # in order: the first failing chunk's error is raised
            done = future.result()
            checksums += done
            if bar is not None:
                bar.update(len(done))
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True)
        pool = None
        fd = os.open(tmp, os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        manifest_path.unlink(missing_ok=True)
        os.replace(tmp, npy)
    finally:
        if pool is not None:  # an error or Ctrl-C: stop the workers before removing their file
            pool.shutdown(wait=False, cancel_futures=True)
            for process in (getattr(pool, "_processes", None) or {}).values():
                process.kill()
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    write_json_atomic(manifest_path, {**manifest, "checksums": checksums, "build_seconds": round(seconds, 3)})
    return len(ids) / max(seconds, 1e-9)
