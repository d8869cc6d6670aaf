"""The original report's own numbers (SPEC.md, "What the report did") and the competition's anchors.

The only literals the report prints that a run did not compute: cited, and labelled as the original's.
The findings study (:mod:`hpa_utils.studies.findings`) re-tests the claims they belong to.
"""

from __future__ import annotations

#: Cited facts of the original report (SPEC.md, "What the report did"): shown labelled as the original's.
ORIGINAL_REPORT = {
    "base_models": 8,
    "base_epochs": 40,
    "base_val_f1": (0.30, 0.35),
    "finetuned_models": 24,
    "stage_epochs": {"A": 10, "B": 4, "C": 2},
    "finetuned_val_f1": (0.42, 0.47),
    "ensemble_members": "models 0, 1, 2, 3, 4 and 6",
    "n_members": 6,
    "shift": 0.34,
    "public": 0.448,
    "private": 0.423,
    "shift_pair": (0.34, 0.36),
    "shift_pair_public_diff": 0.02,
    "all_models": 32,
    "all_equal_public": 0.428,
    "all_equal_private": 0.428,
    "params": 597388,
    "trainable": 595268,
    "non_trainable": 2120,
}

#: Cited scores of other entries (SPEC.md, "how far others got"), for context in the Discussion.
CONTEXT_SCORES = {"haltuf_cnn": 0.328, "haltuf_gapnet": 0.385, "first_place": 0.565}
