"""The input-pipeline benchmark (``hpa bench`` / ``make bench``).

Measures, in one run, on the same model and the same 512-px PNGs, training
images/s when the model is fed by

(a) in-memory float32 batches: the ceiling, no input work at all;
(b) this project's pipeline: :class:`~hpa_utils.training.batches.CachedBatches` over the decoded
    memmap cache, with the report's augmentation, in Keras' PyDataset worker threads;
(c) a Kaggle-kernel-style generator: a Sequence that opens the four 512-px PNGs of every
    sample with PIL and resizes them, in every batch of every epoch, with Keras' default
    workers (one, synchronous).

The feeders alternate round by round (this machine's speed drifts between epochs), and
each ratio is the median over rounds. It also times the cache build (decode + resize).
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hpa_utils.data.cache import open_cache
from hpa_utils.data.dataset import open_dataset
from hpa_utils.data.labels import CHANNELS
from hpa_utils.training.backend import keras
from hpa_utils.training.batches import TrainingData
from hpa_utils.training.fit import TrainSettings, compile_model, seed_everything


class InMemoryBatches(keras.utils.PyDataset):
    """The ceiling: batches already decoded, augmented-free and converted to float32, in memory.

    (``model.fit(x, y)`` on numpy arrays was slower than this on the CPU here: Keras' array
    adapter copies the arrays into a new tf.data pipeline at every ``fit`` call.)
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int):
        super().__init__()
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


def run_benchmark(
    data_dir: str | Path | None = None,
    work_dir: str | Path = ".cache/bench",
    image_size: int = 128,
    n_images: int = 640,
    batch_size: int = 32,
    rounds: int = 7,
    variant: int = 0,
    workers: int = 2,
    seed: int = 0,
    log=print,
) -> dict:
    """Run the three feeders for ``rounds`` alternating rounds; returns the figures as a dict.

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
    """
    from hpa_utils.training.models import build_variant

    work_dir = Path(work_dir)
    if data_dir is None:
        from hpa_utils.data.synth import generate_dataset

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
    return {
        "image_size": image_size,
        "n_images": n,
        "batch_size": batch_size,
        "rounds": rounds,
        "variant": variant,
        "workers": workers,
        "backend": keras.backend.backend(),
        "memory_images_per_s": float(np.median(memory)),
        "pipeline_images_per_s": float(np.median(pipeline)),
        "kernel_images_per_s": float(np.median(kernel)),
        "pipeline_vs_memory": float(np.median(pipeline / memory)),
        "pipeline_vs_kernel": float(np.median(pipeline / kernel)),
        "cache_build_samples_per_s": float(cache_rate),
        "rates": rates,
    }


def format_table(result: dict) -> str:
    """The benchmark as a small text table."""
    rows = [
        ("(a) in-memory float32 batches", result["memory_images_per_s"]),
        ("(b) this pipeline (cache + augmentation)", result["pipeline_images_per_s"]),
        ("(c) Kaggle-kernel PNG generator", result["kernel_images_per_s"]),
    ]
    lines = [
        f"training throughput at {result['image_size']} px, batch {result['batch_size']}, "
        f"median of {result['rounds']} alternating rounds ({result['backend']} backend)"
    ]
    lines += [f"  {label:<42} {rate:8.1f} images/s" for label, rate in rows]
    lines.append(f"  b/a pipeline vs memory   {result['pipeline_vs_memory']:.2f}   (goal >= 0.90)")
    lines.append(f"  b/c pipeline vs kernel   {result['pipeline_vs_kernel']:.2f}   (goal >= 1.30)")
    lines.append(f"  cache build (decode 4 PNGs + resize)   {result['cache_build_samples_per_s']:.0f} samples/s")
    return "\n".join(lines)
