"""The models as Ray tasks (``train.executor: ray``): the same models as the default executor, progress lines
back in this process, and a killed task reported (or retried) with the other models kept.

Ray is the optional ``cluster`` extra; ``.ci/run`` installs it, so these tests run in CI.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

ray = pytest.importorskip("ray")

from hpa_utils.config.resolve import resolve_config  # noqa: E402
from hpa_utils.studies.training import fine_tune, train_base_models, training_data  # noqa: E402
from hpa_utils.training.cluster import RayJobsFailed, ray_session, run_jobs_on_ray  # noqa: E402
from hpa_utils.training.executor import plan_processes  # noqa: E402
from hpa_utils.training.registry import base_jobs  # noqa: E402
from hpa_utils.training.settings import TrainSettings  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for this module's tests."""
    lines: list[str] = []
    with ray_session(cpus=2, log=lines.append) as slots:
        yield slots, lines


def test_ray_trains_the_smoke_presets_models_as_the_default_executor_does(smoke_run, local_ray, tmp_path):
    out, _, _, data_dir = smoke_run
    slots, started = local_ray
    assert slots == 2 and "a local Ray: 1 node(s), 2 CPU(s), 0 GPU(s)" in started[0]
    config = resolve_config("smoke", ["executor=ray"], data_dir=data_dir, output_dir=tmp_path / "ray")
    lines: list[str] = []
    train_base_models(config, log=lines.append)
    fine_tune(config, log=lines.append)

    ours = pd.read_csv(config.paths.results / "models.csv").set_index("model")
    theirs = pd.read_csv(out / "results" / "models.csv").set_index("model")
    # 2 base variants, their 3 stages and the control of variant 0 (presets/smoke.yaml)
    assert sorted(ours.index) == sorted(theirs.index) and len(ours) == 2 * 4 + 1 and "v0-ctl" in ours.index
    _, threads = plan_processes("auto", 2)
    if threads != 1:
        pytest.skip(f"the default executor trains with {threads} threads per model on this machine, Ray with 1")
    for name in ours.index:  # same seed, same thread count: the same model, epoch by epoch
        a = pd.read_csv(config.paths.models / f"{name}.history.csv").drop(columns="seconds")
        b = pd.read_csv(out / "models" / f"{name}.history.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
        assert ours.loc[name, "val_macro_f1"] == pytest.approx(theirs.loc[name, "val_macro_f1"], abs=1e-9)
    # every model's per-epoch lines came back to this process (the notebook prints them), and the estimate
    for name in ours.index:
        assert any(line.startswith(f"{name} epoch 1/") for line in lines), name
    assert any(line.startswith("estimate: ") for line in lines)
    assert any("as Ray tasks (1 CPU and 1 thread(s) each)" in line for line in lines)

    again: list[str] = []
    train_base_models(config, log=again.append)  # finished models are skipped, as in-process
    assert any("v0: already trained" in line for line in again)


def _kill_when_training(task_name: str, epoch_line: str, lines: list[str], killed: list[int]) -> None:
    """SIGKILL the Ray worker running ``task_name`` once a line starting with ``epoch_line`` has been logged."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        if any(line.startswith(epoch_line) for line in list(lines)):
            for process in psutil.process_iter(["pid", "cmdline"]):
                if any(task_name in part for part in process.info["cmdline"] or []):
                    process.send_signal(signal.SIGKILL)
                    killed.append(process.info["pid"])
                    return
        time.sleep(0.05)


def test_a_killed_task_is_reported_by_name_the_others_are_kept_and_a_retry_resumes_it(smoke_data, local_ray, tmp_path):
    config = resolve_config("smoke", ["executor=ray"], data_dir=smoke_data / "data", output_dir=tmp_path / "kill")
    models = config.paths.make().models
    data = training_data(config)
    settings = TrainSettings(epochs=2, batch_size=16, learning_rate=0.002, seed=0)
    jobs = base_jobs([0, 1], data, settings, models)

    lines: list[str] = []
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_training, args=("train-v0", "v0 epoch 1/2", lines, killed))
    killer.start()
    with pytest.raises(RayJobsFailed) as failure:
        run_jobs_on_ray(jobs, log=lines.append, retries=0)
    killer.join()
    assert killed, "the test did not find v0's Ray worker"
    assert list(failure.value.failed) == ["v0"] and "Ray worker died" in failure.value.failed["v0"]
    assert "v0: its Ray worker died" in str(failure.value) and "run again to resume" in str(failure.value)
    assert (models / "v1.json").is_file() and not (models / "v0.json").exists()  # v1 went on and is kept
    assert json.loads((models / "v1.json").read_text())["epochs_trained"] == 2
    assert (models / "v0.ckpt").is_dir() or (models / "v0.history.csv").is_file()  # v0's finished epochs are kept

    lines.clear()
    killed.clear()
    resumed = "v0: resuming after epoch 1/2"  # killed again while it trains its second epoch
    killer = threading.Thread(target=_kill_when_training, args=("train-v0", resumed, lines, killed))
    killer.start()
    table = run_jobs_on_ray(jobs, log=lines.append, retries=1)  # killed again: retried, and it resumes
    killer.join()
    assert killed and any("v0: its Ray worker died" in line and "retry 1 of 1" in line for line in lines)
    assert any(line.startswith("v1: already trained") for line in lines)
    assert any(line.startswith("v0: resuming after epoch") for line in lines)
    assert list(table["name"]) == ["v0", "v1"] and (models / "v0.json").is_file()
    assert Path(models / "v0.keras").is_file()
