"""The course report, rebuilt from one run's result files.

:func:`load_results` reads what the notebooks wrote under a run's output directory (``results/*.csv``,
``results/*.json``, ``figures/*.png``); :func:`report_facts` turns it into the numbers the prose states
(best single model, ensemble gain, best shift, threshold overfitting...); :func:`render_report` writes one
self-contained HTML page (figures as base64 data URIs, inline CSS, no external resource) from the Jinja2
template ``templates/report.html.j2``. No number of this run is typed in: the only literals are the
original report's own figures (:data:`ORIGINAL_REPORT`), shown as citations. Any result file may be
missing (no public/private scores on real Kaggle data, a run stopped early): its place in the report says
"Not available in this run" instead.

:func:`render_pdf`, :func:`screenshot` and :func:`dump_dom` drive headless Chromium (Debian's
``chromium`` package).
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from hpa_utils.data.labels import N_TRAIN_KAGGLE
from hpa_utils.io import write_atomic

TEMPLATES_DIR = Path(__file__).parent / "templates"

#: Result tables, by key: path relative to the run's output directory.
TABLE_FILES = {
    "class_counts": "results/class_counts.csv",
    "model_table": "results/model_table.csv",
    "variants": "results/variants.csv",
    "models": "results/models.csv",
    "shift_sweep": "results/shift_sweep.csv",
    "ensemble_comparison": "results/ensemble_comparison.csv",
    "thresholds": "results/thresholds.csv",
    "leaderboard": "results/leaderboard.csv",
}
JSON_FILES = {
    "run": "results/run.json",
    "model_totals": "results/model_table.json",
    "ensemble": "results/ensemble.json",
}
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp")

#: The report's figures in the order they appear, with their alt text. Figures the run wrote beyond these
#: are shown at the end of the Experiments section.
FIGURES = {
    "eda_class_counts": "Bar chart: training images per class in this dataset and in Kaggle's training set",
    "eda_labels_per_image": "Bar chart: how many images carry 1, 2, 3... labels",
    "eda_cooccurrence": "Heat map: how often two classes are labelled on the same image",
    "eda_montage_rgb": "Sample images as RGB composites with their labels",
    "eda_montage_channels": "One sample shown channel by channel: microtubules, protein, nucleus, ER",
    "eda_channel_stats": "Distribution of per-image mean intensity for each of the four channels",
    "eda_split_balance": "Per-class counts in the training and validation parts of the split",
    "fig1_base_models": "Training curves of the base models: loss and macro F1, training and validation",
    "base_val_f1": "Validation macro F1 of each base model",
    "fig2_stage_A": "Training curves of fine-tuning stage A (CNN part re-trained)",
    "fig3_stage_B": "Training curves of fine-tuning stage B (dense head re-trained)",
    "fig4_stage_C": "Training curves of fine-tuning stage C (dense head re-trained further)",
    "models_val_f1": "Validation macro F1 of every trained model, by base model and stage",
    "ensemble_shift_sweep": "Ensemble macro F1 as a function of the weight shift",
    "ensemble_comparison": "Macro F1 of single models and ensembles",
    "thresholds": "Macro F1 of threshold choices on the fit half and on the hold-out half",
    "per_class_f1": "F1 per class of the final ensemble",
}

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

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)
STAGE_ORDER = {"base": 0, "A": 1, "B": 2, "C": 3}


# --------------------------------------------------------------------------- reading a run


def load_results(output_dir: str | os.PathLike) -> dict:
    """Everything a run wrote that the report uses; what is absent is None (tables, dicts) or left out.

    Returns:
        dict with ``output_dir``; one DataFrame or None per key of :data:`TABLE_FILES`; one dict or None per
        key of :data:`JSON_FILES`; ``figures`` (stem -> path of every image under ``figures/``);
        ``submission`` (path or None); ``missing`` (relative paths not found) and ``errors`` (relative path
        -> why it could not be read).
    """
    out = Path(output_dir)
    results: dict = {"output_dir": out, "missing": [], "errors": {}}
    readers = [(key, rel, pd.read_csv) for key, rel in TABLE_FILES.items()]
    readers += [(key, rel, lambda p: json.loads(Path(p).read_text())) for key, rel in JSON_FILES.items()]
    for key, rel, read in readers:
        results[key] = None
        path = out / rel
        if not path.is_file():
            results["missing"].append(rel)
            continue
        try:
            value = read(path)
        except (
            ValueError,
            OSError,
            pd.errors.ParserError,
        ) as exc:  # JSONDecodeError, EmptyDataError: ValueError
            results["errors"][rel] = f"{type(exc).__name__}: {exc}"
            continue
        if rel.endswith(".json") and not isinstance(value, dict):
            results["errors"][rel] = "not a JSON object"
            continue
        results[key] = value
    figures_dir = out / "figures"
    results["figures"] = (
        {
            p.stem: p
            for p in sorted(figures_dir.glob("*"))
            if p.suffix.lower() in FIGURE_SUFFIXES and p.is_file()
        }
        if figures_dir.is_dir()
        else {}
    )
    submission = out / "submission.csv"
    results["submission"] = submission if submission.is_file() else None
    return results


def _num(value) -> float | None:
    """A finite float, or None (for None, NaN, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _has(df: pd.DataFrame | None, *columns: str) -> bool:
    return df is not None and not df.empty and all(c in df.columns for c in columns)


def _row_at(df: pd.DataFrame, column: str, value: float) -> pd.Series | None:
    hits = df[(df[column] - value).abs() < 1e-6]
    return None if hits.empty else hits.iloc[0]


def _model_facts(models: pd.DataFrame | None) -> dict | None:
    if not _has(models, "model", "stage", "val_macro_f1"):
        return None
    df = models.assign(stage=models["stage"].astype(str)).dropna(subset=["val_macro_f1"])
    if df.empty:
        return None
    best = df.loc[df["val_macro_f1"].idxmax()]
    base, tuned = df[df["stage"] == "base"], df[df["stage"] != "base"]
    improved = compared = 0
    if "variant" in df.columns:
        for _, group in df.groupby("variant"):
            group = group.assign(order=group["stage"].map(STAGE_ORDER)).dropna(subset=["order"])
            group = group.sort_values("order")
            if len(group) >= 2 and group["order"].iloc[0] == 0:
                compared += 1
                improved += bool(group["val_macro_f1"].iloc[-1] > group["val_macro_f1"].iloc[0])
    stages = [
        {"stage": stage, "count": len(g), "mean": g["val_macro_f1"].mean(), "max": g["val_macro_f1"].max()}
        for stage, g in sorted(df.groupby("stage"), key=lambda kv: STAGE_ORDER.get(kv[0], 9))
    ]

    def span(frame):
        return None if frame.empty else (frame["val_macro_f1"].min(), frame["val_macro_f1"].max())

    return {
        "n": len(df),
        "n_base": len(base),
        "n_tuned": len(tuned),
        "best_name": str(best["model"]),
        "best_stage": str(best["stage"]),
        "best_f1": float(best["val_macro_f1"]),
        "best_variant_name": str(best.get("variant_name", "")) if pd.notna(best.get("variant_name")) else "",
        "base_span": span(base),
        "tuned_span": span(tuned),
        "improved": improved,
        "compared": compared,
        "stages": stages,
        "base_epochs": _num(base["epochs"].max()) if "epochs" in df.columns and not base.empty else None,
        "train_seconds": _num(df["train_seconds"].sum()) if "train_seconds" in df.columns else None,
    }


def _comparison_facts(comparison: pd.DataFrame | None, n_models: int | None) -> dict | None:
    if not _has(comparison, "name", "kind", "val_f1"):
        return None
    kind = comparison["kind"].astype(str).str.lower()
    singles = comparison[kind != "ensemble"].dropna(subset=["val_f1"])
    ensembles = comparison[kind == "ensemble"].dropna(subset=["val_f1"])
    if singles.empty or ensembles.empty:
        return None
    best = singles.loc[singles["val_f1"].idxmax()]
    rows = [
        {
            "name": str(r["name"]),
            "n_models": _num(r.get("n_models")),
            "val": float(r["val_f1"]),
            "gain": float(r["val_f1"] - best["val_f1"]),
            "public": _num(r.get("public_f1")),
            "private": _num(r.get("private_f1")),
        }
        for _, r in ensembles.iterrows()
    ]
    equal = [r for r in rows if "equal" in r["name"].lower()] or [
        r for r in rows if n_models and r["n_models"] == n_models
    ]
    return {
        "best_single": str(best["name"]),
        "best_single_val": float(best["val_f1"]),
        "best_single_public": _num(best.get("public_f1")),
        "best_single_private": _num(best.get("private_f1")),
        "ensembles": rows,
        "n_beat": sum(r["gain"] > 0 for r in rows),
        "best_ensemble": max(rows, key=lambda r: r["val"]),
        "equal_all": equal[0] if equal else None,
    }


def _shift_facts(sweep: pd.DataFrame | None, used_shift: float | None) -> dict | None:
    if not _has(sweep, "shift", "val_f1"):
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
            a, b = _num(low.get(f"{key}_f1")), _num(high.get(f"{key}_f1"))
            pair[key] = None if a is None or b is None else b - a  # moving from the lower to the higher shift
    best_public = df.loc[df["public_f1"].idxmax()] if has_public else None
    return {
        "n": len(df),
        "low": float(df["shift"].min()),
        "high": float(df["shift"].max()),
        "best_shift": float(best["shift"]),
        "best_val": float(best["val_f1"]),
        "used_shift": used_shift,
        "used_val": _num(used["val_f1"]) if used is not None else None,
        "spread": float(df["val_f1"].max() - df["val_f1"].min()),
        "pair": pair,
        "best_public_shift": _num(best_public["shift"]) if best_public is not None else None,
        "best_public": _num(best_public["public_f1"]) if best_public is not None else None,
    }


def _threshold_facts(thresholds: pd.DataFrame | None) -> dict | None:
    if not _has(thresholds, "method", "fit_f1", "holdout_f1"):
        return None
    df = thresholds.dropna(subset=["fit_f1", "holdout_f1"]).copy()
    if df.empty:
        return None
    if "gap" not in df.columns or df["gap"].isna().any():
        df["gap"] = df["fit_f1"] - df["holdout_f1"]
    method = df["method"].astype(str).str.lower()
    per_class = df[method.str.contains("per") & method.str.contains("class")]
    others = df.drop(per_class.index)
    best = df.loc[df["holdout_f1"].idxmax()]
    held_out = sorted(map(str, df["held_out"].dropna().unique())) if "held_out" in df.columns else []
    facts = {
        "held_out": ", ".join(held_out),
        "best_method": str(best["method"]),
        "best_holdout": float(best["holdout_f1"]),
        "per_class": None,
        "max_other_gap": _num(others["gap"].max()) if not others.empty else None,
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
    if not _has(counts, "class_name", "count"):
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
    ensemble = results.get("ensemble")
    models = _model_facts(results.get("models"))
    ens = None
    if ensemble:
        selected = list(ensemble.get("selected") or [])
        ens = {
            "selected": selected,
            "n_selected": len(selected),
            "n_positive": sum(1 for w in (ensemble.get("weights") or {}).values() if (_num(w) or 0) > 0),
            "shift": _num(ensemble.get("shift")),
            "threshold": _num(ensemble.get("threshold")),
            "threshold_method": ensemble.get("threshold_method") or None,
            "shift_setting": ensemble.get("shift_setting"),
            "equal_weights": len({_num(w) for w in (ensemble.get("weights") or {}).values()}) == 1,
            "val": _num(ensemble.get("val_f1")),
            "public": _num(ensemble.get("public_f1")),
            "private": _num(ensemble.get("private_f1")),
        }
    comparison = _comparison_facts(results.get("ensemble_comparison"), models["n"] if models else None)
    gain = None
    if comparison:  # the run's ensemble: the row with ensemble.json's validation F1, else the first one
        rows = comparison["ensembles"]
        same = [r for r in rows if ens and ens["val"] is not None and abs(r["val"] - ens["val"]) < 1e-9]
        best = (same or rows)[0]
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
        "params": run.get("params") or {},
        "synthetic": (run.get("dataset") or {}).get("kind") == "synthetic",
        "classes": _class_facts(results.get("class_counts")),
        "models": models,
        "ensemble": ens,
        "comparison": comparison,
        "gain": gain,
        "shift": _shift_facts(results.get("shift_sweep"), ens["shift"] if ens else None),
        "thresholds": _threshold_facts(results.get("thresholds")),
        "leaderboard_scores": _has_scores(results.get("leaderboard")),
    }


# --------------------------------------------------------------------------- rendering


def _duration(seconds) -> str:
    seconds = _num(seconds)
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes:02d} min"
        if hours
        else (f"{minutes} min {secs:02d} s" if minutes else f"{secs} s")
    )


def _f3(value, signed: bool = False) -> str:
    number = _num(value)
    return "n/a" if number is None else (f"{number:+.3f}" if signed else f"{number:.3f}")


def _pretty(column: str) -> str:
    text = str(column).replace("_", " ")
    return " ".join("F1" if word.lower() == "f1" else word for word in text.split(" "))


def _formatters(df: pd.DataFrame) -> dict:
    """3 decimals for measurements; integers (counts, params) with thousands separators."""
    out = {}
    for column in df.columns:
        values = df[column].dropna()
        if not pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column]):
            continue
        name = str(column).lower()
        measured = any(key in name for key in ("f1", "gap", "shift", "threshold", "weight", "loss", "share"))
        if "second" in name:
            out[column] = lambda x: "—" if pd.isna(x) else f"{x:,.1f}"
        elif not measured and len(values) and (values == values.round()).all():
            out[column] = lambda x: "—" if pd.isna(x) else f"{int(x):,}"
        else:
            out[column] = lambda x: "—" if pd.isna(x) else f"{x:.3f}"
    return out


def not_available(what: str) -> Markup:
    return Markup(
        '<p class="na">Not available in this run: <code>{}</code> was not found or could not be read.</p>'
    ).format(what)


class _Builder:
    """Numbers figures (in :data:`FIGURES` order, so the prose can cite them first) and tables."""

    def __init__(self, results: dict):
        self.results = results
        known = [stem for stem in FIGURES if stem in results["figures"]]
        self.extra = [stem for stem in results["figures"] if stem not in FIGURES]
        self.numbers = {stem: i for i, stem in enumerate(known + self.extra, start=1)}
        self.last_figure = 0
        self.tables = 0

    def ref(self, stem: str) -> str:
        return (
            f"Figure {self.numbers[stem]}" if stem in self.numbers else "a figure not available in this run"
        )

    def figure(self, stem: str, caption: str = "") -> Markup:
        if stem not in self.numbers:
            return not_available(f"figures/{stem}.png")
        number = self.numbers[stem]
        if number <= self.last_figure:
            raise RuntimeError(f"figure {stem!r} rendered out of order; keep the template in FIGURES order")
        self.last_figure = number
        path = self.results["figures"][stem]
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        uri = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        alt = FIGURES.get(stem, stem.replace("_", " "))
        return Markup(
            '<figure id="fig-{}"><img src="{}" alt="{}"><figcaption><span class="label">Figure {}.'
            "</span> {}</figcaption></figure>"
        ).format(stem, uri, alt, number, escape(caption))

    def table(self, key, caption: str = "", drop=(), columns=None) -> Markup:
        df = self.results.get(key) if isinstance(key, str) else key
        if df is None or not isinstance(df, pd.DataFrame):
            return not_available(TABLE_FILES.get(key, str(key)))
        df = df.drop(columns=[c for c in drop if c in df.columns])
        if columns:
            df = df[[c for c in columns if c in df.columns]]
        self.tables += 1
        text_cols = [i for i, c in enumerate(df.columns, start=1) if not pd.api.types.is_numeric_dtype(df[c])]
        classes = ["data"] + [f"left-{i}" for i in text_cols if i <= 12]
        body = df.rename(columns=_pretty).to_html(
            index=False,
            border=0,
            classes=classes,
            na_rep="—",
            formatters=_formatters(df.rename(columns=_pretty)),
        )
        return Markup(
            '<div class="table"><p class="caption"><span class="label">Table {}.</span> {}</p>'
            '<div class="table-wrap">{}</div></div>'
        ).format(self.tables, escape(caption), Markup(body))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined, lstrip_blocks=True
    )
    env.filters.update(
        f3=_f3,
        sf3=lambda v: _f3(v, signed=True),
        duration=_duration,
        thousands=lambda v: "n/a" if _num(v) is None else f"{int(_num(v)):,}",
    )
    env.globals.update(not_available=not_available, original=ORIGINAL_REPORT, context=CONTEXT_SCORES)
    return env


AUGMENT_KEYS = ("translate", "scale", "shear", "noise", "flip")


def _augmentation(params: dict) -> dict:
    """The augmentation settings: the run's own transform parameters if it recorded any, else the library's
    defaults (what :class:`hpa_utils.augment.Augmenter` uses when the run does not override them)."""
    found = {_pretty(k): v for k, v in params.items() if any(key in k.lower() for key in AUGMENT_KEYS)}
    if found:
        return found
    try:  # imgaug is a heavy import: only when the run did not record its settings
        from hpa_utils.training import augment
    except ImportError:
        return {}
    low, high = augment.SCALE_RANGE
    return {
        "translation": f"up to ±{augment.TRANSLATE_FRACTION:g} of the side",
        "scaling": f"{low:g}–{high:g}",
        "shear": f"up to ±{augment.SHEAR_DEGREES:g}°",
        "Gaussian noise": f"standard deviation up to {augment.NOISE_STD_FRACTION:g} × 255",
    }


def _figure_models(params: dict) -> dict:
    """Which base models Figures 1-4 show, by the notebooks' rule (02_baseline, 03_finetune)."""
    variants = params.get("variants")
    if not isinstance(variants, list) or not variants:
        return {"fig1_variants": None, "stage_variant": None}
    chosen = params.get("stage_figure_variant")
    return {
        "fig1_variants": [v for v in params.get("figure_variants") or [] if v in variants] or None,
        "stage_variant": chosen if chosen in variants else variants[0],
    }


def _context_tables(results: dict) -> dict:
    run = results.get("run") or {}
    params = run.get("params") or {}
    params_list = [
        (key, ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
        for key, value in params.items()
    ]
    notebooks = list((run.get("notebooks") or {}).items())
    counts = results.get("class_counts")
    if _has(counts, "count"):  # share: fraction of the images that carry the class, here and in Kaggle's
        counts = counts.drop(columns=[c for c in ("kaggle_scaled", "kaggle_share") if c in counts.columns])
        n_train = _num((run.get("dataset") or {}).get("n_train"))
        if "share" not in counts.columns and n_train:
            counts.insert(list(counts.columns).index("count") + 1, "share", counts["count"] / n_train)
        if "kaggle_count" in counts.columns:
            counts["kaggle_share"] = counts["kaggle_count"] / N_TRAIN_KAGGLE
    return {
        "params_list": params_list,
        "notebooks": notebooks,
        "class_table": counts if counts is not None else "class_counts",
        "augmentation": _augmentation(params),
        "augment_enabled": params.get("augment", True) not in (False, "false", 0),
        **_figure_models(params),
    }


def render_html(results: dict) -> str:
    """The report's HTML text for already loaded ``results``."""
    builder = _Builder(results)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            r=results,
            facts=report_facts(results),
            run=results.get("run") or {},
            fig=builder.figure,
            ref=builder.ref,
            table=builder.table,
            extra_figures=builder.extra,
            **_context_tables(results),
        )
        .lstrip()
    )


def render_report(output_dir: str | os.PathLike, out_path: str | os.PathLike | None = None) -> Path:
    """Render the report of the run in ``output_dir`` to ``out_path`` (default ``OUT/report/report.html``).

    The file is written to a temporary file beside it, then renamed: a reader never sees half a report.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir}: no such run output directory; run the notebooks first")
    out_path = Path(out_path) if out_path else output_dir / "report" / "report.html"
    html = render_html(load_results(output_dir))
    return write_atomic(out_path, lambda tmp: tmp.write_bytes(html.encode("utf-8")))


# --------------------------------------------------------------------------- headless Chromium


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set (a path or a command name), else the first of :data:`CHROMIUM_NAMES` on PATH."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override) or (override if os.access(override, os.X_OK) else None)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _chromium(args: list[str], page: str | os.PathLike, timeout: float = 180) -> subprocess.CompletedProcess:
    executable = find_chromium()
    if executable is None:
        raise RuntimeError(
            "headless Chromium was not found (tried $CHROMIUM, then "
            + ", ".join(CHROMIUM_NAMES)
            + " on PATH): install Debian's `chromium` package (apt-get install chromium), or set CHROMIUM to"
            " a Chrome/Chromium executable."
        )
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such HTML file")
    with tempfile.TemporaryDirectory(prefix="hpa-chromium-") as profile:
        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{executable} exited with status {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return done


def _chromium_to_file(args: list[str], page, target: Path, flag: str, magic: bytes) -> Path:
    def write(tmp: Path) -> None:
        _chromium([*args, f"{flag}={tmp}"], page)
        if not tmp.is_file() or tmp.read_bytes()[: len(magic)] != magic:
            raise RuntimeError(f"Chromium did not write a {target.suffix} file for {page}")

    return write_atomic(target, write)


def render_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike | None = None) -> Path:
    """Print the HTML report to PDF with headless Chromium (default: beside it, ``.pdf``)."""
    target = Path(pdf_path) if pdf_path else Path(html_path).with_suffix(".pdf")
    return _chromium_to_file(
        ["--no-pdf-header-footer", "--virtual-time-budget=5000"], html_path, target, "--print-to-pdf", b"%PDF"
    )


def screenshot(
    html_path: str | os.PathLike, png_path: str | os.PathLike, width: int = 1280, height: int = 2400
) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of the page as headless Chromium draws it."""
    return _chromium_to_file(
        [f"--window-size={int(width)},{int(height)}", "--virtual-time-budget=5000"],
        html_path,
        Path(png_path),
        "--screenshot",
        b"\x89PNG",
    )


def dump_dom(html_path: str | os.PathLike) -> str:
    """The page's DOM after load (scripts run, images decoded), serialised by headless Chromium."""
    return _chromium(["--dump-dom", "--virtual-time-budget=5000"], html_path).stdout
