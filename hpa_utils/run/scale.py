"""The Kaggle-scale rehearsal (``make scale``, ``hpa scale``): every step that does not train, at Kaggle's size.

Kaggle's data is 31,072 training and 11,702 test Ids of four 512-px PNGs each (about 17 GB). This generates a
synthetic dataset of that size and layout (with ``sample_submission.csv``), then runs, each in its own
process, the steps a user with the real data runs before and after training:

========== ==================================================================================================
generate   ``hpa synth`` at 512 px, in parallel over the cores, resumable (not part of a user's run)
validate   ``hpa validate``: every PNG decoded and checked
cache      ``hpa cache --size 256``: the decoded-image cache of both splits (the ``full`` preset's size)
eda        notebook 01 through papermill (the ``full`` preset's settings), which also makes the split
split      the iterative-stratification split alone
predict    a stored baseline model (256 px) predicts the 11,702 test Ids, and the submission is written
bad-input  one PNG missing among the 43,000: ``hpa validate`` must name the file and its CSV line
========== ==================================================================================================

Each step's wall time and peak memory are measured from outside (the step's process tree is sampled every
0.2 s from ``/proc``: resident memory in all, and its anonymous part, i.e. without the file pages of
memory-mapped caches, which the kernel can drop), and recorded in ``runs/scale/scale.json`` as the step
ends. The same steps run on a ``small`` dataset (3,000 training Ids, test in Kaggle's proportion) to show
how each step's time scales. Re-running skips recorded steps (``--redo STEP`` runs one again); an
interrupted generation resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from hpa_utils.config import runtime
from hpa_utils.config.resolve import resolve_config
from hpa_utils.config.run_config import RUNS_DIR, SynthConfig, cache_dir_for, synthetic_data_dir
from hpa_utils.evaluation.submission import make_submission
from hpa_utils.io import write_atomic, write_json_atomic

#: Kaggle's training and test Ids, and the image side of its PNGs.
KAGGLE = (31072, 11702)
SOURCE_SIZE = 512
#: The model's input side for the rehearsal (the ``full`` preset's).
CACHE_SIZE = 256
#: The rehearsal's sizes: Kaggle's, and 3,000 training Ids (test in Kaggle's proportion) to show the scaling;
#: ``tiny`` is for the tests.
SIZES = {"tiny": (24, 9), "small": (3000, round(3000 * KAGGLE[1] / KAGGLE[0])), "kaggle": KAGGLE}
STEPS = ("generate", "validate", "cache", "eda", "split", "predict", "bad-input")
#: Seconds between two samples of a step's memory.
SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class ScalePaths:
    """Where a rehearsal of one size keeps its data, cache and outputs: the project's ``data/``, ``.cache/``
    and ``runs/scale/`` by default, or all under ``root`` (e.g. a larger disk)."""

    name: str
    n_train: int
    n_test: int
    root: Path | None = None

    @property
    def data(self) -> Path:
        default = synthetic_data_dir(SynthConfig(self.n_train, self.n_test, SOURCE_SIZE, 0))
        return self.root / "data" / default.name if self.root else default

    @property
    def cache(self) -> Path:
        default = cache_dir_for(self.data)
        return self.root / ".cache" / default.name if self.root else default

    @property
    def out(self) -> Path:
        return record_path(self.root).parent / self.name


def scale_paths(name: str, root: Path | None = None) -> ScalePaths:
    n_train, n_test = SIZES[name]
    return ScalePaths(name, n_train, n_test, Path(root) if root else None)


def record_path(root: Path | None = None) -> Path:
    """The rehearsal's record: ``runs/scale/scale.json`` (or under ``root``)."""
    return (Path(root) / "runs" if root else RUNS_DIR) / "scale" / "scale.json"


# ----------------------------------------------------------------------------------- measuring a step


def _tree_memory(pid: int) -> tuple[int, int]:
    """(resident, anonymous resident) bytes of process ``pid`` and all its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    rss = anon = 0
    for process in processes:
        try:
            info = process.memory_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        anon += info.rss - getattr(info, "shared", 0)  # Linux: shared = file-backed + shmem pages
    return rss, anon


def measure(command: list[str], log: Callable[[str], None] = print) -> dict:
    """Run ``command``; its wall time, exit code, the peak memory of its process tree and its output's tail."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    peak_rss = peak_anon = 0
    lines: list[str] = []

    def read() -> None:
        shown = 0.0
        for line in process.stdout:  # text mode: tqdm's carriage returns arrive as lines too
            line = line.rstrip()
            if not line:
                continue
            lines.append(line)
            if "it/s]" in line or "img/s]" in line or "s/img]" in line:  # a progress bar: every 30 s
                if time.monotonic() - shown < 30:
                    continue
                shown = time.monotonic()
            log(f"    {line}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None:
        rss, anon = _tree_memory(process.pid)
        peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
        time.sleep(SAMPLE_SECONDS)
    reader.join(5)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "returncode": process.returncode,
        "peak_rss_gib": round(peak_rss / 2**30, 2),
        "peak_anon_gib": round(peak_anon / 2**30, 2),
        "tail": lines[-20:],
    }


# ------------------------------------------------------------------------------------------ the steps


def _step_generate(paths: ScalePaths) -> dict:
    # deferred: OpenCV
    from hpa_utils.data.synth import generate_dataset

    summary = generate_dataset(paths.data, paths.n_train, paths.n_test, SOURCE_SIZE, seed=0, progress=True)
    return {"items": paths.n_train + paths.n_test, "unit": "images", "skipped": summary["skipped"]}


def _step_validate(paths: ScalePaths) -> dict:
    # deferred: OpenCV
    from hpa_utils.data.dataset import validate_dataset

    report = validate_dataset(paths.data)
    if not report.ok:
        raise SystemExit("\n".join(report.problems))
    print(report.summary().splitlines()[0])
    return {"items": paths.n_train + paths.n_test, "unit": "images"}


#: Samples decoded by one thread before the cache build, for the per-core rate the build is compared with.
DECODE_SAMPLE = 200


def _step_cache(paths: ScalePaths) -> dict:
    """The cache of both splits at 256 px; first, one thread decodes a sample of Ids (the per-core rate). Then
    the check every later opening of the cache runs (each sample's CRC-32), timed alone: ``verify_seconds``."""
    # deferred: OpenCV
    from hpa_utils.data.cache import cache_files, open_cache, verify_cache
    from hpa_utils.data.dataset import load_sample, open_dataset

    dataset = open_dataset(paths.data)
    ids = dataset.train_ids[-DECODE_SAMPLE:]  # the end of the list: not read by the steps before
    started = time.perf_counter()
    for sample_id in ids:
        load_sample(dataset.train_dir, sample_id, CACHE_SIZE)
    per_core = len(ids) / (time.perf_counter() - started)
    print(f"one thread decodes and resizes {per_core:.1f} samples/s")
    build_seconds = verify_seconds = 0.0
    verified_bytes = 0
    for split in ("train", "test"):
        npy, manifest = cache_files(paths.cache, split, CACHE_SIZE)
        for path in (npy, manifest):
            path.unlink(missing_ok=True)  # built (and timed) anew
        started = time.perf_counter()
        array = open_cache(dataset, split, CACHE_SIZE, paths.cache, progress=False)
        build_seconds += time.perf_counter() - started
        print(f"{split}: {array.shape} in {time.perf_counter() - started:.1f} s")
        checksums = json.loads(manifest.read_text())["checksums"]
        started = time.perf_counter()
        damage = verify_cache(npy, checksums, dataset.ids(split), split)
        seconds = time.perf_counter() - started
        if damage:
            raise SystemExit(damage)
        verify_seconds += seconds
        verified_bytes += array.nbytes
        print(f"{split}: checksums of {array.nbytes / 1e9:.2f} GB verified in {seconds:.1f} s")
    cores = os.cpu_count() or 1
    n = paths.n_train + paths.n_test
    return {
        "items": n,
        "unit": "images",
        "cores": cores,
        "one_thread_rate": round(per_core, 1),
        "build_rate_per_core": round(n / build_seconds / cores, 1),
        "verify_seconds": round(verify_seconds, 2),
        "verify_gb_per_s": round(verified_bytes / 1e9 / max(verify_seconds, 1e-9), 2),
    }


def _step_eda(paths: ScalePaths) -> dict:
    # deferred: nbformat (the runner's notebook fingerprints)
    from hpa_utils.run.runner import execute_notebook, install_kernel

    config = resolve_config("full", data_dir=paths.data, output_dir=paths.out / "run")
    config.paths.make()
    config.save()
    for stale in config.paths.results.glob("split_*.csv"):  # the split is made (and timed) again
        stale.unlink()
    seconds = execute_notebook("01_eda", config, install_kernel(), echo=False)
    print(f"01_eda executed in {seconds:.1f} s: {config.paths.notebooks / '01_eda.ipynb'}")
    return {"items": paths.n_train, "unit": "training Ids"}


def _step_split(paths: ScalePaths) -> dict:
    # deferred: OpenCV, scikit-learn
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.data.split import stratified_split

    y = open_dataset(paths.data).y
    started = time.perf_counter()
    train, val = stratified_split(y, 0.2, seed=0)
    seconds = time.perf_counter() - started
    print(f"{len(train)} training and {len(val)} validation Ids in {seconds:.1f} s")
    return {"items": len(y), "unit": "training Ids", "split_seconds": round(seconds, 2)}


def _step_predict(paths: ScalePaths) -> dict:
    # deferred: Keras, OpenCV
    from hpa_utils.backend import keras
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.training.models import build_variant, prior_log_odds
    from hpa_utils.training.predictions import predict

    dataset = open_dataset(paths.data)
    model_path = paths.out / "baseline_256.keras"
    if not model_path.is_file():  # the stored model: the baseline at 256 px, its output bias at the priors
        model = build_variant(0, (CACHE_SIZE, CACHE_SIZE, 4), output_bias=prior_log_odds(dataset.y))
        write_atomic(model_path, model.save)
    model = keras.saving.load_model(model_path, compile=False)
    images = open_cache(dataset, "test", CACHE_SIZE, paths.cache)
    started = time.perf_counter()
    probabilities = predict(model, images)
    seconds = time.perf_counter() - started
    submission = paths.out / "submission.csv"
    make_submission(dataset.sample_submission, dataset.test_ids, probabilities, 0.5, submission)
    print(f"{len(probabilities)} test Ids predicted in {seconds:.1f} s ({len(probabilities) / seconds:.1f}/s)")
    print(f"{submission}: {sum(1 for _ in open(submission)) - 1} rows, mean {np.mean(probabilities):.3f}")
    return {"items": len(probabilities), "unit": "test images", "predict_seconds": round(seconds, 1)}


def _step_bad_input(paths: ScalePaths) -> dict:
    """A view of the dataset (symlinks) with one PNG missing; ``hpa validate`` must name it and its line."""
    # deferred: OpenCV
    from hpa_utils.data.dataset import csv_line, open_dataset

    dataset = open_dataset(paths.data)
    index = len(dataset.train_ids) * 2 // 3
    missing = f"{dataset.train_ids[index]}_yellow.png"
    view = Path(tempfile.mkdtemp(prefix="hpa-scale-view-", dir=paths.out))
    try:
        for name in ("train.csv", "sample_submission.csv"):
            (view / name).symlink_to(paths.data / name)
        (view / "test").symlink_to(paths.data / "test")
        (view / "train").mkdir()
        for entry in os.scandir(paths.data / "train"):
            if entry.name != missing:
                os.symlink(entry.path, view / "train" / entry.name)
        result = subprocess.run(
            [sys.executable, "-m", "hpa_utils", "validate", str(view), "--headers-only"],
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(view, ignore_errors=True)
    expected = f"{missing}: channel file is missing (train.csv line {csv_line(index)})"
    print(result.stderr.strip())
    if result.returncode == 0 or expected not in result.stderr:
        raise SystemExit(f"hpa validate did not name the missing file and its line: expected {expected!r}")
    return {"items": paths.n_train + paths.n_test, "unit": "images", "message": result.stderr.splitlines()[0]}


STEP_FUNCTIONS = {
    "generate": _step_generate,
    "validate": _step_validate,
    "cache": _step_cache,
    "eda": _step_eda,
    "split": _step_split,
    "predict": _step_predict,
    "bad-input": _step_bad_input,
}


def _child(step: str, paths: ScalePaths) -> int:
    """One step, in its own process: run it and write what it reports beside the record."""
    runtime.configure()
    paths.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(_result_file(paths, step), STEP_FUNCTIONS[step](paths))
    return 0


def _result_file(paths: ScalePaths, step: str) -> Path:
    return paths.out / f".{step}.result.json"


# ---------------------------------------------------------------------------------------- the rehearsal


def load_record(root: Path | None = None) -> dict:
    path = record_path(root)
    return json.loads(path.read_text()) if path.is_file() else {}


def rehearse(
    sizes: tuple[str, ...] = ("small", "kaggle"),
    steps: tuple[str, ...] = STEPS,
    redo: tuple[str, ...] = (),
    root: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the rehearsal's steps for each size (skipping those recorded), recording each as it ends.

    Raises:
        RuntimeError: a step failed (its output was logged); the steps recorded before it are kept.
    """
    record = load_record(root)
    for size in sizes:
        paths = scale_paths(size, root)
        paths.out.mkdir(parents=True, exist_ok=True)
        done = record.setdefault(size, {"n_train": paths.n_train, "n_test": paths.n_test, "steps": {}})["steps"]
        for step in steps:
            if step in done and step not in redo:
                log(f"scale {size}: {step} recorded ({done[step]['seconds']:.0f} s), skipped")
                continue
            log(f"scale {size}: {step} ({paths.n_train} + {paths.n_test} Ids)")
            result_file = _result_file(paths, step)
            result_file.unlink(missing_ok=True)
            command = [sys.executable, "-m", "hpa_utils.run.scale", "--child", step, "--sizes", size]
            command += ["--root", str(root)] if root else []
            measured = measure(command, log)
            if measured["returncode"] != 0:
                raise RuntimeError(f"scale {size}: step {step} failed (exit {measured['returncode']}); see above")
            measured.update(json.loads(result_file.read_text()))
            result_file.unlink()
            measured.pop("tail")
            done[step] = measured
            write_json_atomic(record_path(root), record)
            log(
                f"scale {size}: {step} took {measured['seconds']:.0f} s, peak memory "
                f"{measured['peak_rss_gib']:.2f} GiB ({measured['peak_anon_gib']:.2f} GiB anonymous)"
            )
    return record


def format_table(record: dict) -> str:
    """The README's table: each step's time and memory at both sizes, and how the time scaled."""
    small, kaggle = record.get("small", {}), record.get("kaggle", {})
    lines = [
        "| step | 3,000-Id run: time | Kaggle size: time | rate | time ratio (Ids ratio "
        f"{kaggle.get('n_train', 1) / max(small.get('n_train', 1), 1):.2f}) | peak memory: all / anonymous (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for step in STEPS:
        a = small.get("steps", {}).get(step)
        b = kaggle.get("steps", {}).get(step)
        if not (a or b):
            continue
        rate = f"{b['items'] / b['seconds']:.0f} {b['unit']}/s" if b and b.get("items") and b["seconds"] else ""
        ratio = f"{b['seconds'] / a['seconds']:.1f}" if a and b and a["seconds"] else ""
        memory = f"{b['peak_rss_gib']:.2f} / {b['peak_anon_gib']:.2f}" if b else ""
        lines.append(f"| {step} | {_duration(a)} | {_duration(b)} | {rate} | {ratio} | {memory} |")
    return "\n".join(lines)


def _duration(step: dict | None) -> str:
    if not step:
        return ""
    seconds = step["seconds"]
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpa scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "kaggle"], choices=sorted(SIZES))
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--redo", nargs="*", default=[], choices=STEPS, help="run these steps again")
    parser.add_argument("--root", type=Path, default=None, help="keep data, cache and outputs under this folder")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, scale_paths(args.sizes[0], args.root))
    try:
        record = rehearse(tuple(args.sizes), tuple(args.steps), tuple(args.redo), args.root)
    except RuntimeError as error:
        print(f"hpa scale: {error}", file=sys.stderr)
        return 1
    print(format_table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
