"""The techniques beyond the original report, declared once: their training switches (typed, with their
defaults and what they do) and the rows of notebook 05's ablation that turn them on.

:class:`TechniqueSwitches` is inherited by the run's ``train`` section
(:class:`~hpa_utils.config.run_config.TrainConfig`, the preset keys ``train.loss``, ``train.ema``...) and by one
training job's :class:`~hpa_utils.training.settings.TrainSettings`, so a switch is declared here and nowhere
else; :data:`TECHNIQUES` is what ``beyond.techniques`` may list. A new technique: its switch (if it trains
differently) and its row here, and the code that does it in ``hpa_utils/training`` (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from hpa_utils.config.schema import setting


@dataclass(frozen=True, kw_only=True)
class TechniqueSwitches:
    """The training techniques beyond the report; each off by default (the report's training)."""

    loss: Literal["bce", "focal"] = setting(
        "bce", "bce: the report's binary cross-entropy; focal: Keras' BinaryFocalCrossentropy (3rd place)"
    )
    focal_gamma: float = setting(2.0, "focal: the weight (1 - p_t)^gamma of each element (3rd place: 2)")
    ema: bool = setting(False, "true: Adam keeps the moving average of the weights (use_ema); the models are it")
    ema_momentum: float = setting(0.99, "ema: the average's momentum (about the last 1/(1 - m) = 100 steps)")
    oversample: bool = setting(False, "true: images with rare classes repeated in every epoch (repeat-factor)")
    oversample_threshold: float = setting(
        0.1, "oversample: classes in fewer than this share of images are repeated, by sqrt(t / share)"
    )


#: The switches' names (the ``train`` keys of the techniques, TrainSettings' names for them).
SWITCHES = tuple(item.name for item in fields(TechniqueSwitches))
#: Every switch off: the report's training.
SWITCHES_OFF = {item.name: item.default for item in fields(TechniqueSwitches)}


@dataclass(frozen=True)
class Technique:
    """One row of the ablation (notebook 05).

    Attributes:
        key: its name in ``beyond.techniques``.
        label: how tables and the report name it.
        train: the :class:`TechniqueSwitches` it turns on (training techniques).
        tta: test-time augmentation it predicts with ("none", "mean", "max").
        label_ratio: thresholds by label ratio instead of the best global threshold on validation.
        source: who in the competition used it.
    """

    key: str
    label: str
    train: dict = field(default_factory=dict)
    tta: str = "none"
    label_ratio: bool = False
    source: str = ""


TECHNIQUES: dict[str, Technique] = {
    t.key: t
    for t in (
        Technique("focal", "focal loss", {"loss": "focal"}, source="3rd place (gamma 2); 1st place with Lovász loss"),
        Technique(
            "ema",
            "weight averaging (EMA)",
            {"ema": True},
            source="3rd place averaged its last checkpoints' weights (SWA); here Keras' moving average",
        ),
        Technique("oversample", "rare classes oversampled", {"oversample": True}, source="several top-10 teams"),
        Technique("tta_mean", "8x TTA (mean)", tta="mean", source="3rd place: mean over 8 flips and turns"),
        Technique("tta_max", "8x TTA (max)", tta="max", source="1st place: max over its test-time views"),
        Technique(
            "label_ratio",
            "thresholds by label ratio",
            label_ratio=True,
            source="1st and 3rd place: each class predicted at its training rate",
        ),
    )
}
#: ``beyond.techniques``: what notebook 05 may ablate.
TECHNIQUE_NAMES = tuple(TECHNIQUES)
