"""The process's runtime settings, in one function called once at each door in.

The command line (``hpa``), the notebooks' kernel (through :func:`hpa_utils.run.open_run`) and the
tests (``tests/conftest.py``) call :func:`configure`; importing any module of the library changes
nothing in the process.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: Environment defaults set before Keras or TensorFlow is first imported (a user's own values win).
ENVIRONMENT_DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ start-up log
    "KERAS_BACKEND": "tensorflow",  # the project's default backend; JAX also runs the code
}

_configured = False


def configure(deterministic: bool = True, headless: bool | None = None, threads: int | None = None) -> None:
    """Configure logging, TensorFlow's noise, determinism and OpenCV's threads; idempotent.

    Args:
        deterministic: make TensorFlow's ops deterministic, so one seed gives one result on one
            machine (a no-op on other backends, whose CPU ops are deterministic already).
        headless: use matplotlib's non-interactive Agg backend unless ``MPLBACKEND`` is set. Default:
            on when not inside a Jupyter kernel (whose inline backend puts figures in the notebook).
        threads: TensorFlow's op threads (intra-op; inter-op 1), for a training worker process that
            shares the cores with others; None keeps TensorFlow's default (every core).
    """
    global _configured
    for key, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    in_kernel = "ipykernel" in sys.modules
    if headless is None:
        headless = not in_kernel
    if headless:
        os.environ.setdefault("MPLBACKEND", "Agg")
    if _configured:
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if in_kernel:
        # A kernel that spawned training workers can still log (asyncio's "Task was destroyed") while it shuts
        # down, after its output streams are closed; logging would then print its own traceback to the console.
        logging.raiseExceptions = False
    # Keras' TensorFlow backend under numpy 2, and Jupyter's own deprecations: not ours to fix, noise in a log
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # deferred: OpenCV, Keras and TensorFlow, imported here only after the environment defaults above are set
    import cv2

    cv2.setNumThreads(1)  # decoding runs in our own thread pools; OpenCV's would oversubscribe the cores
    from hpa_utils.backend import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        if deterministic and threads != 1:
            # One thread per op and one op at a time (a training worker) is deterministic by itself; the
            # flag's deterministic kernels cost such a worker 9% (20.3 vs 22.2 images/s, measured).
            tf.config.experimental.enable_op_determinism()
    _configured = True
