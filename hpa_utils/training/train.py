"""Training: the input pipeline over the image cache, one model's fit, the fine-tuning stages.

One model is one job: :func:`fit_model` builds (or loads) it, trains it with
``model.fit`` and Keras' own F1 metric, adds the exact validation macro F1 each
epoch, and writes under ``models_dir``:

* ``{name}.keras``         the trained model (last epoch), written when training ends;
* ``{name}.history.csv``   one row per epoch: loss, f1, val_loss, val_f1, val_macro_f1, seconds;
* ``{name}.json``          the summary (val macro F1, best epoch, settings), written last:
  its presence means "finished", so a re-run skips the model;
* ``{name}.ckpt/``         the per-epoch checkpoint while training; an interrupted job resumes
  from its last completed epoch and the folder is removed at the end.

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_utils.evaluation.metrics import keras_f1_metric, macro_f1
from hpa_utils.io import write_atomic, write_text_atomic
from hpa_utils.training.augment import Augmenter
from hpa_utils.training.backend import keras
from hpa_utils.training.models import build_variant, get_variant, prior_log_odds, set_trainable_part

#: Fine-tuning stages after a base model, as the report: (stage, part trained, parent stage).
STAGES: tuple[tuple[str, str, str], ...] = (("A", "cnn", "base"), ("B", "dnn", "A"), ("C", "dnn", "B"))
HISTORY_COLUMNS = ["epoch", "loss", "f1", "val_loss", "val_f1", "val_macro_f1", "seconds"]


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training job (everything that changes its result)."""

    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    augment: bool = True
    prior_bias: bool = True
    seed: int = 0
    part: str = "all"


class CachedBatches(keras.utils.PyDataset):
    """Batches from the memory-mapped image cache, reshuffled every epoch, augmented in the workers.

    Batch ``i`` of epoch ``e`` depends only on (seed, e, i), so worker threads may build batches
    in any order and the run stays deterministic.

    Args:
        images: (N, H, W, 4) uint8 array or memmap (the whole split).
        labels: (N, C) multi-hot labels, or None for prediction.
        indices: rows of ``images`` in this dataset (e.g. the training part of the split).
        batch_size: samples per batch.
        shuffle: reshuffle the rows at every epoch.
        seed: the run's seed.
        augmenter: an :class:`~hpa_utils.augment.Augmenter`, or None.
        workers: threads building batches (Keras' PyDataset pool).
    """

    def __init__(self, images, labels, indices, batch_size, shuffle=False, seed=0, augmenter=None, workers=1):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max(4, 2 * workers))
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.indices = np.asarray(indices)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augmenter = augmenter
        self.epoch = 0
        self.order = self.indices

    def __len__(self) -> int:
        return int(np.ceil(len(self.indices) / self.batch_size))

    def on_epoch_begin(self) -> None:
        self.epoch += 1
        if self.shuffle:
            self.order = np.random.default_rng([self.seed, self.epoch]).permutation(self.indices)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        sorted_rows = np.sort(rows)  # memmap reads in file order
        x = self.images[sorted_rows]
        x = x[np.searchsorted(sorted_rows, rows)]
        if self.augmenter is not None:
            x = self.augmenter.augment(x, seed=self.epoch * 100003 + index)
        x = x.astype(np.float32) * np.float32(1 / 255)
        if self.labels is None:
            return (x,)
        return x, self.labels[rows]


@dataclass
class TrainingData:
    """The images and labels of one run: the cache, the labels, and the split."""

    images: np.ndarray
    y: np.ndarray
    train_indices: np.ndarray
    val_indices: np.ndarray
    workers: int = 2

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def batches(self, part: str, settings: TrainSettings) -> CachedBatches:
        """The training batches (shuffled, augmented) or the validation batches (neither)."""
        training = part == "train"
        return CachedBatches(
            self.images,
            self.y,
            self.train_indices if training else self.val_indices,
            settings.batch_size,
            shuffle=training,
            seed=settings.seed,
            augmenter=Augmenter(seed=settings.seed, enabled=settings.augment) if training else None,
            workers=self.workers,
        )


def seed_everything(seed: int) -> None:
    """Python, numpy and backend seeds (deterministic ops are switched on by ``runtime.configure``)."""
    keras.utils.set_random_seed(int(seed))


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam, binary cross-entropy and Keras' macro F1 (jit off: XLA is slower on CPUs)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras_f1_metric()],
        jit_compile=False,
    )
    return model


def save_model_atomic(model: keras.Model, path: Path) -> None:
    write_atomic(path, model.save)


def predict(model: keras.Model, data: TrainingData | np.ndarray, indices=None, batch_size: int = 64) -> np.ndarray:
    """Sigmoid probabilities (N, C) of ``model`` on rows ``indices`` of an image array (no augmentation)."""
    images = data.images if isinstance(data, TrainingData) else data
    indices = np.arange(len(images)) if indices is None else indices
    batches = CachedBatches(images, None, indices, batch_size)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float32)


class EpochEnd(keras.callbacks.Callback):
    """Per epoch: exact validation macro F1, then a checkpoint and the history, then one log line.

    The checkpoint is written before the history row, so ``len(history)`` always names a
    checkpoint that exists: that is where an interrupted job resumes.
    """

    def __init__(self, name, data, settings, ckpt_dir, history_path, history, log: Callable[[str], None]):
        super().__init__()
        self.name, self.data, self.settings = name, data, settings
        self.ckpt_dir, self.history_path, self.history = ckpt_dir, history_path, history
        self.log = log
        self.val_probabilities: np.ndarray | None = None
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.val_probabilities = predict(self.model, self.data, self.data.val_indices, self.settings.batch_size * 2)
        y_val = self.data.y[self.data.val_indices]
        logs["val_macro_f1"] = macro_f1(y_val, self.val_probabilities >= 0.5)
        row = {"epoch": epoch + 1, **{k: float(logs.get(k, np.nan)) for k in HISTORY_COLUMNS[1:6]}}
        row["seconds"] = round(time.perf_counter() - self.started, 2)
        self.history.append(row)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_model_atomic(self.model, self.ckpt_dir / f"epoch-{epoch + 1}.keras")
        write_text_atomic(self.history_path, pd.DataFrame(self.history, columns=HISTORY_COLUMNS).to_csv(index=False))
        for old in self.ckpt_dir.glob("epoch-*.keras"):
            if old.name != f"epoch-{epoch + 1}.keras":
                old.unlink(missing_ok=True)
        self.log(
            f"{self.name} epoch {epoch + 1}/{self.settings.epochs}: loss {row['loss']:.4f} f1 {row['f1']:.3f}"
            f" | val loss {row['val_loss']:.4f} f1 {row['val_f1']:.3f} macro F1 {row['val_macro_f1']:.3f}"
            f" | {row['seconds']:.0f} s"
        )


def fit_model(
    name: str,
    make_model: Callable[[], keras.Model],
    data: TrainingData,
    settings: TrainSettings,
    models_dir: str | Path,
    meta: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train one model, resuming or skipping as its files say; returns its summary.

    Args:
        name: the model's name (file stem under ``models_dir``).
        make_model: builds the untrained (or parent) model; called only when starting afresh.
        data: images, labels and split.
        settings: epochs, batch size, learning rate, augmentation, seed, part to train.
        models_dir: where the model's files go.
        meta: extra fields for the summary (variant, stage, parent...).
        log: where the per-epoch lines go.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    summary_path = models_dir / f"{name}.json"
    model_path = models_dir / f"{name}.keras"
    history_path = models_dir / f"{name}.history.csv"
    ckpt_dir = models_dir / f"{name}.ckpt"
    wanted = {
        "settings": asdict(settings),
        "image_size": data.image_size,
        "n_train": len(data.train_indices),
        "n_val": len(data.val_indices),
        **(meta or {}),
    }
    if summary_path.is_file() and model_path.is_file():
        summary = json.loads(summary_path.read_text())
        if all(summary.get(k) == v for k, v in wanted.items()):
            log(f"{name}: already trained (val macro F1 {summary['val_macro_f1']:.3f}), skipped")
            return {**summary, "skipped": True}
    summary_path.unlink(missing_ok=True)  # a stale summary must not look finished while retraining
    seed_everything(settings.seed)
    history: list[dict] = []
    done = 0
    if history_path.is_file() and (ckpt_dir / "checkpoint.json").is_file():
        state = json.loads((ckpt_dir / "checkpoint.json").read_text())
        old = pd.read_csv(history_path)
        if state == wanted and (ckpt_dir / f"epoch-{len(old)}.keras").is_file() and 0 < len(old) < settings.epochs:
            done, history = len(old), old.to_dict("records")
    if done:
        model = keras.saving.load_model(ckpt_dir / f"epoch-{done}.keras")
        log(f"{name}: resuming after epoch {done}/{settings.epochs}")
    else:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        history_path.unlink(missing_ok=True)
        ckpt_dir.mkdir(parents=True)
        write_text_atomic(ckpt_dir / "checkpoint.json", json.dumps(wanted))
        model = compile_model(set_trainable_part(make_model(), settings.part), settings.learning_rate)
    callback = EpochEnd(name, data, settings, ckpt_dir, history_path, history, log)
    started = time.perf_counter()
    if done < settings.epochs:
        train_batches = data.batches("train", settings)
        train_batches.epoch = done  # the shuffling and augmentation of epoch done+1 on, as uninterrupted
        model.fit(
            train_batches,
            validation_data=data.batches("val", settings),
            epochs=settings.epochs,
            initial_epoch=done,
            callbacks=[callback],
            verbose=0,
        )
    frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    best = int(frame["val_macro_f1"].idxmax())
    summary = {
        "name": name,
        **wanted,
        "epochs_trained": len(frame),
        "val_macro_f1": float(frame["val_macro_f1"].iloc[-1]),
        "best_val_macro_f1": float(frame["val_macro_f1"].iloc[best]),
        "best_epoch": int(frame["epoch"].iloc[best]),
        "train_seconds": round(float(frame["seconds"].sum()), 1),
        "images_per_second": round(len(data.train_indices) * len(frame) / max(time.perf_counter() - started, 1e-9), 1)
        if not done
        else None,
        "path": model_path.name,
    }
    save_model_atomic(model, model_path)
    write_text_atomic(summary_path, json.dumps(summary, indent=1))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def base_name(variant: int) -> str:
    return f"v{int(variant)}"


def stage_name(variant: int, stage: str) -> str:
    return base_name(variant) if stage == "base" else f"v{int(variant)}-{stage}"


def train_base(variant, data, settings, models_dir, log=print) -> dict:
    """Train base model ``variant`` (index into :data:`~hpa_utils.models.VARIANTS`) from scratch."""
    index = _variant_index(variant)
    bias = prior_log_odds(data.y[data.train_indices]) if settings.prior_bias else None
    shape = (data.image_size, data.image_size, data.images.shape[-1])
    meta = {"variant": index, "variant_name": get_variant(index).name, "stage": "base", "parent": None}
    return fit_model(
        base_name(index), lambda: build_variant(index, shape, output_bias=bias), data, settings, models_dir, meta, log
    )


def finetune(variant, stage, data, settings, models_dir, log=print) -> dict:
    """Fine-tuning stage ``stage`` ("A", "B" or "C") of a base model, from its parent stage's model."""
    index = _variant_index(variant)
    stages = {s: (part, parent) for s, part, parent in STAGES}
    if stage not in stages:
        raise ValueError(f"unknown stage {stage!r}; the stages are {', '.join(stages)}")
    part, parent = stages[stage]
    parent_path = Path(models_dir) / f"{stage_name(index, parent)}.keras"
    if not parent_path.is_file():
        raise FileNotFoundError(f"{parent_path}: stage {stage} starts from this model; train it first")
    meta = {
        "variant": index,
        "variant_name": get_variant(index).name,
        "stage": stage,
        "parent": stage_name(index, parent),
        "parent_mtime_ns": parent_path.stat().st_mtime_ns,
    }
    settings = TrainSettings(**{**asdict(settings), "part": part})
    return fit_model(
        stage_name(index, stage),
        lambda: keras.saving.load_model(parent_path, compile=False),
        data,
        settings,
        models_dir,
        meta,
        log,
    )


def _variant_index(variant) -> int:
    from hpa_utils.training.models import VARIANTS

    return VARIANTS.index(get_variant(variant))


def load_history(models_dir: str | Path, name: str) -> pd.DataFrame:
    """The per-epoch history of model ``name``."""
    return pd.read_csv(Path(models_dir) / f"{name}.history.csv")


def models_table(models_dir: str | Path) -> pd.DataFrame:
    """Every finished model: name, variant, stage, epochs, validation macro F1, path."""
    rows = []
    for path in sorted(Path(models_dir).glob("*.json")):
        summary = json.loads(path.read_text())
        rows.append(
            {
                "model": summary["name"],
                "variant": summary["variant"],
                "variant_name": summary["variant_name"],
                "stage": summary["stage"],
                "epochs": summary["epochs_trained"],
                "val_macro_f1": summary["val_macro_f1"],
                "best_val_macro_f1": summary["best_val_macro_f1"],
                "best_epoch": summary["best_epoch"],
                "train_seconds": summary["train_seconds"],
                "path": str(Path(models_dir) / summary["path"]),
            }
        )
    order = {"base": 0, "A": 1, "B": 2, "C": 3}
    frame = pd.DataFrame(
        rows,
        columns=[
            "model",
            "variant",
            "variant_name",
            "stage",
            "epochs",
            "val_macro_f1",
            "best_val_macro_f1",
            "best_epoch",
            "train_seconds",
            "path",
        ],
    )
    return frame.sort_values(
        ["variant", "stage"], key=lambda s: s.map(order) if s.name == "stage" else s, ignore_index=True
    )


def load_training_data(
    data_dir: str | Path,
    cache_dir: str | Path,
    image_size: int,
    split_path: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 2,
) -> TrainingData:
    """Open the dataset, its decoded cache at ``image_size`` and the run's saved split (made if missing)."""
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.data.split import get_or_make_split

    dataset = open_dataset(data_dir)
    images = open_cache(dataset, "train", image_size, cache_dir, workers=workers)
    y = dataset.y
    train, val = get_or_make_split(split_path, dataset.train_ids, y, val_fraction, seed)
    return TrainingData(images, y, train, val, workers=workers)


def run_jobs(jobs: list[tuple[str, Callable[[], dict]]], log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run training jobs in order with an overall progress line over models (one text line per model,
    so it reads the same in a terminal, a live notebook and an executed one)."""
    from tqdm import tqdm

    started = time.perf_counter()
    summaries = []
    for done, (name, job) in enumerate(jobs):
        elapsed = time.perf_counter() - started
        log(
            tqdm.format_meter(done, len(jobs), elapsed, ncols=90, prefix="models", unit="model", postfix=f"next {name}")
        )
        summaries.append(job())
    log(tqdm.format_meter(len(jobs), len(jobs), time.perf_counter() - started, ncols=90, prefix="models", unit="model"))
    return pd.DataFrame(summaries)


def base_jobs(variants, data, settings, models_dir, log=print) -> list[tuple[str, Callable[[], dict]]]:
    """One job per base variant (for :func:`run_jobs`)."""
    return [
        (base_name(_variant_index(v)), lambda v=v: train_base(v, data, settings, models_dir, log)) for v in variants
    ]


def stage_jobs(variants, data, stage_settings: dict, models_dir, log=print) -> list[tuple[str, Callable[[], dict]]]:
    """Stages A, B, C of every base variant, in order (``stage_settings``: stage -> TrainSettings)."""
    return [
        (
            stage_name(_variant_index(v), stage),
            lambda v=v, s=stage: finetune(v, s, data, stage_settings[s], models_dir, log),
        )
        for v in variants
        for stage, _, _ in STAGES
    ]


def predict_models(
    model_paths: dict[str, str | Path],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    predictions_dir: str | Path,
    batch_size: int = 64,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, np.ndarray]]:
    """Every model's probabilities on every split, computed once and stored as ``.npy``.

    A stored prediction is reused while its model file and rows are unchanged (a small JSON
    beside it records the model's mtime and a hash of the rows), so sweeps cost no inference.

    Args:
        model_paths: model name -> ``.keras`` path.
        splits: split name (e.g. "val", "test") -> (images, row indices).
        predictions_dir: where ``{model}_{split}.npy`` go.

    Returns:
        split -> model -> (N, C) float32 probabilities.
    """
    from hpa_utils.io import write_atomic, write_json_atomic

    predictions_dir = Path(predictions_dir)
    out: dict[str, dict[str, np.ndarray]] = {split: {} for split in splits}
    for name, model_path in model_paths.items():
        model = None
        for split, (images, indices) in splits.items():
            npy = predictions_dir / f"{name}_{split}.npy"
            key = {
                "model_mtime_ns": Path(model_path).stat().st_mtime_ns,
                "rows": len(indices),
                "rows_hash": _rows_hash(indices),
                "image_size": int(images.shape[1]),
            }
            meta = npy.with_suffix(".json")
            if npy.is_file() and meta.is_file() and json.loads(meta.read_text()) == key:
                out[split][name] = np.load(npy)
                continue
            if model is None:
                model = keras.saving.load_model(model_path, compile=False)
                log(f"predicting with {name}")
            probabilities = predict(model, images, indices, batch_size)
            write_atomic(npy, lambda tmp, p=probabilities: np.save(tmp, p))
            write_json_atomic(meta, key)
            out[split][name] = probabilities
    return out


def _rows_hash(indices) -> str:
    import hashlib

    return hashlib.sha1(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]
