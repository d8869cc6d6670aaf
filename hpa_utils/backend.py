"""Keras, imported once with TensorFlow's start-up log kept out of the output.

TensorFlow 2.21 writes its start-up messages (oneDNN, CPU features) from C++ straight to file
descriptor 2 before its logging is configured, ignoring ``TF_CPP_MIN_LOG_LEVEL``; in a notebook they
land in the executed copy. Modules that need Keras import it from here; it imports nothing of the project,
so every layer may. The process's settings (backend, log levels, determinism) are made by
:func:`hpa_utils.config.runtime.configure`, not here.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration (C-level writes included)."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with stderr_silenced():
    import keras  # noqa: E402

__all__ = ["keras", "stderr_silenced"]
