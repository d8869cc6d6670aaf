"""What the run trains on: the Keras backend, the accelerator (if any), the cores; and a warning when
a preset meant for a GPU is about to run on a CPU.

``hpa run`` prints :func:`describe_device` before the first notebook. The ``full`` preset (the
report's 32 models at 256 px) is a job for a GPU; started on a CPU it first measures a few training
steps here and says how long the run would take (:func:`cpu_warning`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hpa_utils.config.run_config import RunConfig
from hpa_utils.training.plan import format_duration, measure_seconds_per_unit, work_plan

#: Presets that expect an accelerator.
GPU_PRESETS = ("full",)


@dataclass(frozen=True)
class Device:
    backend: str
    gpus: tuple[str, ...]
    cores: int

    @property
    def kind(self) -> str:
        return "GPU" if self.gpus else "CPU"

    def describe(self) -> str:
        if self.gpus:
            names = ", ".join(sorted(set(self.gpus)))
            return f"training on {len(self.gpus)} GPU(s) ({names}), Keras backend {self.backend}"
        return f"training on the CPU ({self.cores} cores, no GPU visible), Keras backend {self.backend}"


def detect_device() -> Device:
    """The Keras backend and the GPUs it sees (TensorFlow's or JAX's own device list)."""
    # deferred: Keras, and the backend's own library (TensorFlow, JAX or PyTorch) below
    from hpa_utils.backend import keras

    backend = keras.backend.backend()
    gpus: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device) or {}
            gpus.append(details.get("device_name", device.name))
    elif backend == "jax":
        import jax

        gpus = [str(getattr(d, "device_kind", d)) for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    elif backend == "torch":
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return Device(backend, tuple(gpus), os.cpu_count() or 1)


def describe_device() -> str:
    return detect_device().describe()


def cpu_warning(config: RunConfig, device: Device | None = None, seconds_per_unit: float | None = None) -> str | None:
    """A warning when ``config``'s preset expects a GPU and none is visible, with the time it would take.

    Args:
        config: the run's configuration.
        device: the detected device (detected when None).
        seconds_per_unit: seconds per training-image unit here; measured from a few steps when None.
    """
    device = device or detect_device()
    if device.gpus or config.preset not in GPU_PRESETS:
        return None
    plan = work_plan(config, gpus=0)
    if seconds_per_unit is None:
        seconds_per_unit = measure_seconds_per_unit(config.data.image_size, config.train.batch_size)
    seconds = plan.seconds(seconds_per_unit)
    return (
        f"warning: preset {config.preset!r} is meant for a GPU, and none is visible: on this CPU its "
        f"{len(plan.jobs)} models would take about {format_duration(seconds)} "
        f"(measured {1 / seconds_per_unit:.1f} training images/s at {config.data.image_size} px per worker, "
        f"{plan.processes} worker(s)). For a GPU install see README, 'Training on a GPU'."
    )
