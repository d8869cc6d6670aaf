"""The training benchmark (``hpa bench`` / ``make bench``).

Measures, in one run, on the same model and the same 512-px PNGs, training
images/s when the model is fed by

(a) in-memory float32 batches: the ceiling, no input work at all;
(b) this project's pipeline: :class:`~hpa_utils.training.batches.CachedBatches` over the decoded
    memmap cache, with the report's augmentation, in Keras' PyDataset worker threads;
(c) a Kaggle-kernel-style generator: a Sequence that opens the four 512-px PNGs of every
    sample with PIL and resizes them, in every batch of every epoch, with Keras' default
    workers (one, synchronous).

The feeders alternate round by round (this machine's speed drifts between epochs), and
each ratio is the median over rounds. Then, in the same run:

(d) the reference: a plain ``model.fit(x, y, batch_size=32)`` of the baseline on in-memory float32
    arrays, in a separate Python process that imports no project code and keeps Keras' and
    TensorFlow's defaults (:mod:`hpa_utils.training.reference_fit`);
(e) this project's training as a run does it: the pipeline (b), one model per worker process,
    ``processes`` of them side by side (one thread each), the images/s of all of them together;
(f) the roofline: the model's FLOPs per training image (:mod:`hpa_utils.training.roofline`), the
    GFLOP/s that (b) and (e) reach, and the machine's float32 matrix-multiply GFLOP/s;
(g) the input pipeline alone, without a model: cached batches with the augmentation, images/s with
    1..N worker threads and with worker processes, and the rate per core.

It also times the cache build (decode + resize). This is a benchmark, not a test: it prints numbers
and asserts nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from hpa_utils.backend import keras
from hpa_utils.data.cache import open_cache
from hpa_utils.data.dataset import open_dataset
from hpa_utils.data.labels import CHANNELS
from hpa_utils.data.synth import generate_dataset
from hpa_utils.training import reference_fit
from hpa_utils.training.augment import Augmenter
from hpa_utils.training.batches import CachedBatches, TrainingData
from hpa_utils.training.executor import Job, plan_processes, run_jobs
from hpa_utils.training.fit import compile_model, seed_everything
from hpa_utils.training.models import build_variant
from hpa_utils.training.roofline import forward_flops_per_image, matmul_gflops, training_flops_per_image
from hpa_utils.training.settings import TrainSettings


class InMemoryBatches(keras.utils.PyDataset):
    """The ceiling: batches already decoded, augmented-free and converted to float32, in memory.

    (``model.fit(x, y)`` on numpy arrays was slower than this on the CPU here: Keras' array
    adapter copies the arrays into a new tf.data pipeline at every ``fit`` call.)
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int):
        # Two workers, as the pipeline: with one, Keras hands the batches to tf.data directly, and the
        # previous epoch's iterator teardown then stalls for seconds at some epoch starts (profiled).
        super().__init__(workers=2)
        self.batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batches[index]


class KernelStyleSequence(keras.utils.PyDataset):
    """What the public Kaggle kernels did: decode and resize four PNGs per sample, every batch."""

    def __init__(self, image_dir: Path, ids: list[str], y: np.ndarray, size: int, batch_size: int):
        super().__init__()  # Keras' defaults: workers=1, no multiprocessing
        self.image_dir, self.ids, self.y = Path(image_dir), list(ids), y.astype(np.float32)
        self.size, self.batch_size = size, batch_size

    def __len__(self) -> int:
        return int(np.ceil(len(self.ids) / self.batch_size))

    def _load(self, sample_id: str) -> np.ndarray:
        channels = []
        for colour in CHANNELS:
            with Image.open(self.image_dir / f"{sample_id}_{colour}.png") as image:
                channels.append(np.asarray(image.resize((self.size, self.size)), dtype=np.uint8))
        return np.stack(channels, axis=-1)

    def __getitem__(self, index: int):
        rows = range(index * self.batch_size, min((index + 1) * self.batch_size, len(self.ids)))
        x = np.stack([self._load(self.ids[i]) for i in rows]).astype(np.float32) / 255.0
        return x, self.y[list(rows)]


def _epoch_rate(model: keras.Model, feeder, n_images: int, **fit_kwargs) -> float:
    start = time.perf_counter()
    model.fit(feeder, epochs=1, verbose=0, shuffle=False, **fit_kwargs)
    return n_images / (time.perf_counter() - start)


def _side_by_side_job(
    data_dir,
    cache_dir,
    image_size,
    n,
    variant,
    batch_size,
    epochs,
    seed,
    workers,
    log=print,
    on_epoch=None,
    check_only=False,
):
    """One worker's part of (e) (a :class:`~hpa_utils.training.executor.Job`): train one model on the
    pipeline; images/s of its timed epochs. Nothing is stored, so ``check_only`` finds nothing."""
    if check_only:
        return None
    dataset = open_dataset(data_dir)
    images = open_cache(dataset, "train", image_size, cache_dir, workers=1)

    seed_everything(seed)
    model = compile_model(build_variant(variant, (image_size, image_size, 4)), 1e-3)
    data = TrainingData(images, dataset.y, np.arange(n), np.arange(0), workers=workers)
    settings = TrainSettings(epochs=1, batch_size=batch_size, augment=True, seed=seed)
    _epoch_rate(model, data.batches("train", settings), n)  # warm-up
    start = time.perf_counter()
    for _epoch in range(epochs):
        model.fit(data.batches("train", settings), epochs=1, verbose=0, shuffle=False)
    return {"images_per_s": n * epochs / (time.perf_counter() - start)}


def side_by_side_rate(data_dir, cache_dir, image_size, n, variant, batch_size, processes, epochs=2, seed=0) -> dict:
    """(e): ``processes`` models trained at once, one per worker process; their images/s summed."""
    processes, threads = plan_processes(processes, os.cpu_count() or 1)
    args = (str(data_dir), str(cache_dir), image_size, n, variant, batch_size, epochs, seed, 2)  # 2 threads, as a run
    jobs = [Job(f"bench-{i}", _side_by_side_job, args) for i in range(processes)]
    if processes == 1:
        rates = [_side_by_side_job(*args)["images_per_s"]]
    else:
        rates = list(run_jobs(jobs, processes=processes, threads=threads, log=lambda line: None)["images_per_s"])
    return {"processes": processes, "threads": threads, "images_per_s": float(sum(rates)), "per_process": rates}


def reference_rate(image_size: int, n_images: int, epochs: int = 2) -> dict:
    """(d): the plain ``model.fit`` reference, run as a script in a fresh Python process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_NUM_", "OMP_"))}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, reference_fit.__file__, "--size", str(image_size), "--images", str(n_images)]
    command += ["--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the reference fit failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_pipeline_batches = None


def _open_pipeline(data_dir, cache_dir, image_size, n, batch_size, seed):
    global _pipeline_batches
    images = open_cache(open_dataset(data_dir), "train", image_size, cache_dir, workers=1)
    _pipeline_batches = CachedBatches(
        images, None, np.arange(n), batch_size, shuffle=True, seed=seed, augmenter=Augmenter(seed=seed)
    )
    _pipeline_batches.on_epoch_begin()
    return _pipeline_batches


def _pipeline_batch(index: int) -> int:
    return len(_pipeline_batches[index][0])


def input_pipeline_rates(data_dir, cache_dir, image_size, n, batch_size, workers_list=(1, 2), seed=0) -> dict:
    """(g): images/s of the input pipeline alone (cached batches + the augmentation, no model).

    With 1..N threads (a thread pool over the batches, as Keras' PyDataset workers do) and with N
    worker processes (each opens the memory-mapped cache itself); one pass over ``n`` images after
    a warm-up pass. The per-core rate is the one-thread rate.
    """
    args = (str(data_dir), str(cache_dir), image_size, n, batch_size, seed)
    batches = _open_pipeline(*args)
    result: dict = {"threads": {}, "processes": {}}

    def timed(pool) -> float:
        list(pool.map(_pipeline_batch, range(len(batches))))  # warm-up
        start = time.perf_counter()
        total = sum(pool.map(_pipeline_batch, range(len(batches))))
        return total / (time.perf_counter() - start)

    for workers in workers_list:
        with ThreadPoolExecutor(workers) as pool:
            result["threads"][workers] = timed(pool)
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_open_pipeline, initargs=args) as pool:
                result["processes"][workers] = timed(pool)
    return result


def run_benchmark(
    data_dir: str | Path | None = None,
    work_dir: str | Path = ".cache/bench",
    image_size: int = 128,
    n_images: int = 640,
    batch_size: int = 32,
    rounds: int = 3,
    variant: int = 0,
    workers: int = 2,
    processes: int | str = "auto",
    seed: int = 0,
    log=print,
) -> dict:
    """Run the feeders (a)-(c) for ``rounds`` alternating rounds, then (d)-(g); returns the figures as a dict.

    Args:
        data_dir: a Kaggle-layout dataset of 512-px PNGs; None generates a synthetic one
            (``n_images`` Ids at 512 px) under ``work_dir``.
        work_dir: where the generated data and the cache go.
        image_size: the model's input side (the goals are stated at 128 px).
        n_images: training images per epoch (the first ``n_images`` Ids).
        batch_size: samples per batch.
        rounds: alternating rounds; each ratio is the median over them.
        variant: the base-model variant timed.
        workers: PyDataset threads of this project's pipeline.
        processes: worker processes side by side for (e), as ``train.processes`` (auto: one per core).
    """
    work_dir = Path(work_dir)
    if data_dir is None:
        data_dir = work_dir / f"synthetic-{n_images}x512"
        generate_dataset(data_dir, n_train=n_images, n_test=8, size=512, seed=seed)
    dataset = open_dataset(data_dir)
    ids = dataset.train_ids[:n_images]
    n = len(ids)
    y = dataset.y[:n]

    cache_dir = work_dir / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    images = open_cache(dataset, "train", image_size, cache_dir, workers=workers)
    cache_rate = len(images) / (time.perf_counter() - start)

    seed_everything(seed)
    model = compile_model(build_variant(variant, (image_size, image_size, 4)), 1e-3)
    in_memory = np.asarray(images[:n], dtype=np.float32) / 255.0
    data = TrainingData(images, dataset.y, np.arange(n), np.arange(0), workers=workers)
    settings = TrainSettings(epochs=1, batch_size=batch_size, augment=True, seed=seed)
    feeders = {
        "memory": lambda: _epoch_rate(model, InMemoryBatches(in_memory, y.astype(np.float32), batch_size), n),
        "pipeline": lambda: _epoch_rate(model, data.batches("train", settings), n),
        "kernel": lambda: _epoch_rate(model, KernelStyleSequence(dataset.train_dir, ids, y, image_size, batch_size), n),
    }
    for feed in feeders.values():  # warm-up: tracing and first-touch costs are not timed
        feed()
    rates: dict[str, list[float]] = {name: [] for name in feeders}
    for round_index in range(rounds):
        for name, feed in feeders.items():
            rates[name].append(feed())
        log(f"round {round_index + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in rates.items()))
    memory, pipeline, kernel = (np.array(rates[k]) for k in ("memory", "pipeline", "kernel"))

    log("reference: plain model.fit(x, y, batch_size=32) in a separate process, Keras' defaults ...")
    reference = reference_rate(image_size, n)
    log(f"reference: {reference['images_per_s']:.1f} img/s")
    side = side_by_side_rate(data_dir, cache_dir, image_size, n, variant, batch_size, processes, seed=seed)
    log(f"this project, {side['processes']} models side by side: {side['images_per_s']:.1f} img/s")
    inputs = input_pipeline_rates(data_dir, cache_dir, image_size, n, batch_size, seed=seed)
    log(f"input pipeline alone: {inputs}")
    matmul = matmul_gflops()
    flops = training_flops_per_image(model)
    best = max(side["images_per_s"], float(np.median(pipeline)))
    per_core = inputs["threads"][1]
    two = max([*inputs["threads"].values(), *inputs["processes"].values()])
    scaling = two / (2 * per_core) if 2 in inputs["threads"] else 1.0
    return {
        "image_size": image_size,
        "n_images": n,
        "batch_size": batch_size,
        "rounds": rounds,
        "variant": variant,
        "workers": workers,
        "backend": keras.backend.backend(),
        "cores": os.cpu_count(),
        "memory_images_per_s": float(np.median(memory)),
        "pipeline_images_per_s": float(np.median(pipeline)),
        "kernel_images_per_s": float(np.median(kernel)),
        "pipeline_vs_memory": float(np.median(pipeline / memory)),
        "pipeline_vs_kernel": float(np.median(pipeline / kernel)),
        "reference_images_per_s": float(reference["images_per_s"]),
        "side_by_side": side,
        "project_images_per_s": best,
        "project_vs_reference": best / float(reference["images_per_s"]),
        "forward_gflop_per_image": forward_flops_per_image(model) / 1e9,
        "training_gflop_per_image": flops / 1e9,
        "achieved_gflops": best * flops / 1e9,
        "matmul_gflops": matmul,
        "fraction_of_matmul": best * flops / 1e9 / matmul,
        "input_pipeline": inputs,
        "input_per_core_images_per_s": per_core,
        "input_two_core_scaling": scaling,
        "input_projected_16_cores": per_core * 16 * min(scaling, 1.0),
        "cache_build_samples_per_s": float(cache_rate),
        "rates": rates,
    }


def format_table(result: dict) -> str:
    """The benchmark as a small text table."""
    side = result["side_by_side"]
    rows = [
        ("(a) in-memory float32 batches", result["memory_images_per_s"]),
        ("(b) this pipeline (cache + augmentation)", result["pipeline_images_per_s"]),
        ("(c) Kaggle-kernel PNG generator", result["kernel_images_per_s"]),
        ("(d) reference: plain model.fit, defaults", result["reference_images_per_s"]),
        (f"(e) this project: {side['processes']} models side by side", side["images_per_s"]),
    ]
    lines = [
        f"training throughput at {result['image_size']} px, batch {result['batch_size']}, "
        f"median of {result['rounds']} alternating rounds ({result['backend']} backend, {result['cores']} cores)"
    ]
    lines += [f"  {label:<46} {rate:8.1f} images/s" for label, rate in rows]
    lines.append(f"  b/a pipeline vs memory   {result['pipeline_vs_memory']:.2f}   (goal >= 0.90)")
    lines.append(f"  b/c pipeline vs kernel   {result['pipeline_vs_kernel']:.2f}   (goal >= 1.30)")
    lines.append(f"  best of b, e vs d        {result['project_vs_reference']:.2f}   (goal >= 2.00)")
    lines.append(
        f"roofline: {result['training_gflop_per_image']:.2f} GFLOP per training image "
        f"({result['forward_gflop_per_image']:.2f} forward); achieved {result['achieved_gflops']:.1f} GFLOP/s "
        f"of {result['matmul_gflops']:.0f} GFLOP/s float32 matmul = {result['fraction_of_matmul']:.0%} (goal >= 40%)"
    )
    inputs = result["input_pipeline"]
    threads = ", ".join(f"{k} thread(s) {v:.0f}" for k, v in inputs["threads"].items())
    processes = ", ".join(f"{k} processes {v:.0f}" for k, v in inputs["processes"].items())
    lines.append(f"input pipeline alone (images/s): {threads}; {processes}")
    lines.append(
        f"  per core {result['input_per_core_images_per_s']:.0f} images/s, 2-core scaling "
        f"{result['input_two_core_scaling']:.2f}: about {result['input_projected_16_cores']:.0f} images/s at 16 cores"
    )
    lines.append(f"  cache build (decode 4 PNGs + resize)   {result['cache_build_samples_per_s']:.0f} samples/s")
    return "\n".join(lines)
