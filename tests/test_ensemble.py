"""Ensemble weights, weighted averages, the shift sweep, model selection and the threshold study."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from hpa_utils.data.labels import NUM_CLASSES
from hpa_utils.evaluation.ensemble import (
    DEFAULT_SHIFTS,
    choose_weights,
    compare_models,
    equal_weight_mean,
    greedy_selection,
    leaderboard_entries,
    model_f1_scores,
    original_position_shift,
    select_models,
    shift_sweep,
    validation_winner,
    weighted_mean,
    weights_from_f1,
)
from hpa_utils.evaluation.metrics import binarize, macro_f1
from hpa_utils.evaluation.thresholds import best_global_threshold, halves, threshold_study


def _labelled_set(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n, 28) and probabilities that are the labels blurred by ``noise``."""
    y = (rng.random((n, NUM_CLASSES)) < 0.2).astype(np.uint8)
    y[np.arange(n), rng.integers(0, NUM_CLASSES, n)] = 1
    p = np.clip(0.25 + 0.5 * y + rng.normal(0, noise, y.shape), 0, 1)
    return y, p


def test_weights_are_f1_minus_shift_with_a_warning_naming_the_clipped_model():
    with pytest.warns(UserWarning, match=r"clipped to 0 for model 2$"):
        weights = weights_from_f1([0.40, 0.44, 0.30], shift=0.34)
    assert isinstance(weights, np.ndarray)
    np.testing.assert_allclose(weights, [0.06, 0.10, 0.0], atol=1e-12)


def test_weights_keep_model_names_and_order_for_dict_input():
    with pytest.warns(UserWarning, match="m_low"):
        weights = weights_from_f1({"m_b": 0.44, "m_low": 0.2, "m_a": 0.40})
    assert list(weights.index) == ["m_b", "m_low", "m_a"]
    np.testing.assert_allclose(weights.to_numpy(), [0.10, 0.0, 0.06], atol=1e-12)


def test_weights_do_not_warn_when_no_model_is_clipped():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = weights_from_f1(pd.Series({"a": 0.45, "b": 0.42}), shift=0.34)
    np.testing.assert_allclose(weights.to_numpy(), [0.11, 0.08], atol=1e-12)


def test_weights_raise_when_the_shift_is_above_every_f1():
    with pytest.raises(ValueError, match="above every model's F1"):
        weights_from_f1([0.30, 0.33], shift=0.34)


def test_weighted_mean_equals_hand_computed_average():
    p1 = np.array([[0.2, 0.8], [1.0, 0.0]])
    p2 = np.array([[0.6, 0.4], [0.0, 1.0]])
    # weights 1 and 3 normalise to 0.25 and 0.75
    expected = np.array([[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(weighted_mean([p1, p2], [1, 3]), expected)
    np.testing.assert_allclose(weighted_mean({"x": p1, "y": p2}, {"y": 0.3, "x": 0.1}), expected)


def test_weighted_mean_ignores_models_with_zero_weight():
    p1, p2 = np.full((2, 3), 0.2), np.full((2, 3), 0.9)
    np.testing.assert_allclose(weighted_mean([p1, p2], [0.0, 0.5]), p2)


def test_weighted_mean_shape_mismatch_names_the_model():
    with pytest.raises(ValueError, match="probabilities of short have shape"):
        weighted_mean({"ok": np.zeros((4, 3)), "short": np.zeros((3, 3))}, {"ok": 1, "short": 1})


def test_weighted_mean_rejects_all_zero_weights():
    with pytest.raises(ValueError, match="sum to zero"):
        weighted_mean([np.zeros((2, 2))], [0.0])


def test_equal_weight_mean_is_the_plain_mean():
    arrays = [np.full((2, 2), v) for v in (0.1, 0.2, 0.6)]
    np.testing.assert_allclose(equal_weight_mean(arrays), np.full((2, 2), 0.3))


def _models(rng, f1_by_name, n=120):
    y_val, _ = _labelled_set(rng, n, 0.1)
    y_pub, _ = _labelled_set(rng, n, 0.1)
    val = {m: np.clip(0.25 + 0.5 * y_val + rng.normal(0, 0.3, y_val.shape), 0, 1) for m in f1_by_name}
    pub = {m: np.clip(0.25 + 0.5 * y_pub + rng.normal(0, 0.3, y_pub.shape), 0, 1) for m in f1_by_name}
    return y_val, val, y_pub, pub


def test_shift_sweep_includes_034_and_036_and_n_models_falls_as_the_shift_grows():
    rng = np.random.default_rng(0)
    f1 = {"a": 0.31, "b": 0.335, "c": 0.355, "d": 0.37, "e": 0.395, "f": 0.42}
    y_val, val, y_pub, pub = _models(rng, f1)
    table = shift_sweep(val, f1, y_val, extra_sets={"public": (pub, y_pub)})
    assert list(table.columns) == ["shift", "n_models", "threshold", "val_f1", "public_f1"]
    assert 0.34 in table["shift"].to_list() and 0.36 in table["shift"].to_list()
    assert len(table) == len(DEFAULT_SHIFTS) == 11
    n_models = table["n_models"].to_numpy()
    assert np.all(np.diff(n_models) <= 0) and n_models[0] == 6 and n_models[-1] == 1
    at_034 = table.set_index("shift").loc[0.34]
    direct = weighted_mean(val, {name: max(score - 0.34, 0.0) for name, score in f1.items()})
    assert at_034["val_f1"] == pytest.approx(macro_f1(y_val, binarize(direct, 0.5)))


def test_shift_sweep_gives_nan_where_every_weight_is_zero():
    rng = np.random.default_rng(1)
    f1 = {"a": 0.32, "b": 0.33}
    y_val, val, _, _ = _models(rng, f1, n=30)
    table = shift_sweep(val, f1, y_val, shifts=[0.30, 0.35])
    assert table["n_models"].to_list() == [2, 0]
    assert not np.isnan(table["val_f1"].iloc[0]) and np.isnan(table["val_f1"].iloc[1])


def test_select_models_keeps_top_k_by_validation_f1():
    f1 = {"m0": 0.42, "m1": 0.47, "m2": 0.40, "m3": 0.45}
    assert select_models(f1, k=2) == ["m1", "m3"]
    assert select_models(f1, min_f1=0.42) == ["m1", "m3", "m0"]
    with pytest.raises(ValueError, match="give k"):
        select_models(f1)


def test_compare_models_lists_every_model_and_ensemble_on_every_split():
    rng = np.random.default_rng(2)
    y_val, val, y_pub, pub = _models(rng, {"a": 0, "b": 0, "c": 0}, n=60)
    table = compare_models(
        {"val": val, "public": pub},
        {"val": y_val, "public": y_pub},
        ensembles={"equal": {"a": 1, "b": 1, "c": 1}, "a+b": {"a": 0.1, "b": 0.05}},
    )
    assert table["name"].to_list() == ["a", "b", "c", "equal", "a+b"]
    assert table["kind"].to_list() == ["single"] * 3 + ["ensemble"] * 2
    assert table["n_models"].to_list() == [1, 1, 1, 3, 2]
    expected = macro_f1(y_pub, binarize(equal_weight_mean(pub), 0.5))
    assert table.set_index("name").loc["equal", "public_f1"] == pytest.approx(expected)
    single = model_f1_scores(val, y_val)
    np.testing.assert_allclose(table["val_f1"].to_numpy()[:3], single.to_numpy())


def test_threshold_study_per_class_fit_picks_the_obvious_threshold():
    # class 0: positives at 0.25, negatives at 0.10 -> any threshold in (0.10, 0.25] is perfect; the
    # fitter keeps the one nearest 0.5, i.e. 0.25. The other classes are separable at 0.5.
    y = np.zeros((8, NUM_CLASSES), dtype=np.uint8)
    y[:4, 0] = 1
    y[4:, 1] = 1
    p = np.where(y == 1, 0.9, 0.1)
    p[:4, 0] = 0.25
    p[:4, 2] = 0.3  # at 0.5 these images have no label: the scoring rule gives them class 2, wrongly
    table = threshold_study(y, p, y, p)
    per_class = table.attrs["per_class_thresholds"]
    assert per_class[0] == pytest.approx(0.25)
    assert per_class[1] == pytest.approx(0.5)
    rows = table.set_index("method")
    assert rows.loc["per-class (fitted)", "fit_f1"] == pytest.approx(2 / NUM_CLASSES)
    assert rows.loc["fixed 0.5", "fit_f1"] == pytest.approx(1 / NUM_CLASSES)
    # the best global threshold must also catch class 0 (<= 0.25) without catching the negatives (0.1)
    assert 0.1 < table.attrs["global_threshold"] <= 0.25
    assert rows.loc["best global (fitted)", "fit_f1"] == pytest.approx(2 / NUM_CLASSES)


def test_threshold_study_fitted_thresholds_score_best_on_the_fit_set():
    rng = np.random.default_rng(3)
    y_fit, p_fit = _labelled_set(rng, 40, 0.3)
    y_hold, p_hold = _labelled_set(rng, 400, 0.3)
    study = threshold_study(y_fit, p_fit, y_hold, p_hold)
    assert study["key"].tolist() == ["fixed", "global", "per_class"]
    assert study["method"].tolist() == ["fixed 0.5", "best global (fitted)", "per-class (fitted)"]
    table = study.set_index("method")
    assert list(table.columns) == ["key", "thresholds", "fit_f1", "holdout_f1", "gap"]
    fit = table["fit_f1"]
    assert fit["per-class (fitted)"] >= fit["best global (fitted)"] >= fit["fixed 0.5"]
    # per-class thresholds fitted on 40 images do worse on held-out data than on the images they fit
    assert table.loc["per-class (fitted)", "gap"] > 0
    np.testing.assert_allclose(table["gap"], table["fit_f1"] - table["holdout_f1"])


def test_halves_are_disjoint_cover_every_row_and_repeat_for_a_seed():
    fit, hold = halves(11, seed=2)
    assert len(fit) == 5 and len(hold) == 6
    np.testing.assert_array_equal(np.sort(np.concatenate([fit, hold])), np.arange(11))
    again = halves(11, seed=2)
    np.testing.assert_array_equal(fit, again[0])
    np.testing.assert_array_equal(hold, again[1])


# --------------------------------------------------------------------------- members, shift, greedy, submission


def _complementary(n: int = 120):
    """Labels and three models: ``a`` knows classes 0-13 and nothing of 14-27, ``b`` the reverse (so the two
    together are perfect), ``c`` is mediocre everywhere."""
    rng = np.random.default_rng(10)
    y = (rng.random((n, NUM_CLASSES)) < 0.15).astype(np.uint8)
    y[np.arange(n), np.arange(n) % NUM_CLASSES] = 1  # every class has positives
    half = NUM_CLASSES // 2
    a, b = np.full(y.shape, 0.3), np.full(y.shape, 0.3)
    a[:, :half] = 0.9 * y[:, :half]
    b[:, half:] = 0.9 * y[:, half:]
    c = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, y.shape), 0, 1)
    return y, {"a": a, "b": b, "c": c}


def test_greedy_selection_adds_the_complementary_model_and_beats_the_best_single():
    y, probs = _complementary()
    singles = {name: best_global_threshold(y, p)[1] for name, p in probs.items()}
    result = greedy_selection(probs, y)
    assert result.history["added"].iloc[0] == max(singles, key=lambda m: (singles[m], -ord(m[0])))
    assert set(result.members) == {"a", "b"} and result.val_f1 == pytest.approx(1.0)
    assert result.val_f1 > max(singles.values())
    assert result.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(result.weights.to_numpy(), result.counts.to_numpy() / result.counts.sum())
    assert result.stopped == "no improvement"
    # the score it reports is the one the comparison gives its weights (each at its own fitted threshold)
    table = compare_models({"val": probs}, {"val": y}, {"greedy": dict(result.weights)}, threshold="fit")
    row = table.set_index("name").loc["greedy"]
    assert row["val_f1"] == pytest.approx(result.val_f1) and row["threshold"] == result.threshold


def test_greedy_selection_returns_the_single_model_when_no_addition_helps():
    y, probs = _complementary()
    perfect = np.where(y == 1, 0.8, 0.1)
    models = {"worse": probs["c"], "best": perfect, "also_worse": probs["a"]}
    result = greedy_selection(models, y)
    assert result.counts.to_dict() == {"best": 1} and result.weights.to_dict() == {"best": 1.0}
    assert len(result.history) == 1 and result.stopped == "no improvement"
    threshold, f1 = best_global_threshold(y, perfect)
    assert (result.threshold, result.val_f1) == (threshold, f1)
    # copies of the best model never change the mean: nothing to add either
    copies = greedy_selection({"m": probs["c"], "m_copy": probs["c"].copy()}, y)
    assert copies.counts.to_dict() == {"m": 1}
    assert greedy_selection(probs, y, max_steps=0).counts.to_dict() == {"a": 1}


def test_greedy_selection_is_deterministic_and_breaks_ties_by_name():
    y, probs = _complementary()
    reordered = {name: probs[name] for name in ("c", "b", "a")}
    first, again = greedy_selection(probs, y), greedy_selection(reordered, y)
    assert first.counts.to_dict() == again.counts.to_dict()
    pd.testing.assert_frame_equal(first.history, again.history)
    # a and b score the same alone (mirror images): the first pick is the one whose name sorts first
    twins = greedy_selection({"z": probs["a"], "y": probs["a"].copy()}, y)
    assert twins.counts.to_dict() == {"y": 1}
    # a fixed threshold is used as given
    fixed = greedy_selection(probs, y, threshold=0.5)
    assert (fixed.history["threshold"] == 0.5).all()


def test_greedy_selection_scores_at_the_best_global_threshold_exactly():
    rng = np.random.default_rng(11)
    for quantised in (False, True):
        y, p = _labelled_set(rng, 90, 0.3)
        p = np.round(p, 2) if quantised else p
        result = greedy_selection({"only": p}, y)
        assert (result.threshold, result.val_f1) == best_global_threshold(y, p)


def test_members_are_at_most_one_per_base_variant_its_best_stage():
    f1 = {"v0": 0.30, "v0-A": 0.40, "v0-B": 0.45, "v1-A": 0.42, "v1-C": 0.44, "v2": 0.20, "v2-C": 0.43}
    variants = {name: name.split("-")[0] for name in f1}
    assert select_models(f1, k=6) == ["v0-B", "v1-C", "v2-C", "v1-A", "v0-A", "v0"]  # successive stages
    assert select_models(f1, k=6, groups=variants) == ["v0-B", "v1-C", "v2-C"]
    assert select_models(f1, k=2, groups=variants) == ["v0-B", "v1-C"]
    assert select_models(f1, min_f1=0.435, groups=variants) == ["v0-B", "v1-C"]
    with pytest.raises(ValueError, match="no group given for model"):
        select_models(f1, k=2, groups={"v0": 0})


def test_the_original_position_shift_places_the_shift_as_the_original_did():
    # the original's own models (0.42-0.47) give its own shift, 0.34
    assert original_position_shift([0.42, 0.45, 0.47]) == pytest.approx(0.34)
    # members at 0.25-0.30: 1.6 spans of 0.05 below the lowest; the weights keep the original's ratio
    shift = original_position_shift({"a": 0.25, "b": 0.28, "c": 0.30})
    assert shift == pytest.approx(0.25 - 1.6 * 0.05)
    assert (0.30 - shift) / (0.25 - shift) == pytest.approx((0.47 - 0.34) / (0.42 - 0.34))
    # degenerate: equal scores (weights = F1, equal) and a spread that would put the shift below 0
    assert original_position_shift([0.3, 0.3]) == 0.0
    assert original_position_shift([0.10, 0.40]) == 0.0


def test_choose_weights_with_the_original_position_uses_that_shift():
    rng = np.random.default_rng(12)
    f1 = {"a": 0.31, "b": 0.335, "c": 0.355, "d": 0.37}
    y_val, val, _, _ = _models(rng, f1, n=60)
    position = original_position_shift(f1)
    sweep = shift_sweep(val, f1, y_val, shifts=np.union1d(DEFAULT_SHIFTS, [position]), threshold="fit")
    choice = choose_weights(f1, sweep, "original")
    assert choice.shift == pytest.approx(position) and choice.note == ""
    assert choice.members == ["a", "b", "c", "d"]
    np.testing.assert_allclose(choice.weights.to_numpy(), np.array(list(f1.values())) - position)
    assert choice.threshold == sweep.set_index("shift").loc[position, "threshold"]


def test_the_validation_winner_and_its_margin_over_the_runner_up():
    winner = validation_winner({"v1-C": 0.369, "weighted": 0.360, "greedy": 0.365, "equal": np.nan})
    assert (winner.name, winner.runner_up) == ("v1-C", "greedy")
    assert winner.margin == pytest.approx(0.004)
    tie = validation_winner({"single": 0.4, "weighted": 0.4})
    assert tie.name == "single" and tie.margin == 0.0  # a tie goes to the earlier (the simpler)
    alone = validation_winner({"only": 0.3})
    assert alone.runner_up is None and alone.margin is None


def _comparison(val: dict[str, float]) -> tuple[pd.DataFrame, dict]:
    """A hand-made comparison: singles m0-m2, then the three ensembles (roles as the study writes them)."""
    from hpa_utils.studies.ensemble import CHOSEN, ENSEMBLE_NAMES, EQUAL_ALL, GREEDY

    ensembles = {
        ENSEMBLE_NAMES[CHOSEN]: {"m0": 0.1, "m1": 0.05},
        ENSEMBLE_NAMES[GREEDY]: {"m0": 0.5, "m2": 0.5},
        ENSEMBLE_NAMES[EQUAL_ALL]: {"m0": 1.0, "m1": 1.0, "m2": 1.0},
    }
    names = ["m0", "m1", "m2", *ensembles]
    roles = ["single"] * 3 + [CHOSEN, GREEDY, EQUAL_ALL]
    table = pd.DataFrame(
        {
            "name": names,
            "kind": ["single"] * 3 + ["ensemble"] * 3,
            "role": roles,
            "n_models": [1, 1, 1, 2, 2, 3],
            "threshold": [0.2, 0.3, 0.25, 0.2, 0.15, 0.1],
            "val_f1": [val.get(n, 0.1) for n in names],
            "public_f1": [0.5] * 6,
        }
    )
    return table, ensembles


@pytest.mark.parametrize(
    ("scores", "winner", "runner_up"),
    [
        ({"m0": 0.369, "m1": 0.30, "weighted (chosen)": 0.360, "greedy forward selection": 0.365}, "m0", "greedy"),
        ({"m0": 0.30, "weighted (chosen)": 0.31, "greedy forward selection": 0.35}, "greedy", "chosen"),
        ({"m0": 0.30, "weighted (chosen)": 0.33, "equal weights (all models)": 0.32}, "chosen", "equal_all"),
    ],
)
def test_the_submission_is_the_validation_winner(scores, winner, runner_up):
    from hpa_utils.reporting.facts import _submission_facts
    from hpa_utils.studies.ensemble import _submitted_summary, _validation_winner

    table, ensembles = _comparison(scores)
    chosen = _validation_winner(table, ensembles)
    table["submitted"] = table["name"] == chosen.name
    summary = _submitted_summary(table, chosen)
    assert summary["role"] == (winner if winner != "m0" else "single")
    assert summary["runner_up_role"] == runner_up
    best_val = max(v for n, v in zip(table["name"], table["val_f1"]))
    assert summary["val_f1"] == best_val
    assert summary["val_f1"] - summary["runner_up_val_f1"] == pytest.approx(chosen.margin)
    entries = leaderboard_entries(table, ensembles, chosen.name)
    assert entries[0][0] == "submission" and entries[0][1] == chosen.name
    assert "submitted: best on validation" in entries[0][2]
    assert len({e[1] for e in entries}) == len(entries) == 4  # the three ensembles and the best single, once each
    # the report's facts say the same, from the stored table alone
    facts = _submission_facts(table, None)
    assert facts["recorded"] and facts["name"] == chosen.name
    assert facts["runner_up"]["role"] == runner_up and facts["margin"] == pytest.approx(chosen.margin)


def test_an_ensemble_that_is_the_best_single_model_is_not_its_runner_up():
    from hpa_utils.studies.ensemble import CHOSEN, ENSEMBLE_NAMES, GREEDY, _validation_winner

    table, ensembles = _comparison({"m0": 0.40, "weighted (chosen)": 0.38, "greedy forward selection": 0.40})
    ensembles[ENSEMBLE_NAMES[GREEDY]] = {"m0": 1.0}  # greedy kept the best single model alone
    chosen = _validation_winner(table, ensembles)
    assert chosen.name == "m0" and chosen.runner_up == ENSEMBLE_NAMES[CHOSEN]
    assert chosen.margin == pytest.approx(0.02)


def test_facts_of_an_older_run_say_what_validation_would_choose_and_what_was_written():
    from hpa_utils.reporting.facts import _submission_facts

    table, _ = _comparison({"m0": 0.369, "weighted (chosen)": 0.360, "equal weights (all models)": 0.328})
    older = table[table["role"] != "greedy"]  # no greedy row, no submitted column
    facts = _submission_facts(older, None)
    assert not facts["recorded"] and facts["name"] == "m0" and facts["role"] == "single"
    assert facts["runner_up"]["role"] == "chosen" and facts["margin"] == pytest.approx(0.009)
    assert facts["written"]["role"] == "chosen"


def test_a_replicate_takes_one_member_per_variant_and_submits_the_validation_winner():
    import types

    from hpa_utils.config.run_config import EnsembleConfig
    from hpa_utils.studies.ensemble import _replicate

    rng = np.random.default_rng(13)
    y = {name: _labelled_set(rng, n, 0.1)[0] for name, n in (("val", 150), ("public", 80), ("private", 80))}
    probs, variants = {name: {} for name in y}, {}
    for variant in range(3):
        for stage, noise in (("", 0.45), ("-A", 0.35), ("-B", 0.3)):
            model = f"v{variant}{stage}"
            variants[model] = variant
            for name, labels in y.items():
                probs[name][model] = np.clip(0.25 + 0.5 * labels + rng.normal(0, noise, labels.shape), 0, 1)
    models = list(variants)
    val_f1 = model_f1_scores(probs["val"], y["val"])
    for shift in ("fit", 0.1, "original"):
        # "original" is not (yet) a value of the configuration's Literal: the study's code path reads it as is
        settings = types.SimpleNamespace(**{**vars(EnsembleConfig(top_k=6)), "shift": shift})
        config = types.SimpleNamespace(ensemble=settings, seed=0)
        result = _replicate(config, 0, models, probs, y, val_f1, variants)
        members = result["members"]
        assert sorted(members["variant"]) == [0, 1, 2]  # one per variant: its best stage
        comparison = result["comparison"]
        fitted = comparison[comparison["role"] == "single"].set_index("name")["val_f1"]
        for _, row in members.iterrows():
            same_variant = [m for m in models if variants[m] == row["variant"]]
            assert row["val_f1"] == fitted[same_variant].max()
        assert set(comparison["role"]) == {"single", "chosen", "greedy", "equal_all"}
        assert comparison["submitted"].sum() == 1
        submitted = comparison[comparison["submitted"]].iloc[0]
        assert submitted["val_f1"] == comparison["val_f1"].max()
        if shift == "original":
            assert result["choice"].shift == original_position_shift(val_f1[list(members["model"])])
        assert result["replicate"].fitted_val_f1 == dict(fitted)


def test_the_ensembles_best_member_is_chosen_at_its_own_threshold_as_the_best_single_model_is():
    from hpa_utils.studies import findings

    rng = np.random.default_rng(14)
    y, _ = _labelled_set(rng, 200, 0.1)
    probs = {m: np.clip(0.25 + 0.5 * y + rng.normal(0, noise, y.shape), 0, 1) for m, noise in (("a", 0.3), ("b", 0.2))}
    thresholds = {m: best_global_threshold(y, p)[0] for m, p in probs.items()}
    fitted = {m: best_global_threshold(y, p)[1] for m, p in probs.items()}
    assert fitted["b"] > fitted["a"]
    sweep = pd.DataFrame({"shift": [0.0], "n_models": [2], "threshold": [0.3]})
    replicate = findings.Replicate(
        seed=0,
        weights={"a": 0.6, "b": 0.4},
        threshold=0.3,
        member_thresholds=thresholds,
        member_val_f1={"a": 0.5, "b": 0.4},  # at 0.5 "a" looks better: the weights' F1 does not choose it
        chosen_f1=pd.Series({"a": 0.5, "b": 0.4}),
        sweep=sweep,
        equal=({"a": 1.0, "b": 1.0}, 0.3),
        fitted_val_f1=fitted,
    )
    sets, labels = {"val": probs, "public": probs}, {"val": y, "public": y}
    result = findings.ensemble_beats_members(sets, labels, [replicate])
    assert result.numbers["best_member"] == "b"
    older = dataclasses.replace(replicate, fitted_val_f1={})  # a replicate without it: the weights' F1
    assert findings.ensemble_beats_members(sets, labels, [older]).numbers["best_member"] == "a"
