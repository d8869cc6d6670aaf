"""What the course report's sentences state, each number computed from one run's results.

:func:`report_facts` turns what :func:`hpa_utils.reporting.results.load_results` read into the numbers the
prose states (best single model, ensemble gain, best shift, threshold overfitting...); each ``_..._facts``
helper covers one result file and gives None where that file is missing or lacks the columns it needs.
"""

from __future__ import annotations

import pandas as pd

from hpa_utils.config.stages import BASE, CONTROL, STAGE_ORDER, stage_rank
from hpa_utils.reporting.results import ORIGINAL_REPORT, has_columns, to_number
from hpa_utils.studies.ensemble import CHOSEN, EQUAL_ALL, SINGLE, SUBMISSION_CANDIDATES


def _row_at(df: pd.DataFrame, column: str, value: float) -> pd.Series | None:
    hits = df[(df[column] - value).abs() < 1e-6]
    return None if hits.empty else hits.iloc[0]


def _model_facts(models: pd.DataFrame | None) -> dict | None:
    if not has_columns(models, "model", "stage", "val_macro_f1"):
        return None
    df = models.assign(stage=models["stage"].astype(str)).dropna(subset=["val_macro_f1"])
    controls, df = df[df["stage"] == CONTROL.name], df[df["stage"] != CONTROL.name]  # Finding 2's, not candidates
    if df.empty:
        return None
    best = df.loc[df["val_macro_f1"].idxmax()]
    base, tuned = df[df["stage"] == BASE], df[df["stage"] != BASE]
    improved = compared = 0
    if "variant" in df.columns:  # each base model: a variant, with a training seed when the run has several
        keys = ["seed", "variant"] if "seed" in df.columns and df["seed"].notna().all() else ["variant"]
        for _, group in df.groupby(keys):
            group = group[group["stage"].isin(STAGE_ORDER)]  # the table's stages only, in its order
            group = group.sort_values("stage", key=lambda stages: stages.map(stage_rank))
            if len(group) >= 2 and group["stage"].iloc[0] == BASE:
                compared += 1
                improved += bool(group["val_macro_f1"].iloc[-1] > group["val_macro_f1"].iloc[0])
    stages = [
        {"stage": stage, "count": len(g), "mean": g["val_macro_f1"].mean(), "max": g["val_macro_f1"].max()}
        for stage, g in sorted(df.groupby("stage"), key=lambda kv: stage_rank(kv[0]))
    ]

    def span(frame):
        return None if frame.empty else (frame["val_macro_f1"].min(), frame["val_macro_f1"].max())

    return {
        "n": len(df),
        "n_base": len(base),
        "n_tuned": len(tuned),
        "n_control": len(controls),
        "best_name": str(best["model"]),
        "best_stage": str(best["stage"]),
        "best_f1": float(best["val_macro_f1"]),
        "best_variant_name": str(best.get("variant_name", "")) if pd.notna(best.get("variant_name")) else "",
        "base_span": span(base),
        "tuned_span": span(tuned),
        "improved": improved,
        "compared": compared,
        "stages": stages,
        "train_seconds": (
            to_number(pd.concat([df, controls])["train_seconds"].sum()) if "train_seconds" in df.columns else None
        ),
    }


def _comparison_facts(comparison: pd.DataFrame | None) -> dict | None:
    if not has_columns(comparison, "name", "role", "val_f1"):
        return None
    singles = comparison[comparison["role"] == SINGLE].dropna(subset=["val_f1"])
    ensembles = comparison[comparison["role"] != SINGLE].dropna(subset=["val_f1"])
    if singles.empty or ensembles.empty:
        return None
    best = singles.loc[singles["val_f1"].idxmax()]
    rows = [
        {
            "name": str(r["name"]),
            "role": str(r["role"]),
            "n_models": to_number(r.get("n_models")),
            "val": float(r["val_f1"]),
            "gain": float(r["val_f1"] - best["val_f1"]),
            "public": to_number(r.get("public_f1")),
            "private": to_number(r.get("private_f1")),
        }
        for _, r in ensembles.iterrows()
    ]
    equal = [r for r in rows if r["role"] == EQUAL_ALL]
    return {
        "best_single": str(best["name"]),
        "best_single_val": float(best["val_f1"]),
        "best_single_public": to_number(best.get("public_f1")),
        "best_single_private": to_number(best.get("private_f1")),
        "ensembles": rows,
        "n_beat": sum(r["gain"] > 0 for r in rows),
        "best_ensemble": max(rows, key=lambda r: r["val"]),
        "equal_all": equal[0] if equal else None,
    }


def _best(rows: list) -> pd.Series:
    """The row with the best validation F1; a tie goes to the earlier (the simpler predictor)."""
    best = max(float(row["val_f1"]) for row in rows)
    return next(row for row in rows if float(row["val_f1"]) == best)


def _submission_facts(comparison: pd.DataFrame | None, summary) -> dict | None:
    """Which predictor the submission is, chosen on validation among the best single model and the ensembles
    (each at its own threshold), and its margin over the runner-up: every number from the stored comparison.

    A run that recorded its choice (``ensemble.json``'s ``submitted``, or the comparison's ``submitted``
    column) gives the winner and runner-up it chose; an older run gives the validation winner among its rows
    (``recorded`` False) and, in ``written``, the weighted ensemble its ``submission.csv`` holds (such runs
    submitted it whatever validation said). None without a comparison table.
    """
    if not has_columns(comparison, "name", "role", "val_f1"):
        return None
    df = comparison.dropna(subset=["val_f1"])
    singles = df[df["role"] == SINGLE]
    candidates = [] if singles.empty else [singles.loc[singles["val_f1"].idxmax()]]
    rank = {role: i for i, role in enumerate(SUBMISSION_CANDIDATES)}
    others = df[df["role"] != SINGLE]
    candidates += [row for _, row in sorted(others.iterrows(), key=lambda kv: rank.get(kv[1]["role"], len(rank)))]
    if not candidates:
        return None
    by_name = {str(row["name"]): row for row in candidates}
    stored = getattr(summary, "submitted", None) or {}
    marked = df.loc[df["submitted"].astype(str).str.lower().isin(["true", "1"]), "name"] if "submitted" in df else []
    if stored.get("name") in by_name:
        winner, recorded = by_name[stored["name"]], True
    elif len(marked) and str(marked.iloc[0]) in by_name:
        winner, recorded = by_name[str(marked.iloc[0])], True
    else:  # an older run: the validation winner
        winner, recorded = _best(candidates), False
    rest = [row for row in candidates if row["name"] != winner["name"]]
    runner = by_name.get(stored.get("runner_up")) if recorded and stored.get("runner_up") in by_name else None
    if runner is None and rest:
        runner = _best(rest)

    def describe(row) -> dict:
        return {
            "name": str(row["name"]),
            "role": str(row["role"]),
            "n_models": to_number(row.get("n_models")),
            "threshold": to_number(row.get("threshold")),
            "val": float(row["val_f1"]),
            "public": to_number(row.get("public_f1")),
            "private": to_number(row.get("private_f1")),
        }

    chosen = next((row for row in candidates if row["role"] == CHOSEN), None)
    return {
        **describe(winner),
        "recorded": recorded,
        "runner_up": describe(runner) if runner is not None else None,
        "margin": float(winner["val_f1"] - runner["val_f1"]) if runner is not None else None,
        "n_candidates": len(candidates),
        "written": describe(chosen) if not recorded and chosen is not None else None,
    }


def _greedy_facts(greedy: dict | None) -> dict | None:
    """The greedy ensemble as ``ensemble.json`` stores it, its members by weight (largest first)."""
    if not greedy or not greedy.get("weights"):
        return None
    counts = greedy.get("counts") or {}
    members = sorted(greedy["weights"].items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "members": [{"name": name, "weight": weight, "count": counts.get(name)} for name, weight in members],
        "picks": sum(counts.values()) if counts else None,
        "steps": greedy.get("steps"),
        "max_steps": greedy.get("max_steps"),
        "stopped": greedy.get("stopped"),
        "val": to_number(greedy.get("val_f1")),
        "threshold": to_number(greedy.get("threshold")),
    }


def _shift_facts(sweep: pd.DataFrame | None, used_shift: float | None) -> dict | None:
    if not has_columns(sweep, "shift", "val_f1"):
        return None
    df = sweep.dropna(subset=["val_f1"])
    if df.empty:
        return None
    best = df.loc[df["val_f1"].idxmax()]
    used = _row_at(df, "shift", used_shift) if used_shift is not None else None
    has_public = "public_f1" in df.columns and df["public_f1"].notna().any()
    low, high = (_row_at(df, "shift", s) for s in ORIGINAL_REPORT["shift_pair"])
    pair = None
    if low is not None and high is not None:
        pair = {}
        for key in ("val", "public", "private"):
            a, b = to_number(low.get(f"{key}_f1")), to_number(high.get(f"{key}_f1"))
            pair[key] = None if a is None or b is None else b - a  # moving from the lower to the higher shift
    best_public = df.loc[df["public_f1"].idxmax()] if has_public else None
    return {
        "n": len(df),
        "low": float(df["shift"].min()),
        "high": float(df["shift"].max()),
        "best_shift": float(best["shift"]),
        "best_val": float(best["val_f1"]),
        "used_shift": used_shift,
        "used_val": to_number(used["val_f1"]) if used is not None else None,
        "spread": float(df["val_f1"].max() - df["val_f1"].min()),
        "pair": pair,
        "best_public_shift": to_number(best_public["shift"]) if best_public is not None else None,
        "best_public": to_number(best_public["public_f1"]) if best_public is not None else None,
    }


def _threshold_facts(thresholds: pd.DataFrame | None) -> dict | None:
    if not has_columns(thresholds, "key", "method", "fit_f1", "holdout_f1"):
        return None
    df = thresholds.dropna(subset=["fit_f1", "holdout_f1"]).copy()
    if df.empty:
        return None
    if "gap" not in df.columns or df["gap"].isna().any():
        df["gap"] = df["fit_f1"] - df["holdout_f1"]
    per_class = df[df["key"] == "per_class"]
    others = df.drop(per_class.index)
    best = df.loc[df["holdout_f1"].idxmax()]
    held_out = sorted(map(str, df["held_out"].dropna().unique())) if "held_out" in df.columns else []
    facts = {
        "held_out": ", ".join(held_out),
        "best_method": str(best["method"]),
        "best_holdout": float(best["holdout_f1"]),
        "per_class": None,
        "max_other_gap": to_number(others["gap"].max()) if not others.empty else None,
    }
    if not per_class.empty:
        row = per_class.iloc[0]
        gap = float(row["gap"])
        other = facts["max_other_gap"]
        facts["per_class"] = {
            "method": str(row["method"]),
            "fit": float(row["fit_f1"]),
            "holdout": float(row["holdout_f1"]),
            "gap": gap,
            "overfit": gap > 0 and (other is None or gap > other),
        }
    return facts


def _class_facts(counts: pd.DataFrame | None) -> dict | None:
    if not has_columns(counts, "class_name", "count"):
        return None
    present = counts[counts["count"] > 0]
    facts = {
        "n_classes": len(counts),
        "n_present": len(present),
        "total": int(counts["count"].sum()),
        "absent": list(counts.loc[counts["count"] <= 0, "class_name"].astype(str)),
        "rarest": None,
        "commonest": None,
        "kaggle_rarest": None,
    }
    if not present.empty:
        rare, common = present.loc[present["count"].idxmin()], present.loc[present["count"].idxmax()]
        facts["rarest"] = {"name": str(rare["class_name"]), "count": int(rare["count"])}
        facts["commonest"] = {"name": str(common["class_name"]), "count": int(common["count"])}
    if "kaggle_count" in counts.columns and counts["kaggle_count"].notna().any():
        rare = counts.loc[counts["kaggle_count"].idxmin()]
        facts["kaggle_rarest"] = {"name": str(rare["class_name"]), "count": int(rare["kaggle_count"])}
    return facts


def _has_scores(table: pd.DataFrame | None) -> bool:
    """Whether a table holds at least one public or private score."""
    columns = [c for c in ("public_f1", "private_f1") if table is not None and c in table.columns]
    return bool(columns) and bool(table[columns].notna().any().any())


def report_facts(results: dict) -> dict:
    """The numbers the report's sentences state, each computed from ``results``; None where unavailable."""
    run = results.get("run") or {}
    summary = results.get("ensemble")  # EnsembleSummary or None
    models = _model_facts(results.get("models"))
    ens = None
    if summary is not None:
        weights = {name: to_number(w) or 0.0 for name, w in (summary.weights or {}).items()}
        ens = {
            "members": [name for name, w in weights.items() if w > 0],
            "shift_note": summary.shift_note or "",
            "original_shift": summary.original_shift,
            "scoring_rule": summary.scoring_rule,
            "per_class_vs_global": summary.per_class_vs_global,
            "selected": list(summary.selected or []),
            "n_selected": len(summary.selected or []),
            "n_positive": sum(1 for w in weights.values() if w > 0),
            "shift": to_number(summary.shift),
            "threshold": to_number(summary.threshold),
            "threshold_method": summary.threshold_method or None,
            "shift_setting": summary.shift_setting,
            "equal_weights": len(set(weights.values())) == 1,
            "val": to_number(summary.val_f1),
            "public": to_number(summary.public_f1),
            "private": to_number(summary.private_f1),
            "member_rule": summary.member_rule,
            "original_position": summary.original_position,
            "greedy": _greedy_facts(summary.greedy),
        }
    comparison = _comparison_facts(results.get("ensemble_comparison"))
    submission = _submission_facts(results.get("ensemble_comparison"), summary)
    gain = None
    if comparison:  # the run's ensemble: the chosen one, else the first one
        rows = comparison["ensembles"]
        best = ([r for r in rows if r["role"] == CHOSEN] or rows)[0]
        gain = {
            "ensemble": best["name"],
            "ensemble_f1": best["val"],
            "single": comparison["best_single"],
            "single_f1": comparison["best_single_val"],
            "delta": best["gain"],
            "same_threshold": True,
        }
    elif ens and ens["val"] is not None and models:
        gain = {
            "ensemble": "the selected ensemble",
            "ensemble_f1": ens["val"],
            "single": models["best_name"],
            "single_f1": models["best_f1"],
            "delta": ens["val"] - models["best_f1"],
            "same_threshold": False,
        }
    return {
        "dataset": run.get("dataset") or {},
        "params": flat_config(results.get("config") or run.get("config") or {}),
        "synthetic": (run.get("dataset") or {}).get("kind") == "synthetic",
        "classes": _class_facts(results.get("class_counts")),
        "models": models,
        "ensemble": ens,
        "comparison": comparison,
        "submission": submission,
        "gain": gain,
        "shift": _shift_facts(results.get("shift_sweep"), ens["shift"] if ens else None),
        "thresholds": _threshold_facts(results.get("thresholds")),
        "leaderboard_scores": _has_scores(results.get("leaderboard")),
        "findings": _findings_facts(results.get("findings")),
        "n_resamples": _n_resamples(summary),
        "beyond": _beyond_facts(results.get("beyond"), results.get("beyond_pointing"), results.get("config") or {}),
    }


#: How the report names the sets notebook 05 scores on.
BEYOND_SETS = {"val": "validation", "public": "public", "private": "private", "test": "held-out test"}


def _beyond_facts(summary, pointing: pd.DataFrame | None, config: dict) -> dict | None:
    """Notebook 05's ablation and Grad-CAM, as the report states them; None when the run did not run it
    (``beyond.run`` false: a stale file of an earlier run is not reported)."""
    if summary is None or not (config.get("beyond") or {}).get("run", False):
        return None
    rows = [dict(row) for row in summary.rows or []]
    baseline = next((row for row in rows if row.get("key") == "baseline"), None)
    techniques = [row for row in rows if row.get("key") != "baseline"]
    verdict_set = summary.verdict_set or "val"
    by_verdict = {v: [row["technique"] for row in techniques if row.get("verdict") == v] for v in ("helps", "hurts")}
    by_verdict["unclear"] = [row["technique"] for row in techniques if row.get("verdict") not in ("helps", "hurts")]
    best = max(techniques, key=lambda row: to_number(row.get(f"{verdict_set}_f1")) or -1.0, default=None)
    point = None
    if summary.pointing:
        point = dict(summary.pointing)
        point["lift"] = point["mass_on_pattern"] / point["pattern_share"] if point.get("pattern_share") else None
    classes = None
    if has_columns(pointing, "name", "val_f1"):
        names = dict(zip(pointing["class"], pointing["name"]))
        classes = {
            "best": [f"{c} {names.get(c, '')}".strip() for c in summary.gradcam_best or []],
            "worst": [f"{c} {names.get(c, '')}".strip() for c in summary.gradcam_worst or []],
        }
        if "lift" in pointing.columns:
            scored = pointing.dropna(subset=["lift"])
            scored = scored[scored["maps"] >= 5] if "maps" in scored.columns else scored
            if not scored.empty:
                top, low = scored.loc[scored["lift"].idxmax()], scored.loc[scored["lift"].idxmin()]
                classes["top_lift"] = {"name": top["name"], "lift": float(top["lift"]), "maps": int(top["maps"])}
                classes["low_lift"] = {"name": low["name"], "lift": float(low["lift"]), "maps": int(low["maps"])}
    return {
        "rows": rows,
        "baseline": baseline,
        "techniques": techniques,
        "sets": [s for s in BEYOND_SETS if f"{s}_f1" in (baseline or {})],
        "set_names": BEYOND_SETS,
        "verdict_set": verdict_set,
        "verdict_set_name": BEYOND_SETS.get(verdict_set, verdict_set),
        "n_verdict": (summary.sets or {}).get(verdict_set),
        "verdicts": by_verdict,
        "longer": [
            row
            for row in techniques
            if baseline
            and to_number(row.get("images_per_epoch"))
            and to_number(baseline.get("images_per_epoch"))
            and row["images_per_epoch"] > baseline["images_per_epoch"]
        ],
        "best": best,
        "variant": summary.variant,
        "model": summary.gradcam_model,
        "layer": summary.gradcam_layer,
        "backend": summary.backend,
        "pointing": point,
        "classes": classes,
    }


def _n_resamples(summary) -> int | None:
    """The bootstrap's resamples per interval, as the ensemble study recorded them with its paired interval of
    per-class against global thresholds (the findings' intervals, from the same study, use the same count)."""
    interval = summary.per_class_vs_global if summary is not None else None
    number = to_number(interval.get("n_resamples")) if isinstance(interval, dict) else None
    return None if number is None else int(number)


def _findings_facts(raw: dict | None) -> dict | None:
    """The re-tested findings (``results/findings.json``) and how many of each verdict."""
    findings = (raw or {}).get("findings")
    if not findings:
        return None
    findings = [{"deciding": [], **finding} for finding in findings]  # a run before the deciding numbers
    by_key = {f["key"]: f for f in findings}
    counts = {}
    for finding in findings:
        counts[finding["verdict"]] = counts.get(finding["verdict"], 0) + 1
    return {"list": findings, "by_key": by_key, "counts": counts}


def flat_config(config: dict, prefix: str = "") -> dict:
    """A run's nested configuration as dotted keys (``{"train": {"batch_size": 16}}`` -> ``train.batch_size``)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def pointing_facts(summary, pointing: pd.DataFrame | None) -> dict | None:
    """The pointing game against its baselines, as the report states it: None for a run that stored no
    baselines (``results/beyond.json`` of an older run, or real data).

    ``rows``: per map (Grad-CAM, uniform, cell stains, green channel, as stored), its name, lift, peak-on-pattern
    rate and the chance level of the peak; ``lift`` and ``peak``: the paired intervals of Grad-CAM minus the
    cell-stain map; ``verdict``: as the study read it from the lift interval; ``best`` and ``worst``: the first
    class of each shown (chosen by the study's pointing score) with its row of ``results/beyond_pointing.csv``.
    """
    point = getattr(summary, "pointing", None) or {}
    baselines = point.get("baselines")
    vs = point.get("vs_cellstain") or {}
    if not baselines or not vs.get("lift") or not point.get("verdict"):
        return None
    names = point.get("names") or {}
    chance = to_number(point.get("peak_chance"))
    rows = [
        {
            "key": key,
            "name": names.get(key, key),
            "lift": to_number(values.get("lift")),
            "peak": to_number(values.get("peak")),
            "chance": chance,
        }
        for key, values in baselines.items()
    ]

    def class_row(classes) -> dict | None:
        if not classes or not has_columns(pointing, "class", "name", "lift", "lift_cellstain", "lift_vs_cellstain"):
            return None
        hits = pointing[pointing["class"] == classes[0]].dropna(subset=["lift_vs_cellstain"])
        if hits.empty:
            return None
        row = hits.iloc[0]
        return {
            "name": str(row["name"]),
            "score": float(row["lift_vs_cellstain"]),
            "lift": float(row["lift"]),
            "lift_cellstain": float(row["lift_cellstain"]),
            "maps": int(row["maps"]) if "maps" in row.index else None,
        }

    return {
        "rows": rows,
        "maps": point.get("maps"),
        "threshold": to_number(point.get("threshold")),
        "lift": vs["lift"],
        "peak": vs.get("peak"),
        "verdict": point["verdict"],
        "verdict_peak": point.get("verdict_peak"),
        "shown_by_score": point.get("shown_by") == "pointing score",
        "shown_from": point.get("shown_from"),
        "best": class_row(getattr(summary, "gradcam_best", None)),
        "worst": class_row(getattr(summary, "gradcam_worst", None)),
    }
