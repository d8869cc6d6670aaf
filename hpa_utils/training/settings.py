"""The settings of one training job, plain data: what :mod:`hpa_utils.training.fit` trains with, what the
batches (:mod:`hpa_utils.training.batches`) read and what a model's summary records. No Keras import."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training job (everything that changes its result)."""

    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    augment: bool = True
    prior_bias: bool = True
    seed: int = 0
    part: str = "all"
    # The techniques beyond the report (issue 12), off by default. Recorded in a model's summary only
    # when on (:meth:`record`), so a model trained before they existed is still recognised as finished.
    loss: str = "bce"  # bce | focal (training.losses)
    focal_gamma: float = 2.0
    ema: bool = False  # train with the optimizer's moving average of the weights (use_ema), keep the average
    ema_momentum: float = 0.99
    oversample: bool = False  # repeat-factor sampling of images with rare classes (training.batches)
    oversample_threshold: float = 0.1

    def record(self) -> dict:
        """The settings as a model's summary records them: the techniques' keys only where they are on."""
        record = asdict(self)
        if self.loss == "bce":
            record.pop("focal_gamma")
        if not self.ema:
            record.pop("ema_momentum")
        if not self.oversample:
            record.pop("oversample_threshold")
        for key in ("loss", "ema", "oversample"):
            if record[key] == TrainSettings.__dataclass_fields__[key].default:
                record.pop(key)
        return record
