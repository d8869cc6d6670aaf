"""The settings of one training job, plain data: what :mod:`hpa_utils.training.fit` trains with, what the
batches (:mod:`hpa_utils.training.batches`) read and what a model's summary records. No Keras import."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hpa_utils.config.techniques import SWITCHES_OFF, TechniqueSwitches


@dataclass(frozen=True)
class TrainSettings(TechniqueSwitches):
    """Hyper-parameters of one training job (everything that changes its result). The switches of the
    techniques beyond the report (``loss``, ``ema``, ``oversample`` and their parameters, keyword-only) are
    :class:`~hpa_utils.config.techniques.TechniqueSwitches`', declared there once."""

    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    augment: bool = True
    prior_bias: bool = True
    seed: int = 0
    part: str = "all"

    def record(self) -> dict:
        """The settings as a model's summary records them: the techniques' keys only where they are on."""
        values = asdict(self)
        record = {key: values[key] for key in values if key not in SWITCHES_OFF}  # its own keys first
        record.update({key: values[key] for key in SWITCHES_OFF})
        if self.loss == "bce":
            record.pop("focal_gamma")
        if not self.ema:
            record.pop("ema_momentum")
        if not self.oversample:
            record.pop("oversample_threshold")
        for key in ("loss", "ema", "oversample"):
            if record[key] == SWITCHES_OFF[key]:
                record.pop(key)
        return record
