"""Shared fixtures: a tiny hand-made Kaggle-layout dataset, the real 40-Id sample, and tiny training data."""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpa_utils.config import runtime

runtime.configure(headless=True)


def _find_real_sample() -> Path:
    """The 40 real Ids: $HPA_SAMPLE_DIR, else ../shared/data/hpa-sample beside the checkout (or any parent's)."""
    if os.environ.get("HPA_SAMPLE_DIR"):
        return Path(os.environ["HPA_SAMPLE_DIR"])
    root = Path(__file__).resolve().parents[1]
    for parent in [root, *root.parents, Path("/work")]:
        candidate = parent / "shared" / "data" / "hpa-sample"
        if (candidate / "train.csv").is_file():
            return candidate
    return root.parent / "shared" / "data" / "hpa-sample"


REAL_SAMPLE = _find_real_sample()
CHANNELS = ("red", "green", "blue", "yellow")


def _write_pngs(folder: Path, sample_id: str, size: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for channel in CHANNELS:
        cv2.imwrite(str(folder / f"{sample_id}_{channel}.png"), rng.integers(0, 255, (size, size), np.uint8))


def write_tiny_dataset(root: Path, n: int = 6, size: int = 64, seed: int = 0, test: int = 0) -> Path:
    """A Kaggle-layout folder with ``n`` train Ids of random 8-bit PNGs (and ``test`` test Ids)."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    rows = ["Id,Target"]
    for i in range(n):
        _write_pngs(root / "train", f"id{i:03d}", size, rng)
        rows.append(f"id{i:03d},{i % 28} {(i + 3) % 28}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    if test:
        sub = ["Id,Predicted"]
        for i in range(test):
            _write_pngs(root / "test", f"test{i:03d}", size, rng)
            sub.append(f"test{i:03d},0")
        (root / "sample_submission.csv").write_text("\n".join(sub) + "\n")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "data", test=2)


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "train.csv").is_file():
        pytest.skip(f"real HPA sample not found at {REAL_SAMPLE}")
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """The smoke preset's synthetic dataset (160 + 40 Ids at 128 px), generated once."""
    from hpa_utils.data.synth import generate_dataset

    base = tmp_path_factory.mktemp("smoke")
    generate_dataset(base / "data", n_train=160, n_test=40, size=128, seed=0)
    return base


#: Beside the smoke run (``smoke_run``'s folder's parent): its results, predictions and submission as first written.
FIRST_RESULTS = "first-results"


@pytest.fixture(scope="session")
def smoke_run(smoke_data):
    """`hpa run --preset smoke` on it, once (default executor): (run dir, run record, log lines, data dir)."""
    from hpa_utils.run.runner import run

    mp = pytest.MonkeyPatch()
    mp.setenv("HPA_CACHE_DIR", str(smoke_data / "cache"))
    lines: list[str] = []
    record = run("smoke", data_dir=smoke_data / "data", output_dir=smoke_data / "out", log=lines.append, echo=False)
    # other tests re-run the run with changed settings (e.g. ensemble.top_k=3), rewriting its results; the results
    # as this first run wrote them are kept aside for the test that compares a second run with them
    first = smoke_data / FIRST_RESULTS
    for name in ("results", "predictions"):
        shutil.copytree(smoke_data / "out" / name, first / name)
    shutil.copy2(smoke_data / "out" / "submission.csv", first / "submission.csv")
    yield smoke_data / "out", record, lines, smoke_data / "data"
    mp.undo()


def tiny_training_data(tmp_path_factory, image_size: int, workers: int = 2):
    """48 synthetic training Ids (seed 1) decoded at ``image_size``, split 36/12: the training tests' data."""
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.data.split import stratified_split
    from hpa_utils.data.synth import generate_dataset
    from hpa_utils.training.batches import TrainingData

    root = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(root, n_train=48, n_test=8, size=128, seed=1)
    dataset = open_dataset(root)
    images = open_cache(dataset, "train", image_size, tmp_path_factory.mktemp("cache"))
    train, val = stratified_split(dataset.y, 0.25, seed=0)
    return TrainingData(images, dataset.y, train, val, workers=workers)


#: Modules whose tests train models, run notebooks or start Ray, JupyterLab or Chromium: ``make test-fast`` (the
#: developer's inner loop, ``pytest -m "not slow"``) leaves them out; ``make test`` and CI run everything.
SLOW_MODULES = {
    "test_pipeline",
    "test_train",
    "test_beyond",
    "test_cluster",
    "test_speed",
    "test_report_pdf",
    "test_safety_models",
    "test_lab_browser",
    "test_scale",
    "test_determinism",
    "test_install",
}
#: A test that asks for one of these fixtures waits for a whole smoke run (or its data), wherever it is.
SLOW_FIXTURES = {"smoke_run", "smoke_data"}


#: A test whose code does one of these starts another Python (a fresh TensorFlow import, seconds each) or a kernel.
SLOW_CALLS = ("subprocess.run(", "subprocess.Popen(", "subprocess.check_", "papermill", "ExecutePreprocessor")


def _starts_a_process(item) -> bool:
    try:
        return any(call in inspect.getsource(item.function) for call in SLOW_CALLS)
    except (OSError, TypeError, AttributeError):
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or _starts_a_process(item):
            item.add_marker(pytest.mark.slow)
