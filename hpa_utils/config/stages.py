"""The fine-tuning stages after a base model, as the report ran them: the one table of stages.

Every other module (training, the studies, the plots, the report, the configuration) reads the
stages, their order, the part each re-trains and their labels from here. Plain data: importing this
module imports no deep-learning library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One fine-tuning stage.

    Attributes:
        name: the stage's letter ("A", "B", "C"), also the suffix of its models' names.
        part: the part of the model it re-trains ("cnn" or "dnn"), the rest frozen.
        parent: the stage whose model it starts from ("base" for the base model).
        label: how figures and the report name it.
    """

    name: str
    part: str
    parent: str
    label: str


BASE = "base"
BASE_LABEL = "base model"

#: SPEC.md, step 4: stage A re-trains the CNN part, B then the dense head, C the dense head again.
STAGES: tuple[Stage, ...] = (
    Stage("A", "cnn", BASE, "A: CNN part re-trained"),
    Stage("B", "dnn", "A", "B: dense head re-trained"),
    Stage("C", "dnn", "B", "C: dense head, more epochs"),
)

#: Finding 2's control, beside the stages: from the base model, the whole network trained (nothing frozen) for as
#: many epochs as the stages together, at their learning rate. Fine-tuning lowers the rate and adds epochs; the
#: control does both without the staged freezing, so fine-tuning's gain over it is the stages' own.
CONTROL = Stage("ctl", "all", BASE, "control: nothing frozen, the stages' epochs and rate")

#: Every model kind in report order: the base model, then the stages.
STAGE_ORDER: tuple[str, ...] = (BASE, *(stage.name for stage in STAGES))

#: Label of every model kind, in report order (the control last).
STAGE_LABELS: dict[str, str] = {
    BASE: BASE_LABEL,
    **{stage.name: stage.label for stage in STAGES},
    CONTROL.name: CONTROL.label,
}


def get_stage(name: str) -> Stage:
    """The stage called ``name`` (one of :data:`STAGES`, or the :data:`CONTROL`).

    Raises:
        ValueError: no such stage (the message lists the stages).
    """
    for stage in (*STAGES, CONTROL):
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; the stages are {', '.join(s.name for s in STAGES)}")


def stage_rank(name: str) -> int:
    """Position of a model kind in report order (unknown kinds last)."""
    return STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER)
