"""The speed work: the fused batch norm, the roofline count, the reference script, the work plan and its
estimate, the worker-process layout and the device report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hpa_utils.backend import keras


def test_fused_batch_norm_matches_keras():
    """Same outputs, gradients and moving statistics as Keras' own layer, in training and inference."""
    import tensorflow as tf

    from hpa_utils.training.models import BatchNormalization

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (4, 9, 7, 5)).astype("float32"))
    ours, theirs = BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    gamma, beta = rng.uniform(0.5, 2.0, 5).astype("float32"), rng.normal(0, 1, 5).astype("float32")
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(y.shape[-1], dtype=y.dtype))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-4)
    assert ours.moving_variance.numpy().max() > 1.0  # the statistics moved (the inputs' variance is 9)


def test_models_save_and_load_with_the_fused_layer(tmp_path):
    from hpa_utils.training.models import BatchNormalization, build_variant

    model = build_variant(0, (80, 80, 4))
    assert isinstance(model.get_layer("cnn_block1_bn1"), BatchNormalization)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).random((2, 80, 80, 4), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_roofline_counts_the_baselines_multiply_adds():
    from hpa_utils.training.models import build_variant
    from hpa_utils.training.roofline import layer_macs, training_flops_per_image

    macs = layer_macs(build_variant(0, (128, 128, 4)))
    # by hand: 126x126 outputs x 32 filters x 3x3x4; the stride-2 conv: 31x31 x 64 x 3x3x32; ...
    assert macs["cnn_block1_conv1"] == 126 * 126 * 32 * 3 * 3 * 4
    assert macs["cnn_block2_conv1"] == 31 * 31 * 64 * 3 * 3 * 32
    assert macs["cnn_block3_conv3"] == 7 * 7 * 128 * 3 * 3 * 128
    assert macs["dnn_dense1"] == (32 + 64 + 128) * 256
    assert macs["dnn_logits"] == 256 * 28
    total = sum(macs.values())
    assert 0.11e9 < total < 0.13e9  # about 0.12 GMAC per 128-px image
    assert training_flops_per_image(build_variant(0, (128, 128, 4))) == 3 * 2 * total


def test_reference_script_imports_no_project_code():
    """The benchmark's reference runs as a plain script: nothing of hpa_utils may be imported by it."""
    from hpa_utils.training import reference_fit

    probe = (
        "import runpy, sys, json; sys.argv = ['ref', '--size', '80', '--images', '32', '--epochs', '1'];"
        f"runpy.run_path({reference_fit.__file__!r}, run_name='__main__');"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hpa_utils'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == []
    assert json.loads(lines[-2])["images_per_s"] > 0


def test_the_plan_counts_work_and_the_estimate_scales_with_it():
    from hpa_utils.training.plan import PREDICT_COST, Estimate, PlannedJob, WorkPlan, seconds_per_unit

    jobs = [PlannedJob("v0", 2, 100, 30), PlannedJob("v0-B", 1, 100, 30, "dnn")]
    plan = WorkPlan(jobs, predict_images=60, processes=1)
    assert plan.units == pytest.approx(2 * (100 + 30 * PREDICT_COST) + (40 + 30 * PREDICT_COST) + 60 * PREDICT_COST)
    record = {"name": "v0", "epoch": 1, "epochs": 2, "seconds": 11.0, "n_train": 100, "n_val": 30, "part": "all"}
    assert seconds_per_unit(record) == pytest.approx(11.0 / 110)
    assert WorkPlan(jobs, 60, processes=2).seconds(0.1) == pytest.approx(plan.seconds(0.1) / 2)
    lines = []
    estimate = Estimate(plan, lines.append)
    estimate(record)
    estimate({**record, "epoch": 2})
    assert len(lines) == 1 and "about" in lines[0] and "2 models" in lines[0] and "v0's first epoch" in lines[0]


def test_the_work_plan_lists_the_configured_models_and_reads_the_split(tmp_path):
    from hpa_utils.config.resolve import resolve_config
    from hpa_utils.training.plan import model_jobs, work_plan

    config = resolve_config("smoke", output_dir=tmp_path / "run")
    jobs = model_jobs(config, 100, 30)
    assert [job.name for job in jobs] == ["v0", "v0-A", "v0-B", "v0-C", "v0-ctl", "v1", "v1-A", "v1-B", "v1-C"]
    stage_epochs = list(config.train.stages.epochs.values())
    assert [job.epochs for job in jobs[:4]] == [config.train.base.epochs, *stage_epochs]
    assert jobs[4].kind == "ctl" and jobs[4].epochs == sum(stage_epochs)  # the stages' epochs, without freezing
    plan = work_plan(config, processes=1)  # the data not generated yet: the preset's size, the share
    assert plan.jobs[0].n_val == round(config.synth.n_train * config.data.val_fraction)
    split = config.paths.make().split_file(config.seed, config.data.val_fraction)
    split.write_text("Id,split\n" + "".join(f"i{k},{'val' if k < 37 else 'train'}\n" for k in range(160)))
    (config.paths.models / "v0.json").write_text("{}")
    plan = work_plan(config, processes=1)
    assert plan.jobs[0].name == "v0-A" and plan.jobs[0].n_val == 37  # counted in the saved split


def test_worker_processes_follow_cores_and_gpus():
    from hpa_utils.training.executor import plan_processes

    assert plan_processes("auto", 8, gpus=0, cores=2) == (2, 1)
    assert plan_processes("auto", 1, gpus=0, cores=2) == (1, 0)  # one job: in this process, every thread
    assert plan_processes("auto", 8, gpus=1, cores=16) == (1, 0)  # one GPU: one job at a time
    assert plan_processes("auto", 4, gpus=0, cores=16) == (4, 4)
    assert plan_processes(1, 8, cores=2) == (1, 0)
    assert plan_processes(3, 8, cores=6) == (3, 2)


def test_the_device_is_reported_and_a_gpu_preset_on_a_cpu_is_warned(tiny_dataset):
    from hpa_utils.config.resolve import resolve_config
    from hpa_utils.training.device import Device, cpu_warning, detect_device

    device = detect_device()
    assert device.backend == keras.backend.backend()
    assert ("GPU(s)" in device.describe()) == bool(device.gpus)
    cpu = Device("tensorflow", (), 2)
    assert "CPU (2 cores" in cpu.describe()
    full = resolve_config("full", data_dir=tiny_dataset)
    warning = cpu_warning(full, cpu, seconds_per_unit=0.05)
    assert warning is not None and "meant for a GPU" in warning and "would take about" in warning
    assert cpu_warning(resolve_config("smoke", data_dir=tiny_dataset), cpu, seconds_per_unit=0.05) is None
    gpu = Device("jax", ("NVIDIA H200",), 16)
    assert cpu_warning(full, gpu, seconds_per_unit=0.05) is None
    assert "1 GPU(s) (NVIDIA H200)" in gpu.describe()


def test_a_worker_interrupted_inside_a_garbage_collector_callback_still_stops_quietly():
    """Ctrl-C that lands in a ``__del__`` or weakref callback is re-delivered, not printed as a traceback."""
    script = """
import signal, sys, time
from hpa_utils.training import executor

signal.signal(signal.SIGINT, executor._worker_interrupted)
sys.unraisablehook = executor._worker_unraisable
executor._worker_busy = True


class Finalised:
    def __del__(self):
        raise KeyboardInterrupt  # what the SIGINT handler does when the signal arrives during a finaliser


try:
    Finalised()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("not stopped")
except KeyboardInterrupt:
    print("stopped")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "stopped", done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
