"""The real ensemble (at least two members, weights fitted with the scoring threshold rule), the bootstrap
intervals, and the re-tested findings whose verdicts come from the numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from hpa_utils.data.labels import NUM_CLASSES
from hpa_utils.evaluation.bootstrap import macro_f1_interval, mean_interval, paired_f1_difference
from hpa_utils.evaluation.ensemble import choose_weights, compare_models, shift_sweep, weighted_mean
from hpa_utils.evaluation.metrics import binarize, macro_f1
from hpa_utils.evaluation.thresholds import best_global_threshold
from hpa_utils.studies import findings


def _labelled(rng, n: int, noise: float, y=None):
    y = y if y is not None else (rng.random((n, NUM_CLASSES)) < 0.15).astype(np.uint8)
    if y is not None:
        y[np.arange(n), rng.integers(0, NUM_CLASSES, n)] = 1
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, noise, y.shape), 0, 1)
    return y, p


def _models(rng, n=300, noises=(0.15, 0.25, 0.3, 0.35)):
    y, _ = _labelled(rng, n, 0.1)
    probs = {f"m{i}": _labelled(rng, n, noise, y.copy())[1] for i, noise in enumerate(noises)}
    return y, probs


def test_the_fitted_shift_keeps_at_least_two_members():
    rng = np.random.default_rng(0)
    y, probs = _models(rng)
    f1 = pd.Series({m: macro_f1(y, binarize(p, 0.5)) for m, p in probs.items()})
    shifts = np.round(np.arange(0, f1.max(), 0.01), 2)
    sweep = shift_sweep(probs, f1, y, shifts=shifts, threshold="fit")
    assert (sweep["n_models"] == 1).any(), "the sweep reaches one-model shifts, which must not be chosen"
    choice = choose_weights(f1, sweep, "fit", min_members=2)
    assert len(choice.members) >= 2
    row = sweep[(sweep["shift"] - choice.shift).abs() < 1e-9].iloc[0]
    assert choice.threshold == row["threshold"]
    # the threshold the shift was chosen with is the one the ensemble is then scored with
    p_val = weighted_mean(probs, choice.weights)
    assert choice.threshold == best_global_threshold(y, p_val)[0]
    assert macro_f1(y, binarize(p_val, choice.threshold)) == pytest.approx(row["val_f1"])


def test_a_fixed_shift_that_leaves_one_member_is_lowered_and_says_so():
    rng = np.random.default_rng(1)
    y, probs = _models(rng)
    f1 = pd.Series({m: macro_f1(y, binarize(p, 0.5)) for m, p in probs.items()})
    second = f1.sort_values().iloc[-2]
    shifts = np.round(np.arange(0, f1.max(), 0.01), 2)
    sweep = shift_sweep(probs, f1, y, shifts=shifts, threshold="fit")
    with pytest.warns(UserWarning, match="leaves 1 model"):
        choice = choose_weights(f1, sweep, float(np.round(second + 0.005, 3)), min_members=2)
    assert len(choice.members) == 2 and choice.shift < second
    assert "lowered" in choice.note


def test_each_compared_predictor_is_scored_at_its_own_fitted_threshold():
    rng = np.random.default_rng(2)
    y, probs = _models(rng)
    table = compare_models({"val": probs}, {"val": y}, {"all": {m: 1.0 for m in probs}}, threshold="fit")
    for _, row in table.iterrows():
        p = probs[row["name"]] if row["kind"] == "single" else weighted_mean(probs, {m: 1.0 for m in probs})
        threshold, f1 = best_global_threshold(y, p)
        assert row["threshold"] == threshold and row["val_f1"] == pytest.approx(f1)


def test_bootstrap_intervals_cover_the_estimate_and_pair_the_images():
    rng = np.random.default_rng(3)
    y, probs = _models(rng)
    good, bad = binarize(probs["m0"], 0.5), binarize(probs["m3"], 0.5)
    single = macro_f1_interval(y, good)
    assert single.low <= single.estimate <= single.high and single.high - single.low < 0.2
    same = paired_f1_difference(y, good, good)
    assert same.estimate == same.low == same.high == 0.0
    better = paired_f1_difference(y, good, bad)
    assert better.low > 0 and better.excludes_zero()
    assert paired_f1_difference(y, bad, good).high < 0
    spread = mean_interval(np.array([0.01, 0.02, 0.03]))
    assert spread.low >= 0.01 and spread.high <= 0.03 and spread.estimate == pytest.approx(0.02)


def _table(variants):
    rows = []
    for v in variants:
        rows.append({"model": f"v{v}", "variant": v, "stage": "base"})
        rows += [{"model": f"v{v}-{s}", "variant": v, "stage": s} for s in "ABC"]
    return pd.DataFrame(rows)


def test_verdicts_come_from_the_intervals():
    rng = np.random.default_rng(4)
    y, _ = _labelled(rng, 400, 0.1)
    table = _table([0, 1])
    weak = {m: _labelled(rng, 400, 0.4, y.copy())[1] for m in table["model"]}
    strong = {m: (_labelled(rng, 400, 0.12, y.copy())[1] if m.endswith("-C") else p) for m, p in weak.items()}
    assert findings.fine_tuning_raises(table, strong, y).verdict == findings.REPRODUCED
    same = {m: weak[f"v{m[1]}"] for m in weak}  # every stage predicts exactly what its base model does
    result = findings.fine_tuning_raises(table, same, y)
    assert result.verdict == findings.NOT_REPRODUCED and "includes 0" in result.why
    worse = {m: (_labelled(rng, 400, 0.6, y.copy())[1] if m.endswith("-C") else strong[m]) for m in weak}
    result = findings.fine_tuning_raises(table, worse, y)
    assert result.verdict == findings.NOT_REPRODUCED and "other side" in result.why


def test_fine_tuning_is_judged_against_its_control_when_there_is_one():
    rng = np.random.default_rng(21)
    y, _ = _labelled(rng, 400, 0.1)
    table = _table([0, 1])
    without = findings.fine_tuning_raises(table, {}, y)
    assert without.verdict == findings.NOT_TESTABLE
    controls = pd.DataFrame([{"model": f"v{v}-ctl", "variant": v, "stage": "ctl"} for v in (0, 1)])
    both = pd.concat([table, controls], ignore_index=True)
    weak = {m: _labelled(rng, 400, 0.4, y.copy())[1] for m in both["model"]}
    tuned = {m: _labelled(rng, 400, 0.12, y.copy())[1] for m in weak if m.endswith("-C")}
    # the control as good as the stages: the gain over the base model is the lower rate's and the epochs'
    matched = weak | tuned | {f"v{v}-ctl": tuned[f"v{v}-C"] for v in (0, 1)}
    result = findings.fine_tuning_raises(both, matched, y)
    over_control, over_base = result.deciding
    assert over_base["low"] > 0 and over_control["estimate"] == 0
    assert result.verdict == findings.NOT_REPRODUCED and "without freezing gives as well" in result.why
    # the control no better than the base model: the stages' gain is their own
    result = findings.fine_tuning_raises(both, weak | tuned, y)
    assert result.verdict == findings.REPRODUCED and result.low > 0 and len(result.deciding) == 2
    # the stages no better than the base model, the control worse: no gain to attribute
    worse = {f"v{v}-ctl": _labelled(rng, 400, 0.8, y.copy())[1] for v in (0, 1)}
    flat = weak | worse | {f"v{v}-C": weak[f"v{v}"] for v in (0, 1)}
    result = findings.fine_tuning_raises(both, flat, y)
    assert result.deciding[0]["low"] > 0 and result.verdict == findings.NOT_REPRODUCED
    # no control trained: the verdict is the gain over the base model, said to be unattributed
    result = findings.fine_tuning_raises(table, weak | tuned, y)
    assert result.verdict == findings.REPRODUCED and "not attributed" in result.why and not result.deciding


def test_a_finding_the_run_cannot_test_says_why():
    rng = np.random.default_rng(5)
    y, probs = _models(rng)
    f1 = pd.Series({m: 0.2 for m in probs})
    sweep = pd.DataFrame({"shift": [0.34, 0.36], "n_models": [0, 0], "threshold": [np.nan, np.nan]})
    replicate = findings.Replicate(0, {}, 0.5, {}, dict(f1), f1, sweep, ({}, 0.5))
    result = findings.shift_moves_public(
        {"val": probs, "public": probs}, {"val": y, "public": y}, [replicate], (0.34, 0.36), 0.02
    )
    assert result.verdict == findings.NOT_TESTABLE and "no ensemble is left" in result.why
    no_labels = findings.equal_weights_public_private({"val": probs}, {"val": y}, [replicate])
    assert no_labels.verdict == findings.NOT_TESTABLE


def _histories(last_step: float, n: int = 4) -> dict:
    """Base models whose validation F1 rises to epoch 3, then moves by ``last_step`` (+- a little) per epoch."""
    return {
        f"v{i}": pd.DataFrame({"val_macro_f1": [0.1, 0.2, 0.3, 0.3 + last_step, 0.3 + 2 * last_step + (i - 1.5) / 100]})
        for i in range(n)
    }


def test_still_improving_follows_the_slope_of_the_last_epochs_across_zero():
    assert findings.still_improving(_histories(+0.02), 40).verdict == findings.REPRODUCED
    assert findings.still_improving(_histories(-0.02), 40).verdict == findings.NOT_REPRODUCED
    flat = findings.still_improving(_histories(0.0), 40)
    assert flat.verdict == findings.NOT_REPRODUCED and flat.low < 0 < flat.high
    result = findings.still_improving(_histories(+0.02), 40)
    assert result.estimate == pytest.approx(0.02, abs=0.002) and "epoch 5, not 40" in result.why


def test_the_per_image_loss_averages_to_keras_binary_cross_entropy():
    from hpa_utils.backend import keras
    from hpa_utils.evaluation.metrics import per_image_log_loss

    rng = np.random.default_rng(6)
    y = (rng.random((50, NUM_CLASSES)) < 0.2).astype("float32")
    p = rng.random((50, NUM_CLASSES)).astype("float32")
    keras_loss = float(keras.losses.BinaryCrossentropy()(y, p))
    assert per_image_log_loss(y, p).mean() == pytest.approx(keras_loss, rel=1e-5)


# --------------------------------------------------------------------------- over training seeds


def test_one_seed_gives_the_interval_over_images_and_several_the_two_level_one():
    from hpa_utils.evaluation.bootstrap import paired_mean_difference

    rng = np.random.default_rng(6)
    y, probs = _models(rng)
    a, b = [binarize(probs["m0"], 0.5)] * 2, [binarize(probs["m3"], 0.5)] * 2
    assert paired_f1_difference(y, a, b, groups=[7, 7]) == paired_f1_difference(y, a, b)
    # a seed that helps by 0.1 on every image and one that changes nothing: over images alone the mean, 0.05,
    # has no spread; over seeds the interval spans both seeds' values
    helps, same = np.full(200, 0.1), np.zeros(200)
    images_only = paired_mean_difference([helps, same], [same, same])
    assert images_only.low == pytest.approx(0.05) and images_only.high == pytest.approx(0.05)
    seeds = paired_mean_difference([helps, same], [same, same], groups=[0, 1])
    assert seeds.n_seeds == 2 and seeds.estimate == pytest.approx(0.05)
    assert seeds.low == pytest.approx(0.0) and seeds.high == pytest.approx(0.1)
    spread = mean_interval(np.array([0.01, 0.02, 0.5, 0.52]), groups=[0, 0, 1, 1])
    assert spread.n_seeds == 2 and spread.low < 0.05 and spread.high > 0.45


def test_a_finding_over_seeds_pairs_each_seeds_models_and_says_how_many_seeds():
    rng = np.random.default_rng(8)
    y, _ = _labelled(rng, 400, 0.1)
    rows = []
    for seed in (0, 1, 2):
        for v in (0, 1):
            rows.append({"model": f"v{v}-s{seed}", "variant": v, "stage": "base", "seed": seed})
            rows += [{"model": f"v{v}-{s}-s{seed}", "variant": v, "stage": s, "seed": seed} for s in "ABC"]
    table = pd.DataFrame(rows)
    probs = {m: _labelled(rng, 400, 0.12 if "-C" in m else 0.4, y.copy())[1] for m in table["model"]}
    result = findings.fine_tuning_raises(table, probs, y)
    assert result.verdict == findings.REPRODUCED
    assert result.interval_over.startswith("3 training seeds, then validation images")
    assert result.numbers["pairs"] == 6


# --------------------------------------------------------------------------- each finding's verdict follows its number


def _stage_table(epochs_b: int = 2, epochs_c: int = 2):
    table = _table([0, 1, 2])
    table["epochs"] = [{"base": 3, "A": 1, "B": epochs_b, "C": epochs_c}[s] for s in table["stage"]]
    return table


def test_later_stages_overfit_follows_the_loss_and_the_f1_and_needs_epochs_to_see_it():
    rng = np.random.default_rng(9)
    y, _ = _labelled(rng, 400, 0.1)
    table = _stage_table()
    base = {m: _labelled(rng, 400, 0.3, y.copy())[1] for m in table["model"]}
    # stage C: every positive found and most false alarms gone (F1 up), but a tenth of the negatives called
    # positive with near certainty (validation loss up): the original's claim
    confident_wrong = rng.random(y.shape) < 0.1
    stage_c = np.where(y == 1, 0.95, np.where(confident_wrong, 0.9999, 0.2))
    sharper = {m: (stage_c if m.endswith("-C") else p) for m, p in base.items()}
    result = findings.later_stages_overfit(table, {}, sharper, y)
    loss, f1 = result.deciding
    assert loss["low"] > 0 and f1["low"] > 0 and result.verdict == findings.REPRODUCED
    unchanged = base | {m: base[m.replace("-C", "-A")] for m in base if "-C" in m}
    same = findings.later_stages_overfit(table, {}, unchanged, y)
    assert same.verdict == findings.NOT_REPRODUCED and same.deciding[0]["estimate"] == 0
    short = findings.later_stages_overfit(_stage_table(1, 1), {}, sharper, y)
    assert short.verdict == findings.NOT_TESTABLE and "at least 2 epochs" in short.why


def _replicates(sets, labels, seeds=(0,), shift=0.1):
    """Hand-made replicates: each seed's four models, its chosen shift, the sweep at its thresholds."""
    out = []
    for seed in seeds:
        models = [m for m in sets["val"] if m.endswith(f"s{seed}")]
        f1 = pd.Series({m: macro_f1(labels["val"], binarize(sets["val"][m], 0.5)) for m in models})
        shifts = np.round(np.arange(0.0, 0.5, 0.01), 2)
        sweep = shift_sweep({m: sets["val"][m] for m in models}, f1, labels["val"], shifts=shifts, threshold="fit")
        weights = dict(choose_weights(f1, sweep, shift, min_members=2).weights)
        thresholds = {m: best_global_threshold(labels["val"], sets["val"][m])[0] for m in models}
        out.append(findings.Replicate(seed, weights, 0.5, thresholds, dict(f1), f1, sweep,
                                      ({m: 1.0 for m in models}, 0.5), shift=shift))  # fmt: skip
    return out


def _sets(rng, seeds=(0,), n=300, noises=(0.15, 0.25, 0.3, 0.35)):
    y, _ = _labelled(rng, 3 * n, 0.1)
    probs = {f"m{i}-s{seed}": _labelled(rng, 3 * n, noise, y.copy())[1] for seed in seeds for i, noise in
             enumerate(noises)}  # fmt: skip
    parts = {"val": slice(0, n), "public": slice(n, 2 * n), "private": slice(2 * n, 3 * n)}
    sets = {part: {m: p[rows] for m, p in probs.items()} for part, rows in parts.items()}
    return sets, {part: y[rows] for part, rows in parts.items()}


def test_shift_moves_public_takes_the_step_around_the_chosen_shift_over_seeds():
    rng = np.random.default_rng(10)
    sets, labels = _sets(rng, seeds=(0, 1))
    result = findings.shift_moves_public(sets, labels, _replicates(sets, labels, (0, 1)), (0.34, 0.36), 0.02)
    assert result.verdict in (findings.REPRODUCED, findings.NOT_REPRODUCED)
    assert result.numbers["seeds"] == 2 and result.interval_over.startswith("2 training seeds")
    assert [d["what"] for d in result.deciding][:2] == ["public, shift +0.02", "private, shift +0.02"]
    assert result.estimate == result.deciding[0]["estimate"]
    crosses = result.low > 0 or result.high < 0
    assert (result.verdict == findings.REPRODUCED) <= crosses  # reproduced only when the move excludes 0


def test_equal_weights_shows_public_and_private_and_follows_their_signs():
    rng = np.random.default_rng(11)
    sets, labels = _sets(rng)
    reps = _replicates(sets, labels)
    result = findings.equal_weights_public_private(sets, labels, reps)
    private, public = result.deciding
    assert (private["what"], public["what"]) == ("private", "public")
    expected = public["high"] < 0 and private["low"] > 0  # lower on public, higher on private: the claim
    assert result.verdict == (findings.REPRODUCED if expected else findings.NOT_REPRODUCED)
    assert result.estimate == private["estimate"]
    # the chosen ensemble scored against itself: both changes 0, so not reproduced
    itself = [dataclasses.replace(r, equal=(r.weights, r.threshold)) for r in reps]
    same = findings.equal_weights_public_private(sets, labels, itself)
    assert same.verdict == findings.NOT_REPRODUCED and same.estimate == 0


def test_fine_tuning_verdict_flips_when_the_gain_crosses_zero():
    rng = np.random.default_rng(12)
    y, _ = _labelled(rng, 400, 0.1)
    table = _table([0, 1])
    base = {m: _labelled(rng, 400, 0.3, y.copy())[1] for m in table["model"]}
    better = base | {m: _labelled(rng, 400, 0.1, y.copy())[1] for m in base if m.endswith("-C")}
    worse = base | {m: _labelled(rng, 400, 0.6, y.copy())[1] for m in base if m.endswith("-C")}
    up, down = findings.fine_tuning_raises(table, better, y), findings.fine_tuning_raises(table, worse, y)
    assert up.low > 0 and up.verdict == findings.REPRODUCED
    assert down.high < 0 and down.verdict == findings.NOT_REPRODUCED


def test_ensemble_beats_members_flips_when_the_gain_over_the_best_member_crosses_zero():
    rng = np.random.default_rng(12)
    sets, labels = _sets(rng, noises=(0.3, 0.3, 0.3, 0.9))
    [rep] = _replicates(sets, labels)
    models = list(sets["val"])
    fitted = {m: best_global_threshold(labels["val"], sets["val"][m])[1] for m in models}
    # three equally good members with independent errors: their mean beats the best of them
    averaged = dataclasses.replace(
        rep, weights={m: (1.0 if m != models[3] else 0.0) for m in models}, fitted_val_f1=fitted,
        threshold=best_global_threshold(labels["val"], np.mean([sets["val"][m] for m in models[:3]], axis=0))[0],
    )  # fmt: skip
    result = findings.ensemble_beats_members(sets, labels, [averaged])
    assert result.verdict == findings.REPRODUCED and result.low > 0
    # nearly all the weight on the noisy member: below the best member, the interval on the other side
    noisy = dataclasses.replace(averaged, weights={m: (0.01 if m != models[3] else 1.0) for m in models}, threshold=0.5)
    result = findings.ensemble_beats_members(sets, labels, [noisy])
    assert result.verdict == findings.NOT_REPRODUCED and result.high < 0 and "other side" in result.why


def test_shift_moves_public_follows_its_deciding_interval(monkeypatch):
    from hpa_utils.evaluation.bootstrap import Interval

    rng = np.random.default_rng(13)
    sets, labels = _sets(rng)
    reps = _replicates(sets, labels)
    verdicts = {}
    for name, (estimate, low, high) in {
        "moves 0.02": (0.021, 0.012, 0.030),  # excludes 0 and includes the original's 0.02: reproduced
        "includes 0": (0.004, -0.006, 0.013),
        "moves, not by 0.02": (0.080, 0.060, 0.100),
    }.items():
        interval = Interval(estimate, low, high, n_images=300, n_resamples=2000)
        monkeypatch.setattr(findings, "paired_f1_difference", lambda *a, _iv=interval, **k: _iv)
        verdicts[name] = findings.shift_moves_public(sets, labels, reps, (0.34, 0.36), 0.02)
    assert verdicts["moves 0.02"].verdict == findings.REPRODUCED
    assert verdicts["includes 0"].verdict == findings.NOT_REPRODUCED and "includes 0" in verdicts["includes 0"].why
    assert verdicts["moves, not by 0.02"].verdict == findings.NOT_REPRODUCED
    assert "from the chosen shift" in verdicts["includes 0"].why
