"""The 28 protein-localisation classes and the Target string <-> multi-hot codec.

This module is the one place that knows the classes; it imports nothing of the
project. Counts are the Kaggle training set's (SPEC.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Nucleoplasm",
    "Nuclear membrane",
    "Nucleoli",
    "Nucleoli fibrillar center",
    "Nuclear speckles",
    "Nuclear bodies",
    "Endoplasmic reticulum",
    "Golgi apparatus",
    "Peroxisomes",
    "Endosomes",
    "Lysosomes",
    "Intermediate filaments",
    "Actin filaments",
    "Focal adhesion sites",
    "Microtubules",
    "Microtubule ends",
    "Cytokinetic bridge",
    "Mitotic spindle",
    "Microtubule organizing center",
    "Centrosome",
    "Lipid droplets",
    "Plasma membrane",
    "Cell junctions",
    "Mitochondria",
    "Aggresome",
    "Cytosol",
    "Cytoplasmic bodies",
    "Rods & rings",
)
NUM_CLASSES = len(CLASS_NAMES)

#: Images per class in Kaggle's train.csv (31,072 Ids); the same as the per-class counts of the shipped
#: label-set file (:func:`hpa_utils.data.label_sets.class_counts`; tests/test_synth.py checks it).
TRAIN_COUNTS: tuple[int, ...] = (
    12885,
    1254,
    3621,
    1561,
    1858,
    2513,
    1008,
    2822,
    53,
    45,
    28,
    1093,
    688,
    537,
    1066,
    21,
    530,
    210,
    902,
    1482,
    172,
    3777,
    802,
    2965,
    322,
    8228,
    328,
    11,
)
#: Number of training Ids with 1, 2, 3, 4 and 5 labels (also the label-set file's).
LABELS_PER_IMAGE_COUNTS: dict[int, int] = {1: 15126, 2: 12485, 3: 3160, 4: 299, 5: 2}
N_TRAIN_KAGGLE = 31072
N_TEST_KAGGLE = 11702

#: Channel file suffixes, in the order they are stacked (R, G, B, Y).
CHANNELS: tuple[str, ...] = ("red", "green", "blue", "yellow")


def class_name(class_id: int) -> str:
    """Return the name of class ``class_id`` (0..27)."""
    if not 0 <= int(class_id) < NUM_CLASSES:
        raise ValueError(f"class id {class_id} is outside 0..{NUM_CLASSES - 1}")
    return CLASS_NAMES[int(class_id)]


def parse_target(target: object) -> list[int]:
    """Parse a Kaggle Target string such as ``"16 0"`` into sorted unique class ids.

    Raises:
        ValueError: the string is empty, or a token is not an integer in 0..27.
            The message says which token.
    """
    if target is None or (isinstance(target, float) and np.isnan(target)):
        raise ValueError("Target is empty: at least one class id in 0..27 is required")
    tokens = str(target).split()
    if not tokens:
        raise ValueError("Target is empty: at least one class id in 0..27 is required")
    ids = []
    for token in tokens:
        if not (token.isascii() and token.isdigit()):
            raise ValueError(f"Target token {token!r} is not an integer class id in 0..27")
        value = int(token)
        if not 0 <= value < NUM_CLASSES:
            raise ValueError(f"Target token {token!r} is outside the class ids 0..27")
        ids.append(value)
    return sorted(set(ids))


def target_to_multihot(target: str | Iterable[int]) -> np.ndarray:
    """Target string (or iterable of ids) -> (28,) uint8 multi-hot vector."""
    ids = parse_target(target) if isinstance(target, str) else list(target)
    vec = np.zeros(NUM_CLASSES, dtype=np.uint8)
    vec[ids] = 1
    return vec


def targets_to_multihot(targets: Sequence[str]) -> np.ndarray:
    """Many Target strings -> (N, 28) uint8 multi-hot matrix."""
    out = np.zeros((len(targets), NUM_CLASSES), dtype=np.uint8)
    for i, target in enumerate(targets):
        out[i, parse_target(target)] = 1
    return out


def multihot_to_target(vector: Sequence[int] | np.ndarray) -> str:
    """(28,) multi-hot (or boolean) vector -> Target string, ids ascending ("0 16")."""
    vector = np.asarray(vector)
    if vector.shape != (NUM_CLASSES,):
        raise ValueError(f"expected a vector of {NUM_CLASSES} entries, got shape {vector.shape}")
    return " ".join(str(i) for i in np.flatnonzero(vector))
