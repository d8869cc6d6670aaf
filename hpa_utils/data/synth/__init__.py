"""HPA-like synthetic dataset: the project's embedded default dataset.

:func:`generate_dataset` writes a directory in the exact Kaggle layout
(``train.csv``, ``train/{Id}_{red,green,blue,yellow}.png``, ``test/...``,
``sample_submission.csv``) plus ``solution.csv`` (the test labels with a
Public/Private ``Usage`` column) and ``synth.json`` (the parameters).

Each field holds several cells: an elliptical, textured nucleus (blue), radial
microtubule filaments (red) and a reticular ER network (yellow) in the
cytoplasm, a dark background and camera noise. The green channel carries the
labels: every class has a painter (:data:`PAINTERS`) that draws its
localisation pattern from the field's geometry; a multi-label image adds its
classes' patterns with random weights. The green intensity is normalised to a
random level per image, so that mean green intensity alone says little about
the class.

Labels follow the real statistics (SPEC.md): each image's label set is one of the
577 label sets of Kaggle's training set, drawn by their counts
(:mod:`hpa_utils.data.label_sets`, :func:`sample_labels`), so the classes occur
together as in the real data. ``test_prior_shift`` tilts the test labels' prior
toward the rare sets.

Modules: :mod:`.geometry` (cells, label maps, textures, drawing helpers),
:mod:`.patterns` (the class painters), :mod:`.render` (one sample's
channels) and :mod:`.writer` (the dataset on disk).

Every image has its own random generator, derived from ``(seed, split, index)``,
so a dataset is byte-for-byte reproducible whatever the number of workers.
"""

from __future__ import annotations

from hpa_utils.data.synth.geometry import Cell, Field, make_field
from hpa_utils.data.synth.patterns import PAINTERS, Painter
from hpa_utils.data.synth.render import render_channels, render_image
from hpa_utils.data.synth.writer import GENERATOR_VERSION, MANIFEST, generate_dataset, make_ids, sample_labels

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST",
    "PAINTERS",
    "Cell",
    "Field",
    "Painter",
    "generate_dataset",
    "make_field",
    "make_ids",
    "render_channels",
    "render_image",
    "sample_labels",
]
