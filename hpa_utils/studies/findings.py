"""The original report's findings, re-tested on this run: each with the numbers behind it, a 95% interval
and a verdict that the numbers decide (never typed).

Called by the ensemble study (notebook 04), which holds every model's validation probabilities and the
test sets' (``results/findings.json``, read by the report's "Findings, re-tested" section). Intervals are
bootstrap intervals over images (:mod:`hpa_utils.evaluation.bootstrap`), paired where two predictors are
compared; the one claim about training curves has only one number per model, so its interval is over
the base models. A run that trains every model with several training seeds measures each comparison once
per seed (each seed's models, each seed's ensemble) and its interval is two-level, seeds then images; with
one seed it covers the images alone, and ``interval_over`` says which. Verdicts:

- ``reproduced``: the interval lies on the side the original's claim says (and, for the shift's 0.02,
  includes a move of that size);
- ``not reproduced``: it does not (the ``why`` says whether it includes zero or points the other way);
- ``not testable``: this run lacks what the test needs (the ``why`` says what).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from hpa_utils.config.stages import CONTROL, STAGE_ORDER
from hpa_utils.evaluation.bootstrap import (
    Interval,
    mean_interval,
    paired_f1_difference,
    paired_mean_difference,
)
from hpa_utils.evaluation.ensemble import weighted_mean, weights_from_f1
from hpa_utils.evaluation.metrics import binarize, per_image_log_loss

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable"
#: The model-level threshold: the models' validation F1 during training, as the original reported it.
MODEL_THRESHOLD = 0.5
#: Overfitting shows over a stage's epochs: at least this many in stage B or C to test it.
MIN_STAGE_EPOCHS = 2
#: Epochs at the end of a base model's history whose validation F1 slope says whether it was still improving.
SLOPE_EPOCHS = 3


@dataclass
class Finding:
    """One claim of the original and what this run says about it."""

    key: str
    claim: str
    original: str
    test: str
    verdict: str
    why: str
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    interval_over: str = ""
    numbers: dict = field(default_factory=dict)
    #: the numbers that decide the verdict when there are several (what, estimate, low, high), first the one
    #: ``estimate`` holds; empty when ``estimate`` alone decides
    deciding: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _numbers(interval: Interval) -> dict:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high, "seeds": interval.n_seeds}


def _with(interval: Interval, over: str) -> dict:
    if interval.n_seeds > 1:
        over = f"{interval.n_seeds} training seeds, then {over}"
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high, "interval_over": over}


@dataclass(frozen=True)
class Replicate:
    """One training seed's ensemble study: what the ensemble findings compare, once per seed.

    Attributes:
        seed: the training seed of its models.
        weights: the chosen ensemble's weights (model -> weight); ``threshold`` its threshold.
        member_thresholds: each single model's own threshold (by the comparison's rule).
        member_val_f1: each model's validation F1 at the training threshold (the weights' F1).
        chosen_f1: validation F1 of the models the ensemble chose from (the sweep's members).
        sweep: the shift sweep of this seed's ensemble.
        equal: the equal-weight ensemble of all this seed's models: (weights, threshold).
    """

    seed: int
    weights: Mapping[str, float]
    threshold: float
    member_thresholds: Mapping[str, float]
    member_val_f1: Mapping[str, float]
    chosen_f1: pd.Series
    sweep: pd.DataFrame
    equal: tuple[Mapping[str, float], float]
    shift: float | None = None  # the chosen ensemble's shift
    #: each single model's validation F1 at its own threshold (the comparison's val_f1): the rule that picks the
    #: best single model, and the ensemble's best member
    fitted_val_f1: Mapping[str, float] = field(default_factory=dict)


def _side(interval: Interval, expected_sign: int, what: str) -> tuple[bool, str]:
    """Whether ``interval`` lies on the expected side of 0, and a sentence saying where it lies."""
    span = f"{interval.estimate:+.3f} (95% interval {interval.low:+.3f} to {interval.high:+.3f})"
    if (expected_sign > 0 and interval.low > 0) or (expected_sign < 0 and interval.high < 0):
        return True, f"{what} {span}: the interval excludes 0"
    if interval.excludes_zero():
        return False, f"{what} {span}: the interval excludes 0 on the other side"
    return False, f"{what} {span}: the interval includes 0, so this run cannot tell"


def _verdict(ok: bool) -> str:
    return REPRODUCED if ok else NOT_REPRODUCED


def still_improving(
    histories: Mapping[str, pd.DataFrame], original_epochs: int, seeds: Mapping[str, int] | None = None
) -> Finding:
    """Base models still improving when training stopped: the slope of each base model's validation macro F1
    over its last :data:`SLOPE_EPOCHS` epochs (least squares, F1 per epoch), averaged over the base models
    (``seeds``: each model's training seed, for an interval over seeds, then models)."""
    claim = "The base models were still improving when training stopped."
    original = f"validation F1 ended around 0.30-0.35 after {original_epochs} epochs, some curves still rising"
    gains, spans, groups = [], [], []
    for name, frame in histories.items():
        f1 = frame["val_macro_f1"].to_numpy(dtype=np.float64)
        if len(f1) < 2:
            continue
        last = f1[-SLOPE_EPOCHS:]
        gains.append(float(np.polyfit(np.arange(len(last)), last, 1)[0]))
        spans.append(len(last))
        groups.append((seeds or {}).get(name, 0))
    epochs = max((len(f) for f in histories.values()), default=0)
    test = (
        f"slope of each base model's validation macro F1 (threshold {MODEL_THRESHOLD}; least squares, F1 per epoch) "
        f"over its last {max(spans) if spans else 1} of {epochs} epochs, averaged over the base models"
    )
    if len(gains) < 2:
        return Finding(
            "still_improving", claim, original, test, NOT_TESTABLE, "fewer than two base models with two epochs"
        )
    interval = mean_interval(np.array(gains), groups=groups)
    ok, why = _side(interval, +1, "mean slope")
    rising = int(sum(g > 0 for g in gains))
    why += (
        f"; {rising} of {len(gains)} base models were rising. This run stopped at epoch {epochs}, not "
        f"{original_epochs}: a model still rising at epoch {epochs} says little about epoch {original_epochs}."
    )
    return Finding(
        "still_improving", claim, original, test, _verdict(ok), why,
        numbers={"rising": rising, "models": len(gains), "epochs": epochs}, **_with(interval, "base models"),
    )  # fmt: skip


def _final_by_variant(models: pd.DataFrame, stage: str) -> dict:
    """(training seed, variant) -> the model of ``stage``."""
    rows = models[models["stage"].astype(str) == stage]
    seeds = rows["seed"] if "seed" in rows.columns else [0] * len(rows)
    return {(int(s), v): m for s, v, m in zip(seeds, rows["variant"], rows["model"])}


def fine_tuning_raises(models: pd.DataFrame, p_val: Mapping[str, np.ndarray], y_val: np.ndarray) -> Finding:
    """Each base model's last fine-tuned stage against the base model (the original's comparison, which mixes
    the staged freezing with a lower learning rate and extra epochs) and against its control
    (:data:`~hpa_utils.config.stages.CONTROL`: the same extra epochs at the same rate, nothing frozen), paired
    over validation images. Reproduced when both gains are positive: fine-tuning raises F1, and by more than
    training as long at the lowered rate. Without controls, the verdict is the gain over the base model, and
    the ``why`` says it is not attributed."""
    claim = "Fine-tuning raises validation F1."
    original = "base models about 0.30-0.35; the fine-tuned models about 0.42-0.47"
    base = _final_by_variant(models, "base")
    last_stage = _last_stage(models)
    tuned = _final_by_variant(models, last_stage) if last_stage else {}
    control = _final_by_variant(models, CONTROL.name)
    keys = [k for k in base if k in tuned and tuned[k] in p_val and base[k] in p_val]
    controlled = [k for k in keys if k in control and control[k] in p_val]
    test = (
        f"validation macro F1 (threshold {MODEL_THRESHOLD}) of each base model's stage-{last_stage} model minus "
        "its control's (from the base model, nothing frozen, the stages' epochs together at their learning "
        "rate), averaged over the base models with a control; and minus the base model's"
    )
    if not keys:
        return Finding("fine_tuning", claim, original, test, NOT_TESTABLE, "no base model has a fine-tuned stage here")

    def gain(reference: Mapping, over: list) -> Interval:
        return paired_f1_difference(
            y_val,
            [binarize(p_val[tuned[k]], MODEL_THRESHOLD) for k in over],
            [binarize(p_val[reference[k]], MODEL_THRESHOLD) for k in over],
            groups=[k[0] for k in over],
        )

    over_base = gain(base, keys)
    base_ok, base_why = _side(over_base, +1, "gain over the base model")
    numbers = {"pairs": len(keys), "stage": last_stage, "controls": len(controlled), "over_base": over_base.as_dict()}
    if not controlled:
        why = (
            f"{base_why}; no control was trained (train.stages.control), so the gain is not attributed: "
            "fine-tuning also lowers the learning rate and adds epochs"
        )
        return Finding(
            "fine_tuning", claim, original, test, _verdict(base_ok), why,
            numbers=numbers, **_with(over_base, "validation images, paired"),
        )  # fmt: skip
    over_control = gain(control, controlled)
    control_ok, control_why = _side(over_control, +1, "gain over the control")
    if base_ok and not control_ok:
        why = (
            f"{control_why}; the {base_why}, which training as long at the lowered rate without freezing gives as well"
        )
    elif base_ok:
        why = f"{control_why}; {base_why}"
    else:  # no gain over the base model: there is nothing to attribute
        why = f"{base_why}; {control_why}"
    return Finding(
        "fine_tuning", claim, original, test, _verdict(base_ok and control_ok), why,
        numbers={**numbers, "over_control": over_control.as_dict()},
        deciding=[
            {"what": f"stage {last_stage} minus control", **_numbers(over_control)},
            {"what": f"stage {last_stage} minus base model", **_numbers(over_base)},
        ],
        **_with(over_control, "validation images, paired"),
    )  # fmt: skip


def _last_stage(models: pd.DataFrame) -> str | None:
    stages = [s for s in STAGE_ORDER if s != "base" and (models["stage"].astype(str) == s).any()]
    return stages[-1] if stages else None


def later_stages_overfit(
    models: pd.DataFrame, histories: Mapping[str, pd.DataFrame], p_val: Mapping[str, np.ndarray], y_val: np.ndarray
) -> Finding:
    """Stage C against stage A: validation loss up (overfitting) while validation F1 still up."""
    claim = "Later fine-tuning stages overfit slightly while validation F1 still rose."
    original = "stages B and C (the dense head) overfit slightly, and validation F1 still rose"
    a, c = _final_by_variant(models, "A"), _final_by_variant(models, "C")
    keys = [k for k in a if k in c and c[k] in p_val and a[k] in p_val]
    pairs, groups = [(c[k], a[k]) for k in keys], [k[0] for k in keys]
    test = (
        "the stage-C model against the stage-A model it continues (through B), per base model: change in "
        f"validation loss (overfitting: up) and in validation macro F1 (threshold {MODEL_THRESHOLD}: up), "
        "each averaged over the base models; the training loss from the models' histories"
    )
    if not pairs:
        return Finding("later_stages_overfit", claim, original, test, NOT_TESTABLE, "no base model has stages A and C")
    head_epochs = {
        stage: int(models.loc[models["stage"].astype(str) == stage, "epochs"].max())
        for stage in ("B", "C")
        if "epochs" in models.columns and (models["stage"].astype(str) == stage).any()
    }
    if head_epochs and max(head_epochs.values()) < MIN_STAGE_EPOCHS:
        shown = ", ".join(f"{stage} {n}" for stage, n in head_epochs.items())
        return Finding(
            "later_stages_overfit", claim, original, test, NOT_TESTABLE,
            f"stages B and C train {shown} epoch(s): overfitting shows over a stage's epochs (validation loss rising "
            f"while training loss falls), which needs at least {MIN_STAGE_EPOCHS} epochs in one of them "
            "(train.stages.epochs; the original trained B 4 and C 2)",
            numbers={"stage_epochs": head_epochs},
        )  # fmt: skip
    loss = paired_mean_difference(
        [per_image_log_loss(y_val, p_val[x]) for x, _ in pairs],
        [per_image_log_loss(y_val, p_val[y]) for _, y in pairs],
        groups=groups,
    )
    f1 = paired_f1_difference(
        y_val,
        [binarize(p_val[x], MODEL_THRESHOLD) for x, _ in pairs],
        [binarize(p_val[y], MODEL_THRESHOLD) for _, y in pairs],
        groups=groups,
    )
    train_change = [
        float(histories[x]["loss"].iloc[-1] - histories[y]["loss"].iloc[-1])
        for x, y in pairs
        if x in histories and y in histories
    ]
    loss_ok, loss_why = _side(loss, +1, "validation loss change")
    f1_ok, f1_why = _side(f1, +1, "validation macro F1 change")
    falling = int(sum(t < 0 for t in train_change))
    why = f"{loss_why}; {f1_why}; training loss fell in {falling} of {len(train_change)} base models."
    return Finding(
        "later_stages_overfit", claim, original, test, _verdict(loss_ok and f1_ok), why,
        numbers={
            "pairs": len(pairs),
            "val_loss_change": loss.as_dict(),
            "val_f1_change": f1.as_dict(),
            "train_loss_fell": falling,
        },
        deciding=[
            {"what": "validation loss change (overfitting: up)", **_numbers(loss)},
            {"what": "validation macro F1 change (up)", **_numbers(f1)},
        ],
        **_with(f1, "validation images, paired"),
    )  # fmt: skip


def _scored_set(sets: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray]):
    """The held-out images to score ensembles on: the labelled test images (public and private), else
    validation (on which the weights and thresholds were fitted, so optimistic)."""
    parts = [name for name in ("public", "private") if name in sets]
    if not parts:
        return "validation (where the weights and threshold were fitted: optimistic)", sets["val"], labels["val"]
    models = sets[parts[0]].keys()
    probs = {m: np.concatenate([sets[part][m] for part in parts]) for m in models}
    return "the labelled test images (public and private)", probs, np.concatenate([labels[p] for p in parts])


def ensemble_beats_members(
    sets: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray], replicates: list[Replicate]
) -> Finding:
    """The chosen weighted ensemble against its best member, paired over images; once per training seed (each
    seed's ensemble against its own best member). The best member is chosen as the best single model is
    everywhere: by validation F1 at its own fitted threshold (the comparison's ``val_f1``,
    ``Replicate.fitted_val_f1``; a replicate without it falls back to the weights' F1 at the training threshold)."""
    claim = "The F1-weighted ensemble beats its members."
    original = "public 0.448 and private 0.423 for the ensemble of models 0, 1, 2, 3, 4 and 6 (members not scored)"
    where, probs, y = _scored_set(sets, labels)
    test = (
        f"macro F1 of the chosen ensemble minus that of its best member (by validation F1 at its own threshold, as "
        f"the best single model is chosen), on {where}; each at its own best global threshold on validation"
    )
    ours, best_members, groups, sizes = [], [], [], []
    for rep in replicates:
        members = [m for m, w in rep.weights.items() if w > 0]
        if len(members) < 2:
            continue
        scores = rep.fitted_val_f1 if all(m in rep.fitted_val_f1 for m in members) else rep.member_val_f1
        best = max(members, key=lambda m: scores[m])
        mean = weighted_mean({m: probs[m] for m in members}, {m: rep.weights[m] for m in members})
        ours.append(binarize(mean, rep.threshold))
        best_members.append((best, binarize(probs[best], rep.member_thresholds[best])))
        groups.append(rep.seed)
        sizes.append(len(members))
    if not ours:
        return Finding("ensemble_beats_members", claim, original, test, NOT_TESTABLE, "the ensemble has one member")
    interval = paired_f1_difference(y, ours, [b for _, b in best_members], groups=groups)
    names = sorted({name for name, _ in best_members})
    ok, why = _side(interval, +1, f"gain over {' / '.join(names)}")
    return Finding(
        "ensemble_beats_members", claim, original, test, _verdict(ok), why,
        numbers={"members": max(sizes), "best_member": best_members[0][0], "scored_on": where, "seeds": len(groups)},
        **_with(interval, "images, paired"),
    )  # fmt: skip


def _shift_rows(sweep: pd.DataFrame, pair) -> dict | None:
    rows = {}
    for shift in pair:
        hit = sweep[(sweep["shift"] - shift).abs() < 1e-9]
        if hit.empty or hit.iloc[0]["n_models"] == 0:
            return None
        rows[shift] = hit.iloc[0]
    return rows


def _at_shift(sets, part: str, rep: Replicate, shift: float, row) -> np.ndarray:
    """The replicate's ensemble at ``shift`` (its members' weights F1 - shift), thresholded as its sweep row says."""
    weights = weights_from_f1(rep.chosen_f1, shift)
    used = weights[weights > 0]
    return binarize(weighted_mean({m: sets[part][m] for m in used.index}, used), float(row["threshold"]))


def shift_moves_public(
    sets: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    replicates: list[Replicate],
    pair: tuple[float, float],
    moved: float,
) -> Finding:
    """The original's shift step (0.34 to 0.36: 0.02) taken around this run's chosen shift, up and down: the
    change of the public (and the private) score, paired over the images; once per training seed. The deciding
    number is the public change for the step up, the original's direction; the others are shown beside it."""
    low_shift, high_shift = pair
    step = round(high_shift - low_shift, 6)
    claim = f"A shift of {high_shift:g} instead of {low_shift:g} moves the public score by about {moved:g}."
    original = f"shift {low_shift:g} vs {high_shift:g} moved the public score by {moved:g}"
    test = (
        f"public macro F1 of the ensemble at the chosen shift + {step:g} minus that at the chosen shift (same members, "
        f"each at its own best global threshold on validation); also - {step:g}, and both on the private images"
    )
    if "public" not in sets:
        return Finding("shift_moves_public", claim, original, test, NOT_TESTABLE, "this run has no public test labels")
    parts = [part for part in ("public", "private") if part in sets]
    moves: dict[tuple[int, str], tuple[list, list, list]] = {}  # (direction, part) -> (moved, at centre, seeds)
    centres = []
    for rep in replicates:
        if rep.shift is None:
            continue
        centre = round(float(rep.shift), 2)
        for direction in (+1, -1):
            other = round(centre + direction * step, 2)
            rows = _shift_rows(rep.sweep, (centre, other)) if other >= 0 else None
            if rows is None:
                continue
            for part in parts:
                entry = moves.setdefault((direction, part), ([], [], []))
                entry[0].append(_at_shift(sets, part, rep, other, rows[other]))
                entry[1].append(_at_shift(sets, part, rep, centre, rows[centre]))
                entry[2].append(rep.seed)
        centres.append(centre)
    if (+1, "public") not in moves:
        best = max((float(rep.chosen_f1.max()) for rep in replicates), default=float("nan"))
        return Finding(
            "shift_moves_public", claim, original, test, NOT_TESTABLE,
            f"no ensemble is left at the chosen shift + {step:g}: weight = F1 - shift leaves no member above "
            f"(best model's validation F1 {best:.3f} at threshold {MODEL_THRESHOLD})",
        )  # fmt: skip
    intervals = {
        key: paired_f1_difference(labels[key[1]], moved_, centre_, groups=seeds)
        for key, (moved_, centre_, seeds) in moves.items()
    }
    interval = intervals[+1, "public"]
    size_ok = interval.excludes_zero() and min(abs(interval.low), abs(interval.high)) <= moved <= max(
        abs(interval.low), abs(interval.high)
    )
    span = f"{interval.estimate:+.3f} (95% interval {interval.low:+.3f} to {interval.high:+.3f})"
    if len(set(centres)) == 1:
        where = f"from the chosen shift {centres[0]:.2f} to {centres[0] + step:.2f}"
    else:  # one chosen shift per training seed
        where = f"from each seed's chosen shift ({', '.join(f'{c:.2f}' for c in centres)}) to {step:g} above it"
    if not interval.excludes_zero():
        why = f"public change {span} {where}: the interval includes 0, so such a step does not measurably move it"
    elif size_ok:
        why = f"public change {span} {where}: it moves the score, by an amount that includes {moved:g}"
    else:
        why = f"public change {span} {where}: it moves the score, but the interval excludes a move of {moved:g}"
    names = {+1: f"+{step:g}", -1: f"-{step:g}"}
    deciding = [
        {"what": f"{part}, shift {names[direction]}", **_numbers(iv)}
        for (direction, part), iv in sorted(intervals.items(), key=lambda kv: (-kv[0][0], kv[0][1] != "public"))
    ]
    return Finding(
        "shift_moves_public", claim, original, test, _verdict(size_ok), why,
        numbers={"chosen_shift": centres[0], "step": step, "seeds": interval.n_seeds},
        deciding=deciding,
        **_with(interval, "public images, paired"),
    )  # fmt: skip


def equal_weights_public_private(
    sets: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray], replicates: list[Replicate]
) -> Finding:
    """All models with equal weights against the chosen weighted ensemble, on public and on private; once per
    training seed (each seed's models)."""
    n_models = max((len(rep.equal[0]) for rep in replicates), default=0)
    claim = "Equal weights over all models score lower on public but higher on private than the weighted ensemble."
    original = "all 32 models, equal weights: public 0.428 (vs 0.448), private 0.428 (vs 0.423)"
    test = (
        f"macro F1 of the equal-weight ensemble of all {n_models} models minus that of the chosen ensemble, on the "
        "public and on the private images, each ensemble at its own best global threshold on validation"
    )
    if "public" not in sets or "private" not in sets or not replicates:
        return Finding("equal_weights", claim, original, test, NOT_TESTABLE, "this run has no public/private labels")

    def predict(part, weights, threshold):
        used = {m: w for m, w in weights.items() if w > 0}
        return binarize(weighted_mean({m: sets[part][m] for m in used}, used), threshold)

    groups = [rep.seed for rep in replicates]
    changes = {
        part: paired_f1_difference(
            labels[part],
            [predict(part, *rep.equal) for rep in replicates],
            [predict(part, rep.weights, rep.threshold) for rep in replicates],
            groups=groups,
        )
        for part in ("public", "private")
    }
    public_ok, public_why = _side(changes["public"], -1, "public change")
    private_ok, private_why = _side(changes["private"], +1, "private change")
    return Finding(
        "equal_weights", claim, original, test, _verdict(public_ok and private_ok), f"{public_why}; {private_why}.",
        numbers={**{part: interval.as_dict() for part, interval in changes.items()}, "seeds": len(groups)},
        deciding=[{"what": part, **_numbers(changes[part])} for part in ("private", "public")],
        **_with(changes["private"], "private images, paired"),
    )  # fmt: skip
