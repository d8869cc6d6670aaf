"""The benchmark's reference: a plain ``model.fit(x, y, batch_size=32)`` of the baseline, with every default.

``hpa bench`` runs this file as a script in a separate Python process (``python reference_fit.py``),
so that nothing of the project is imported and nothing the project sets (thread pools, determinism,
environment, log levels) applies: Keras' and TensorFlow's defaults throughout. It builds the report's
baseline layer for layer (the same architecture as :func:`hpa_utils.training.models.build_baseline`,
written out again here on purpose: importing it would import the project), fits it on in-memory
float32 arrays and prints one JSON line: the median images/s of the timed epochs.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def build_reference_baseline(size: int, num_classes: int = 28):
    """The report's baseline CNN+DNN at ``size`` px (3x3 kernels, dropout 0.25 / 0.5 / 0.1)."""
    # deferred: Keras (``hpa bench`` imports this module for its path only; the script imports Keras as it runs)
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 4))
    x = layers.BatchNormalization()(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)
    block1 = layers.Dropout(0.25)(x)
    x = layers.BatchNormalization()(block1)
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)
    block2 = layers.Dropout(0.25)(x)
    x = layers.BatchNormalization()(block2)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    block3 = layers.Dropout(0.25)(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(b) for b in (block1, block2, block3)])
    x = layers.BatchNormalization()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(num_classes, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one untimed)")
    args = parser.parse_args(argv)

    # deferred: Keras
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((args.images, args.size, args.size, 4), dtype=np.float32)
    y = (rng.random((args.images, 28)) < 0.1).astype(np.float32)
    model = build_reference_baseline(args.size)
    model.compile(
        optimizer="adam", loss="binary_crossentropy", metrics=[keras.metrics.F1Score(average="macro", threshold=0.5)]
    )
    rates = []
    for epoch in range(args.epochs + 1):
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        if epoch:  # the first epoch traces the graph: not timed
            rates.append(args.images / (time.perf_counter() - start))
    print(json.dumps({"images_per_s": float(np.median(rates)), "rates": rates, "backend": keras.backend.backend()}))


if __name__ == "__main__":
    main()
