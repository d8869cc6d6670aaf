"""The GPU check: what a GPU box does with the ``full`` preset, measured in a few minutes.

Run on the machine with the GPU (JAX with CUDA: ``pip install -e .[gpu]``)::

    KERAS_BACKEND=jax python -m hpa_utils.training.gpu_check --steps 300 --workers 16

It generates a small synthetic dataset at 512 px (Kaggle's image size) under ``--work-dir``, builds
the decoded cache at ``--size`` px, then measures, one after the other:

1. the input pipeline alone (cached batches + the report's augmentation, no model) with ``--workers``
   threads: the images/s it can feed;
2. training the baseline at ``--size`` px for ``--steps`` steps with that pipeline, the way a run
   trains (Keras ``fit`` on the project's :class:`~hpa_utils.training.batches.CachedBatches`);

and prints one JSON object with both rates, the device, and the projected wall time of the ``full``
preset on Kaggle's data (31,072 training and 11,702 test images, 8 base models and 24 stages) at the
measured training rate, computed with the run's own :class:`~hpa_utils.training.plan.WorkPlan`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hpa_utils.config import runtime
from hpa_utils.config.resolve import resolve_config
from hpa_utils.training.device import detect_device
from hpa_utils.training.plan import WorkPlan, format_duration, model_jobs
from hpa_utils.training.settings import TrainSettings

#: Kaggle's HPA 2018 training and test Ids (the full preset's real-data size).
KAGGLE_TRAIN, KAGGLE_TEST = 31072, 11702


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path(".cache/gpu-check"))
    parser.add_argument("--images", type=int, default=512, help="synthetic training images generated (512 px)")
    parser.add_argument("--size", type=int, default=256, help="model input side (the full preset's 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="timed training steps (after one warm-up epoch)")
    parser.add_argument("--workers", type=int, default=16, help="input-pipeline threads")
    args = parser.parse_args(argv)

    runtime.configure(headless=True)
    # deferred: Keras and OpenCV, imported after configure() has set the environment they read
    from hpa_utils.backend import keras
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.data.synth import generate_dataset
    from hpa_utils.training.batches import TrainingData
    from hpa_utils.training.bench import input_pipeline_rates
    from hpa_utils.training.fit import compile_model, seed_everything
    from hpa_utils.training.models import build_variant

    device = detect_device()
    data_dir = args.work_dir / f"synthetic-{args.images}x512"
    if not (data_dir / "train.csv").is_file():
        generate_dataset(data_dir, n_train=args.images, n_test=8, size=512, seed=0)
    dataset = open_dataset(data_dir)
    cache_dir = args.work_dir / "cache"
    images = open_cache(dataset, "train", args.size, cache_dir, workers=args.workers)
    n = len(images)

    pipeline = input_pipeline_rates(data_dir, cache_dir, args.size, n, args.batch_size, workers_list=(args.workers,))
    input_rate = pipeline["threads"][args.workers]

    seed_everything(0)
    model = compile_model(build_variant(0, (args.size, args.size, 4)), 1e-3)
    data = TrainingData(images, dataset.y, np.arange(n), np.arange(0), workers=args.workers)
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, seed=0)
    model.fit(data.batches("train", settings), epochs=1, verbose=0, shuffle=False)  # warm-up: compilation
    steps_per_epoch = int(np.ceil(n / args.batch_size))
    epochs = max(1, round(args.steps / steps_per_epoch))
    start = time.perf_counter()
    model.fit(data.batches("train", settings), epochs=epochs, verbose=0, shuffle=False)
    train_rate = n * epochs / (time.perf_counter() - start)

    full = resolve_config("full")
    n_val = round(KAGGLE_TRAIN * full.data.val_fraction)
    n_train = KAGGLE_TRAIN - n_val
    jobs = model_jobs(full, n_train, n_val)
    models = len(jobs)
    plan = WorkPlan(jobs, predict_images=models * (n_val + KAGGLE_TEST), processes=max(1, len(device.gpus)))
    projected = plan.seconds(1 / train_rate)
    result = {
        "device": device.describe(),
        "backend": keras.backend.backend(),
        "image_size": args.size,
        "batch_size": args.batch_size,
        "timed_steps": epochs * steps_per_epoch,
        "train_images_per_s": round(train_rate, 1),
        "input_pipeline_images_per_s": round(input_rate, 1),
        "input_workers": args.workers,
        "full_preset_models": models,
        "full_preset_projected_seconds": round(projected),
        "full_preset_projected": format_duration(projected),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
