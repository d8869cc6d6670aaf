"""Writing a synthetic dataset in Kaggle's layout: labels, Ids, workers, CSVs, manifest, atomic rename."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hpa_utils.data.label_sets import class_counts, train_label_sets
from hpa_utils.data.labels import CHANNELS, multihot_to_target, target_to_multihot
from hpa_utils.data.synth.render import render_channels
from hpa_utils.errors import DataError
from hpa_utils.io import write_text_atomic

#: Bumped whenever the pictures or the labels change, so an old dataset is not mistaken for a new one (and the
#: project's own datasets are regenerated). 3: label sets drawn from Kaggle's real ones, not class by class;
#: 4: drawn by systematic sampling, a scaled copy of Kaggle's label sets.
GENERATOR_VERSION = 4
MANIFEST = "synth.json"
_SPLIT_CODES = {"train": 0, "test": 1}


def sample_labels(rng: np.random.Generator, n: int, prior_shift: float = 0.0) -> list[list[int]]:
    """Draw the label sets of ``n`` images from the label sets of Kaggle's training set: a scaled copy of them.

    Each image gets one of the 577 real sets (:func:`~hpa_utils.data.label_sets.train_label_sets`), with
    probability proportional to ``count ** (1 - prior_shift)``: at 0 (train, and test by default) the real
    frequencies, so the classes occur together as in Kaggle's data (lysosomes only with endosomes, the mitotic
    classes together); at 1 every real set equally likely.

    The sets are drawn by systematic sampling (Madow 1949), not one by one: laid end to end, each as long as
    its expected count ``n * p``, in the order of :func:`_nested_order` (rarest class first), and hit by ``n``
    points one apart from a uniform start, then shuffled. Each set keeps its probability, but a class's count,
    and the count of a rare class together with another, is within one of its expected count instead of
    Poisson-scattered around it: at 3,000 images the 21-in-31,072 microtubule ends are 2 images (drawn one by
    one: none for 10% of 200 seeds tried, 5 or more for 8%), so Kaggle's label structure holds in a small set.

    Args:
        rng: the random generator to draw from.
        n: number of images.
        prior_shift: 0..1, the tilt toward rare sets.

    Returns:
        ``n`` ascending lists of class ids, in random order.
    """
    kaggle = train_label_sets()
    order = _nested_order(kaggle.sets)
    ends = np.concatenate([[0.0], np.cumsum(int(n) * kaggle.probabilities(prior_shift)[order])])
    ends[-1] = int(n)  # no rounding can lose the last point
    points = rng.random() + np.arange(int(n))
    counts = np.diff(np.searchsorted(points, ends))  # the points in [ends[i], ends[i + 1])
    drawn = np.repeat(order, counts)
    rng.shuffle(drawn)
    return [list(kaggle.sets[i]) for i in drawn]


def _nested_order(sets: Sequence[Sequence[int]]) -> np.ndarray:
    """The sets ordered by the classes they hold, rarest class first: those with the rarest class together
    (among them those with the next rarest, and so on), then the rest by the same rule, so that systematic
    sampling keeps each rare class's count, and its pairs with the next rarer ones, within one of expected."""
    rarity = np.argsort(class_counts(), kind="stable")
    return np.array(sorted(range(len(sets)), key=lambda i: tuple(c not in sets[i] for c in rarity)))


def make_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Draw ``n`` distinct UUID-like Ids in Kaggle's style, sorted.

    Example: ``00070df0-bbc3-11e8-b2bc-ac1f6b6435d0`` (a version-1 UUID: time
    fields, then Kaggle's constant node ``ac1f6b6435d0``).
    """
    ids: set[str] = set()
    while len(ids) < n:
        m = n - len(ids)
        low = rng.integers(0, 2**32, size=m, dtype=np.uint64)
        mid = rng.integers(0x90, 0xD0, size=m)
        seq = rng.integers(0x9, 0xD, size=m)
        ids.update(f"{a:08x}-bb{b:02x}-11e8-b2b{c:x}-ac1f6b6435d0" for a, b, c in zip(low, mid, seq, strict=True))
    return sorted(ids)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for ``(seed, *key)``, e.g. ``(seed, split, index)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))


def _write_image(prefix: Path, channels: dict[str, np.ndarray]) -> None:
    """Write ``{prefix}_{channel}.png`` for the four channels, each atomically (temp name, then rename),
    so a file with the final name is always a whole PNG."""
    for name in CHANNELS:
        path = Path(f"{prefix}_{name}.png")
        ok, encoded = cv2.imencode(".png", channels[name])
        if not ok:
            raise OSError(f"could not encode {path}")
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(encoded.tobytes())
            os.replace(tmp, path)
        finally:  # a full disk: no half-written temp file is left
            tmp.unlink(missing_ok=True)


def _render_chunk(folder: str, split: str, seed: int, size: int, items: list[tuple[int, str, list[int]]]) -> int:
    """Render and write the images ``items`` = [(index, Id, labels)] of one split."""
    for index, image_id, labels in items:
        channels = render_channels(labels, size, _rng(seed, _SPLIT_CODES[split], index))
        _write_image(Path(folder) / image_id, channels)
    return len(items)


def _init_worker() -> None:
    """Set up a pool worker: one cv2 thread per process, and (glibc) keep freed image
    buffers in the heap rather than unmapping them after every image, which saves
    about a third of the run time in page faults."""
    cv2.setNumThreads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: no matter
        pass


def _plan(seed: int, n_train: int, n_test: int, public_fraction: float, test_prior_shift: float = 0.0):
    """Ids, labels and Public/Private usage of both splits, all from ``seed``; the test labels' prior tilted by
    ``test_prior_shift`` (the train labels do not depend on it)."""
    ids = make_ids(_rng(seed, 20), n_train + n_test)
    order = _rng(seed, 21).permutation(len(ids))
    train_ids = sorted(ids[i] for i in order[:n_train])
    test_ids = sorted(ids[i] for i in order[n_train:])
    train_labels = sample_labels(_rng(seed, 10), n_train)
    test_labels = sample_labels(_rng(seed, 11), n_test, test_prior_shift)
    public = np.zeros(n_test, bool)
    public[_rng(seed, 22).permutation(n_test)[: int(round(public_fraction * n_test))]] = True
    return train_ids, train_labels, test_ids, test_labels, public


def _target(labels: Sequence[int]) -> str:
    return multihot_to_target(target_to_multihot(labels))


def _write_csvs(folder: Path, plan) -> None:
    train_ids, train_labels, test_ids, test_labels, public = plan
    lines = ["Id,Target"] + [f"{i},{_target(t)}" for i, t in zip(train_ids, train_labels, strict=True)]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    lines = ["Id,Predicted"] + [f"{i},0" for i in test_ids]
    (folder / "sample_submission.csv").write_text("\n".join(lines) + "\n")
    lines = ["Id,Target,Usage"] + [
        f"{i},{_target(t)},{'Public' if p else 'Private'}"
        for i, t, p in zip(test_ids, test_labels, public, strict=True)
    ]
    (folder / "solution.csv").write_text("\n".join(lines) + "\n")


def _read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _made_by_generator(folder: Path) -> bool:
    """True when ``folder`` is a directory holding the generator's own manifest: the only kind ``overwrite``
    may replace. The manifest's ``generator`` is a fixed name, ``"hpa_utils.synth"``, not the module's path
    (now :mod:`hpa_utils.data.synth`): kept so that datasets written before the move are still recognised."""
    manifest = _read_manifest(folder) if folder.is_dir() else None
    return manifest is not None and manifest.get("generator") == "hpa_utils.synth"


def _is_empty_dir(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir())


def _is_complete(folder: Path, params: dict) -> bool:
    files = ("train.csv", "sample_submission.csv", "solution.csv")
    if not all((folder / f).is_file() for f in files):
        return False
    for split, n in (("train", params["n_train"]), ("test", params["n_test"])):
        sub = folder / split
        if not sub.is_dir() or sum(1 for e in os.scandir(sub) if e.name.endswith(".png")) != 4 * n:
            return False
    return True


def _summary(out_dir: Path, params: dict, seconds: float, skipped: bool) -> dict:
    return {
        **{k: params[k] for k in ("n_train", "n_test", "size", "seed", "public_fraction")},
        "test_prior_shift": params.get("test_prior_shift", 0.0),
        "out_dir": str(out_dir),
        "train_csv": str(out_dir / "train.csv"),
        "train_dir": str(out_dir / "train"),
        "test_dir": str(out_dir / "test"),
        "sample_submission": str(out_dir / "sample_submission.csv"),
        "solution_csv": str(out_dir / "solution.csv"),
        "seconds": round(seconds, 3),
        "skipped": skipped,
    }


def _done_ids(folder: Path) -> set[str]:
    """Ids whose four PNGs are all in ``folder`` (written by an earlier, interrupted run)."""
    if not folder.is_dir():
        return set()
    counts: dict[str, int] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith("."):  # a temp file of an interrupted write
            os.unlink(entry.path)
            continue
        stem, _, channel = name.rpartition("_")
        if channel[:-4] in CHANNELS and name.endswith(".png"):
            counts[stem] = counts.get(stem, 0) + 1
    return {stem for stem, n in counts.items() if n == len(CHANNELS)}


def _render_all(folder: Path, params: dict, plan, workers: int, progress: bool) -> None:
    """Render every image not yet in ``folder``/train and ``folder``/test, in a process pool if workers > 1."""
    train_ids, train_labels, test_ids, test_labels, _ = plan
    jobs = []
    todo = 0
    total = len(train_ids) + len(test_ids)
    chunk = max(1, min(64, -(-total // (max(workers, 1) * 8))))
    for split, ids, labels in (("train", train_ids, train_labels), ("test", test_ids, test_labels)):
        (folder / split).mkdir(exist_ok=True)
        done = _done_ids(folder / split)
        items = [(i, image_id, labels[i]) for i, image_id in enumerate(ids) if image_id not in done]
        todo += len(items)
        jobs += [
            (str(folder / split), split, params["seed"], params["size"], items[s : s + chunk])
            for s in range(0, len(items), chunk)
        ]
    if workers <= 1 or len(jobs) <= 1:
        with tqdm(total=total, initial=total - todo, disable=not progress, unit="img", desc="synth") as bar:
            for job in jobs:
                bar.update(_render_chunk(*job))
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker)
    try:
        futures = [pool.submit(_render_chunk, *job) for job in jobs]  # forks before tqdm starts a thread
        with tqdm(total=total, initial=total - todo, disable=not progress, unit="img", desc="synth") as bar:
            for future in as_completed(futures):
                bar.update(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _replace_dir(new: Path, out_dir: Path) -> None:
    """Rename the finished dataset ``new`` to ``out_dir``: into an empty (or no) directory directly, else in place
    of the generator's own earlier dataset, which is removed only once the new one is in place.

    Raises:
        FileExistsError: ``out_dir`` has meanwhile filled with something that is not the generator's.
    """
    if not (out_dir.exists() or out_dir.is_symlink()) or _is_empty_dir(out_dir):
        os.replace(new, out_dir)  # onto an empty directory: fails (ENOTEMPTY) if it has filled meanwhile
        return
    if not _made_by_generator(out_dir):
        raise FileExistsError(f"{out_dir} was filled while the dataset was built; the new one is kept in {new}")
    old = Path(tempfile.mkdtemp(prefix=out_dir.name + ".old-", dir=out_dir.parent))
    os.replace(out_dir, old / "data")
    try:
        os.replace(new, out_dir)
    except OSError:
        os.replace(old / "data", out_dir)  # the earlier dataset back in place
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def partial_dir(out_dir: Path) -> Path:
    """Where a dataset is built before it is renamed to ``out_dir``; kept if the build is interrupted."""
    return out_dir.parent / f".{out_dir.name}.partial"


def generate_dataset(
    out_dir: str | os.PathLike,
    n_train: int = 3000,
    n_test: int = 1000,
    size: int = 256,
    seed: int = 0,
    workers: int | None = None,
    public_fraction: float = 0.3,
    overwrite: bool = False,
    progress: bool = False,
    test_prior_shift: float = 0.0,
) -> dict:
    """Write a synthetic HPA dataset in Kaggle's layout, atomically.

    The dataset is built in a hidden sibling directory (:func:`partial_dir`) and
    renamed to ``out_dir`` only when complete. An interrupted build is resumed by
    the next call with the same parameters: the images already written are kept
    (each PNG is written under a temp name and renamed), the others are drawn. The
    same parameters give byte-identical CSVs and identical pixels whatever
    ``workers`` is, and whether or not the build was interrupted.

    Args:
        out_dir: the dataset directory to create.
        n_train, n_test: number of training and test Ids.
        size: side of every PNG in px (Kaggle: 512).
        seed: random seed of the whole dataset.
        workers: processes drawing images; default ``os.cpu_count()``.
        public_fraction: share of test Ids marked ``Public`` in solution.csv.
        overwrite: replace an ``out_dir`` that holds another synthetic dataset (a directory with the
            generator's ``synth.json``); anything else is refused and left as it is. An empty directory is
            used whether or not this is set.
        progress: show a tqdm progress bar.
        test_prior_shift: 0..1: the test label sets are drawn with weights ``count ** (1 - shift)`` of the
            real sets' counts: 0, the training prior; 1, every set equally likely (a test set whose label
            prior differs from the training one). The training labels do not depend on it. Recorded in
            ``synth.json`` when not 0.

    Returns:
        A summary: the parameters, ``out_dir`` and the paths in it, ``seconds``
        taken and ``skipped`` (True when an identical dataset was already there).

    Raises:
        DataError: ``out_dir`` exists and is not this dataset (other
            parameters, or not a synthetic dataset), and ``overwrite`` is False.
        FileExistsError: ``overwrite`` is True but ``out_dir`` is not empty and was not made by the
            generator (nothing is deleted).
        ValueError: a parameter is out of range.
        OSError: writing failed (e.g. the disk is full); the images written so far stay in
            :func:`partial_dir` for the next call, ``out_dir`` is as it was.
    """
    start = time.perf_counter()
    if n_train < 1 or n_test < 1 or size < 32 or not 0 <= public_fraction <= 1 or not 0 <= test_prior_shift <= 1:
        raise ValueError(
            "need n_train >= 1, n_test >= 1, size >= 32, 0 <= public_fraction <= 1 and 0 <= test_prior_shift <= 1"
        )
    out_dir = Path(out_dir)
    params = {
        "generator": "hpa_utils.synth",
        "version": GENERATOR_VERSION,
        "n_train": int(n_train),
        "n_test": int(n_test),
        "size": int(size),
        "seed": int(seed),
        "public_fraction": float(public_fraction),
    }
    if test_prior_shift:  # only then: a default dataset's manifest stays as it was
        params["test_prior_shift"] = float(test_prior_shift)
    present = out_dir.exists() or out_dir.is_symlink()
    existing = _read_manifest(out_dir) if out_dir.is_dir() else None
    if existing == params and _is_complete(out_dir, params):
        return _summary(out_dir, params, time.perf_counter() - start, skipped=True)
    if present and not _is_empty_dir(out_dir):
        if overwrite and not _made_by_generator(out_dir):
            raise FileExistsError(
                f"{out_dir} exists and was not made by the generator (no {MANIFEST} of hpa_utils.synth): "
                "overwrite replaces only a synthetic dataset; nothing was deleted"
            )
        if not overwrite and existing is not None:
            keys = list(params) + [k for k in existing if k not in params]
            diff = (
                ", ".join(
                    f"{k}={existing.get(k)!r} (asked {params.get(k)!r})"
                    for k in keys
                    if existing.get(k) != params.get(k)
                )
                or "incomplete"
            )
            raise DataError(
                f"{out_dir} holds a different synthetic dataset: {diff}; use another directory or overwrite=True"
            )
        if not overwrite:
            raise DataError(
                f"{out_dir} exists and is not a synthetic HPA dataset (no {MANIFEST}); "
                "use another directory or overwrite=True"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    tmp = partial_dir(out_dir)
    if _read_manifest(tmp) != params:  # another build's leftovers: start afresh
        if (tmp.exists() or tmp.is_symlink()) and not (_is_empty_dir(tmp) or (tmp / MANIFEST).is_file()):
            raise FileExistsError(
                f"{tmp} exists and was not made by the generator (no {MANIFEST}); nothing was deleted"
            )
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(exist_ok=True)
    write_text_atomic(tmp / MANIFEST, json.dumps(params, indent=2) + "\n")
    plan = _plan(seed, n_train, n_test, public_fraction, float(test_prior_shift))
    _render_all(tmp, params, plan, workers, progress)
    _write_csvs(tmp, plan)
    _replace_dir(tmp, out_dir)
    return _summary(out_dir, params, time.perf_counter() - start, skipped=False)


def pattern_maps(data_dir: str | os.PathLike, split: str, image_ids: Sequence[str]) -> dict[str, dict[int, np.ndarray]]:
    """Where the generator drew each label's pattern in images of a synthetic dataset, replayed exactly.

    Each image is drawn again from its own generator ``(seed, split, index)`` (nothing is read but
    ``synth.json``), recording each label's green pattern before mixing: ``{Id: {class: (size, size)
    float32, peak 1}}``. The real HPA data has no such ground truth.

    Raises:
        DataError: ``data_dir`` is not a synthetic dataset, or an Id is not in ``split``.
    """
    data_dir = Path(data_dir)
    params = _read_manifest(data_dir)
    if params is None:
        raise DataError(
            f"{data_dir}: not a synthetic dataset (no {MANIFEST}); pattern maps exist only for synthetic data"
        )
    train_ids, train_labels, test_ids, test_labels, _ = _plan(
        params["seed"],
        params["n_train"],
        params["n_test"],
        params["public_fraction"],
        params.get("test_prior_shift", 0.0),
    )
    ids, labels = (train_ids, train_labels) if split == "train" else (test_ids, test_labels)
    position = {image_id: index for index, image_id in enumerate(ids)}
    out = {}
    for image_id in image_ids:
        if image_id not in position:
            raise DataError(f"{data_dir / MANIFEST}: Id {image_id} is not in the synthetic {split} split")
        index = position[image_id]
        patterns: dict[int, np.ndarray] = {}
        render_channels(labels[index], params["size"], _rng(params["seed"], _SPLIT_CODES[split], index), patterns)
        out[image_id] = patterns
    return out
