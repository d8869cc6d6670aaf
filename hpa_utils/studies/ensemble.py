"""The ensemble study (notebook 04): every model's predictions, the F1-weighted ensemble with its
shift and threshold, the greedy ensemble, the report's comparisons, the threshold study, the submission and
the leaderboard.

The weighted ensemble follows the report's rule (weight = validation F1 at the training threshold minus a
shift) over members that are different networks: at most one per base variant, its best stage. The greedy
ensemble is Caruana et al.'s forward selection over every model. The submission is what validation chooses
among the best single model, the weighted ensemble, the greedy ensemble and equal weights over all models,
each at its own best global threshold on validation (the comparison's rule).

Every choice (members, shift, threshold, the submitted predictor) is made on validation only; test labels
(the synthetic dataset's ``solution.csv``, split into Kaggle's public and private parts) are only used to
score.
:func:`run_ensemble_study` writes the tables under ``results/`` and ``results/ensemble.json``, and
returns an :class:`EnsembleStudy`; :meth:`EnsembleSummary.from_dict` reads ``ensemble.json`` back for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_utils.config.run_config import RunConfig
from hpa_utils.config.stages import CONTROL
from hpa_utils.evaluation import ensemble, metrics, submission
from hpa_utils.evaluation.bootstrap import paired_f1_difference
from hpa_utils.evaluation.thresholds import halves, threshold_study
from hpa_utils.io import save_table, to_number, write_json_atomic
from hpa_utils.original import ORIGINAL_REPORT
from hpa_utils.studies import findings
from hpa_utils.studies.tables import CHOSEN, EQUAL_ALL, GREEDY, SINGLE
from hpa_utils.studies.training import run_models, training_data

ENSEMBLE_NAMES = {
    CHOSEN: "weighted (chosen)",
    GREEDY: "greedy forward selection",
    EQUAL_ALL: "equal weights (all models)",
}
#: The candidates for the submission, in order of preference on a tie (the simpler predictor first).
SUBMISSION_CANDIDATES = (SINGLE, CHOSEN, GREEDY, EQUAL_ALL)
#: The shifts the report compared (its public score moved by 0.02 between them), marked in the sweep figure.
REPORT_SHIFTS = (0.34, 0.36)
TRAINING_THRESHOLD = 0.5  # the models' F1 during training, and the weights' F1
#: An ensemble has at least this many members: the shift rule never silently leaves one model.
MIN_MEMBERS = 2
#: The original report's shift, reported beside the chosen one.
ORIGINAL_SHIFT = 0.34
#: How the weighted ensemble's members are chosen (``ensemble.json``'s ``member_rule``; ``k``: ensemble.top_k).
MEMBER_RULE = (
    "the best stage of each base variant by validation macro F1 (each model at its own threshold), then the {k} "
    "best of those"
)
#: Greedy forward selection: at most this many additions after the best single model.
GREEDY_STEPS = ensemble.GREEDY_STEPS


@dataclass
class EnsembleSummary:
    """The chosen ensemble (``results/ensemble.json``): what the report states about it."""

    selected: list[str]
    weights: dict[str, float]
    shift: float
    shift_setting: float | str
    threshold: float
    threshold_method: str
    val_f1: float | None
    public_f1: float | None
    private_f1: float | None
    held_out: str
    shift_note: str | None = None
    n_members: int | None = None
    original_shift: dict | None = None
    scoring_rule: str | None = None
    per_class_vs_global: dict | None = None
    seeds: list[int] | None = None  # the training seeds, each with its own ensemble; this one is the run's seed's
    #: how the members were chosen, as the report states it
    member_rule: str | None = None
    #: the sweep's row at the original's position on the members' F1 scale (``original_position_shift``)
    original_position: dict | None = None
    #: the greedy ensemble: weights, counts, steps, why it stopped, threshold and validation F1
    greedy: dict | None = None
    #: the predictor submitted (``submission.csv``), chosen on validation among the candidates: name, role,
    #: n_models, threshold, val/public/private F1, and the runner-up's name, role and validation F1
    submitted: dict | None = None
    #: the submitted predictor's validation F1 minus the runner-up's
    submitted_margin: float | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> EnsembleSummary:
        """From ``ensemble.json``'s mapping; a field it lacks is None."""
        return cls(**{name: raw.get(name) for name in cls.__dataclass_fields__})


@dataclass
class EnsembleStudy:
    """Notebook 04's result.

    Attributes:
        scored_on: labelled set ("val", "public", "private") -> number of images.
        models: per model: val_f1 (threshold 0.5), selected, weight.
        sweep: the shift sweep over the chosen models (``results/shift_sweep.csv``).
        comparison: every single model and the three ensembles on every labelled set, each at its own
            threshold (``results/ensemble_comparison.csv``; ``role``: single / chosen / greedy / equal_all;
            ``submitted``: the row written as ``submission.csv``).
        thresholds: the threshold study (``results/thresholds.csv``; ``key``: fixed / global / per_class).
        per_class_f1: the chosen ensemble's F1 per class on validation; ``train_counts`` the training images
            per class.
        leaderboard: every submission written, with its public/private score when the labels are known.
        summary: the chosen ensemble (``results/ensemble.json``).
        submission: the run's ``submission.csv``, or None without a test set.
    """

    scored_on: dict[str, int]
    models: pd.DataFrame
    sweep: pd.DataFrame
    comparison: pd.DataFrame
    thresholds: pd.DataFrame
    per_class_f1: np.ndarray
    train_counts: np.ndarray
    leaderboard: pd.DataFrame
    summary: EnsembleSummary
    submission: Path | None
    val_counts: np.ndarray | None = None
    members: pd.DataFrame | None = None
    findings: list | None = None

    @property
    def findings_table(self) -> pd.DataFrame:
        """The original's findings re-tested: claim, verdict, estimate and its 95% interval, why."""
        columns = ["claim", "verdict", "estimate", "low", "high", "interval_over", "why"]
        return pd.DataFrame([f.as_dict() for f in self.findings or []], columns=["key", *columns]).set_index("key")

    @property
    def findings_shown(self):
        """:attr:`findings_table` for a notebook: every claim and reason in full (a DataFrame's display cuts
        text at 50 characters), wrapped, numbers to three decimals."""
        return (
            self.findings_table.style.format(precision=3, na_rep="")
            .set_properties(**{"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"})
            .set_properties(subset=["claim", "why"], **{"min-width": "18em"})
        )

    @property
    def marked_shifts(self) -> tuple[float, ...]:
        """The shifts the sweep figure marks: the report's pair and the one chosen."""
        return (*REPORT_SHIFTS, self.summary.shift)


def run_ensemble_study(config: RunConfig, log: Callable[[str], None] = print) -> EnsembleStudy:
    """Notebook 04's study over the run's trained models (see the module docstring). With several training
    seeds, each seed's models make their own ensemble (a replicate of the whole study); the tables hold every
    seed's rows (``seed``), the summary, the submission and the leaderboard are the run's seed's, and the
    findings are measured over every seed."""
    # deferred: OpenCV (the dataset and its cache), Keras (the models)
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.training.predictions import predict_models
    from hpa_utils.training.registry import models_table

    paths = config.paths.make()
    settings = config.ensemble
    data = training_data(config)
    source = open_dataset(config.data_dir)
    table = run_models(models_table(paths.models), config)
    # Finding 2's control models are scored on validation only, and are no candidates of the ensemble
    is_control = table["stage"].astype(str) == CONTROL.name
    controls, table = table[is_control], table[~is_control].reset_index(drop=True)
    splits = {"val": (data.images, data.val_indices)}
    if source.test_ids:
        test_images = open_cache(source, "test", config.data.image_size, config.cache_dir, workers=config.workers)
        splits["test"] = (test_images, np.arange(len(test_images)))
    # ensemble.tta: every model's predictions pooled over the eight flips and quarter turns (mean or max)
    probs = predict_models(
        dict(zip(table["model"], table["path"])), splits, paths.predictions, log=log, tta=settings.tta
    )
    labelled = source.solution.is_file() and bool(source.test_ids)
    y_test, usage = submission.solution_labels(source.solution, source.test_ids) if labelled else (None, None)
    sets, labels = ensemble.evaluation_sets(probs, data.y[data.val_indices], y_test, usage)
    control_val = predict_models(
        dict(zip(controls["model"], controls["path"])), {"val": splits["val"]}, paths.predictions, log=log,
        tta=settings.tta,
    ).get("val", {})  # fmt: skip
    val_f1 = ensemble.model_f1_scores(sets["val"], labels["val"], threshold=TRAINING_THRESHOLD)

    replicates = {
        int(seed): _replicate(
            config, int(seed), list(rows["model"]), sets, labels, val_f1, dict(zip(rows["model"], rows["variant"]))
        )
        for seed, rows in table.groupby("seed", sort=True)
    }
    run = replicates[config.seed]
    for name, key in (("shift_sweep", "sweep"), ("ensemble_comparison", "comparison"),
                      ("ensemble_members", "members"), ("thresholds", "thresholds")):  # fmt: skip
        save_table(_by_seed({seed: r[key] for seed, r in replicates.items()}), paths.results / f"{name}.csv")

    leaderboard = _submissions(config, source, probs, run["comparison"], run["ensembles"], run["submitted"].name)
    save_table(leaderboard, paths.results / "leaderboard.csv")
    final = run["comparison"].set_index("role").loc[CHOSEN]
    sweep, choice, greedy = run["sweep"], run["choice"], run["greedy"]
    original = sweep[(sweep["shift"] - ORIGINAL_SHIFT).abs() < 1e-9]
    position = sweep[(sweep["shift"] - run["original_position_shift"]).abs() < 1e-9]
    summary = EnsembleSummary(
        selected=list(run["selected"]),
        weights={m: float(w) for m, w in choice.weights.items()},
        shift=choice.shift,
        shift_setting=settings.shift,
        threshold=float(run["threshold"]),
        threshold_method="best global on validation" if settings.threshold == "fit" else "fixed",
        val_f1=to_number(final.get("val_f1")),
        public_f1=to_number(final.get("public_f1")),
        private_f1=to_number(final.get("private_f1")),
        held_out=run["held_out"],
        shift_note=choice.note,
        n_members=len(choice.members),
        original_shift={k: to_number(v) for k, v in original.iloc[0].items()} if not original.empty else None,
        scoring_rule=metrics.SCORING_RULE,
        per_class_vs_global=run["per_class_vs_global"],
        seeds=sorted(replicates),
        member_rule=MEMBER_RULE.format(k=settings.top_k),
        original_position={k: to_number(v) for k, v in position.iloc[0].items()} if not position.empty else None,
        greedy={
            "weights": {m: float(w) for m, w in greedy.weights.items()},
            "counts": {m: int(c) for m, c in greedy.counts.items()},
            "steps": int(greedy.counts.sum()) - 1,
            "max_steps": GREEDY_STEPS,
            "stopped": greedy.stopped,
            "threshold": greedy.threshold,
            "val_f1": greedy.val_f1,
        },
        submitted=_submitted_summary(run["comparison"], run["submitted"]),
        submitted_margin=to_number(run["submitted"].margin),
    )
    write_json_atomic(paths.results / "ensemble.json", asdict(summary))
    replicated = [r["replicate"] for r in replicates.values()]
    retested = _findings(table, paths, sets, labels, replicated, controls, control_val)
    write_json_atomic(paths.results / "findings.json", {"findings": [f.as_dict() for f in retested]})
    weights = choice.weights
    return EnsembleStudy(
        scored_on={name: len(y) for name, y in labels.items()},
        models=pd.DataFrame(
            {
                "val_f1": val_f1,
                "selected": val_f1.index.isin(run["selected"]),
                "weight": weights.reindex(val_f1.index).fillna(0.0),
                "greedy_weight": greedy.weights.reindex(val_f1.index).fillna(0.0),
            }
        ),
        sweep=sweep,
        comparison=run["comparison"],
        thresholds=run["thresholds"],
        per_class_f1=metrics.f1_per_class(labels["val"], metrics.binarize(run["p_val"], run["threshold"])),
        train_counts=data.y[data.train_indices].sum(axis=0),
        val_counts=labels["val"].sum(axis=0),
        members=run["members"],
        findings=retested,
        leaderboard=leaderboard,
        summary=summary,
        submission=paths.submission if paths.submission.is_file() else None,
    )


def _by_seed(tables: dict) -> pd.DataFrame:
    """One table of every seed's rows, the seed first."""
    frames = []
    for seed, table in tables.items():
        frame = table.assign(seed=seed)[["seed", *table.columns]]
        frame.attrs = {}  # a study's arrays (e.g. its thresholds) stay with the study, not the table
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _validation_winner(comparison: pd.DataFrame, ensembles: dict) -> ensemble.Winner:
    """The predictor validation chooses for the submission: the best of the best single model and the
    ensembles by validation F1, each at its own threshold (ties: the earlier of :data:`SUBMISSION_CANDIDATES`).
    An ensemble that is the same predictor as an earlier candidate (e.g. a greedy selection that kept the best
    single model alone) is not a candidate of its own, so the runner-up and the margin compare different
    predictors."""
    singles = comparison[comparison["role"] == SINGLE].dropna(subset=["val_f1"])
    candidates: dict[str, float] = {}
    seen: list[dict] = []
    for role in SUBMISSION_CANDIDATES:
        if role == SINGLE:
            if singles.empty:
                continue
            name = str(singles.loc[singles["val_f1"].idxmax(), "name"])
            weights = {name: 1.0}
        else:
            name = ENSEMBLE_NAMES[role]
            weights = ensembles.get(name)
            if weights is None:
                continue
        total = sum(w for w in weights.values() if w > 0)
        shares = {m: round(w / total, 12) for m, w in weights.items() if w > 0}
        if shares in seen:
            continue
        seen.append(shares)
        candidates[name] = float(comparison.loc[comparison["name"] == name, "val_f1"].iloc[0])
    return ensemble.validation_winner(candidates)


def _submitted_summary(comparison: pd.DataFrame, winner: ensemble.Winner) -> dict:
    """``ensemble.json``'s ``submitted``: the submitted predictor's row of the comparison and its runner-up."""
    rows = comparison.set_index("name")
    row = rows.loc[winner.name]
    return {
        "name": winner.name,
        "role": str(row["role"]),
        "n_models": int(row["n_models"]),
        "threshold": to_number(row.get("threshold")),
        "val_f1": to_number(row.get("val_f1")),
        "public_f1": to_number(row.get("public_f1")),
        "private_f1": to_number(row.get("private_f1")),
        "runner_up": winner.runner_up,
        "runner_up_role": str(rows.loc[winner.runner_up, "role"]) if winner.runner_up is not None else None,
        "runner_up_val_f1": to_number(winner.runner_up_f1),
    }


def _replicate(
    config: RunConfig,
    seed: int,
    models: list[str],
    sets: dict,
    labels: dict,
    all_val_f1: pd.Series,
    variants: dict | None = None,
) -> dict:
    """The ensemble study over one training seed's ``models`` (``variants``: model -> base variant): members,
    shift, threshold, the greedy ensemble, the comparison with the submitted predictor, the members' table and
    the threshold study (the tables without their ``seed`` column)."""
    settings = config.ensemble
    sets = {name: {m: p for m, p in part.items() if m in models} for name, part in sets.items()}
    val_f1 = all_val_f1[all_val_f1.index.isin(models)]
    # every single model at its own threshold by the comparison's rule: the F1 that chooses between models
    singles = ensemble.compare_models(sets, labels, threshold=settings.threshold)
    fitted_f1 = pd.Series(dict(zip(singles["name"], singles["val_f1"])), dtype=np.float64)
    # members: at most one per base variant (its best stage), the k best variants, both by the comparison's
    # F1 (the rule that also picks the best single model); weights: the report's rule, validation F1 at the
    # training threshold minus the shift; each shift's ensemble at its own threshold by the rule it is then
    # scored with (settings.threshold: "fit" or a number)
    groups = {m: (variants or {}).get(m, m) for m in fitted_f1.index}
    selected = ensemble.select_models(fitted_f1, k=settings.top_k, groups=groups)
    chosen_sets = {name: {m: sets[name][m] for m in selected} for name in sets}
    position = ensemble.original_position_shift(val_f1[selected])  # the report's 0.34, placed on these members
    sweep = ensemble.shift_sweep(
        chosen_sets["val"],
        val_f1[selected],
        labels["val"],
        shifts=np.union1d(ensemble.sweep_shifts(val_f1[selected]), [position]),
        threshold=settings.threshold,
        extra_sets={name: (chosen_sets[name], labels[name]) for name in sets if name != "val"},
    )
    choice = ensemble.choose_weights(val_f1[selected], sweep, settings.shift, min_members=MIN_MEMBERS)
    weights, threshold = choice.weights, choice.threshold
    p_val = ensemble.weighted_mean(chosen_sets["val"], weights)
    if np.isnan(threshold):  # equal weights (no shift kept two members): the threshold by the same rule
        threshold = ensemble.fit_threshold(labels["val"], p_val, settings.threshold)
    # Caruana et al.'s greedy forward selection over every model of the seed, on validation
    greedy = ensemble.greedy_selection(sets["val"], labels["val"], max_steps=GREEDY_STEPS, threshold=settings.threshold)

    # the report's comparison: single models, the weighted ensemble, the greedy ensemble, all models with
    # equal weights; every predictor at its own threshold by the same rule
    ensembles = {
        ENSEMBLE_NAMES[CHOSEN]: dict(weights),
        ENSEMBLE_NAMES[GREEDY]: dict(greedy.weights),
        ENSEMBLE_NAMES[EQUAL_ALL]: {m: 1.0 for m in models},
    }
    combined = ensemble.compare_models(sets, labels, ensembles, threshold=settings.threshold, singles=False)
    comparison = pd.concat([singles, combined], ignore_index=True)
    roles = {name: role for role, name in ENSEMBLE_NAMES.items()}
    comparison.insert(
        2,
        "role",
        [roles.get(n, SINGLE) if k == "ensemble" else SINGLE for n, k in zip(comparison["name"], comparison["kind"])],
    )
    # the submission: what validation chooses among the candidates (a tie: the earlier, the simpler)
    submitted = _validation_winner(comparison, ensembles)
    comparison["submitted"] = comparison["name"] == submitted.name
    members = pd.DataFrame(
        {
            "model": selected,
            "variant": [variants.get(m) for m in selected] if variants else None,
            "val_f1": [float(fitted_f1[m]) for m in selected],
            "val_f1_at_0.5": [val_f1[m] for m in selected],
            "weight": [float(weights[m]) for m in selected],
        }
    )
    if not variants:
        members = members.drop(columns="variant")
    members["share"] = members["weight"] / members["weight"].sum()

    # thresholds: fitted on validation, scored on held-out data (the private part, else half of validation)
    held_out = "private" if "private" in sets else "validation half"
    if "private" in sets:
        y_hold, p_hold = labels["private"], ensemble.weighted_mean(chosen_sets["private"], weights)
        study = threshold_study(labels["val"], p_val, y_hold, p_hold)
    else:
        fit_rows, hold_rows = halves(len(p_val), config.seed)
        y_hold, p_hold = labels["val"][hold_rows], p_val[hold_rows]
        study = threshold_study(labels["val"][fit_rows], p_val[fit_rows], y_hold, p_hold)
    study.insert(1, "held_out", held_out)
    # per-class against the best global threshold on the held-out images, paired
    per_class_vs_global = paired_f1_difference(
        y_hold,
        metrics.binarize(p_hold, study.attrs["per_class_thresholds"]),
        metrics.binarize(p_hold, study.attrs["global_threshold"]),
    ).as_dict()
    thresholds_by_name = dict(zip(comparison["name"], comparison["threshold"]))
    return {
        "selected": selected,
        "sweep": sweep,
        "choice": choice,
        "original_position_shift": position,
        "threshold": threshold,
        "p_val": p_val,
        "greedy": greedy,
        "ensembles": ensembles,
        "submitted": submitted,
        "comparison": comparison,
        "members": members,
        "thresholds": study.drop(columns="thresholds"),
        "held_out": held_out,
        "per_class_vs_global": per_class_vs_global,
        "replicate": findings.Replicate(
            seed=seed,
            weights=dict(weights),
            threshold=float(thresholds_by_name[ENSEMBLE_NAMES[CHOSEN]]),
            member_thresholds=thresholds_by_name,
            member_val_f1=dict(val_f1),
            chosen_f1=val_f1[selected],
            sweep=sweep,
            equal=(ensembles[ENSEMBLE_NAMES[EQUAL_ALL]], float(thresholds_by_name[ENSEMBLE_NAMES[EQUAL_ALL]])),
            shift=float(choice.shift),
            fitted_val_f1=dict(fitted_f1),
        ),
    }


def _findings(table, paths, sets, labels, replicates: list, controls=None, control_val=None) -> list:
    """The original's findings re-tested on this run (:mod:`hpa_utils.studies.findings`), over every seed
    (``controls``: the rows of Finding 2's control models, ``control_val`` their validation probabilities)."""
    from hpa_utils.training.registry import load_history  # deferred: Keras

    histories = {m: load_history(paths.models, m) for m in table["model"]}
    histories = {m: h for m, h in histories.items() if not h.empty}
    base = table[table["stage"].astype(str) == "base"]
    seeds = dict(zip(table["model"], table["seed"]))
    return [
        findings.still_improving(
            {m: histories[m] for m in base["model"] if m in histories}, ORIGINAL_REPORT["base_epochs"], seeds
        ),
        findings.fine_tuning_raises(
            pd.concat([table, controls], ignore_index=True) if controls is not None else table,
            {**sets["val"], **(control_val or {})},
            labels["val"],
        ),
        findings.later_stages_overfit(table, histories, sets["val"], labels["val"]),
        findings.ensemble_beats_members(sets, labels, replicates),
        findings.shift_moves_public(
            sets, labels, replicates, ORIGINAL_REPORT["shift_pair"], ORIGINAL_REPORT["shift_pair_public_diff"]
        ),
        findings.equal_weights_public_private(sets, labels, replicates),
    ]


def _submissions(config, source, probs, comparison, ensembles, submitted: str | None = None) -> pd.DataFrame:
    """Write every leaderboard entry's submission and score it, each at the threshold its row of the comparison
    has (so the two tables agree). The first is the run's ``submission.csv``: the ``submitted`` predictor (the
    validation winner); the others are extra submissions under ``results/submissions/``."""
    if "test" not in probs:
        return pd.DataFrame(columns=["submission", "description", "threshold", "public_f1", "private_f1"])
    paths = config.paths
    thresholds = dict(zip(comparison["name"], comparison["threshold"]))
    rows = []
    for stem, name, description, members in ensemble.leaderboard_entries(comparison, ensembles, submitted):
        path = paths.submission if stem == "submission" else paths.results / "submissions" / f"{stem}.csv"
        p_test = ensemble.weighted_mean({m: probs["test"][m] for m in members}, members)
        submission.make_submission(source.sample_submission, source.test_ids, p_test, thresholds[name], path)
        scores = submission.score_submission(path, source.solution) if source.solution.is_file() else {}
        rows.append(
            {
                "submission": path.name,
                "description": description,
                "threshold": thresholds[name],
                "public_f1": scores.get("public"),
                "private_f1": scores.get("private"),
            }
        )
    return pd.DataFrame(rows)
