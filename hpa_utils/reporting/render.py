"""The course report as one self-contained HTML page, rendered from one run's results.

:func:`render_report` reads a run (:func:`~hpa_utils.reporting.results.load_results`), computes what the
prose states (:func:`~hpa_utils.reporting.facts.report_facts`) and writes one HTML page (figures as base64
data URIs, inline CSS, no external resource) from the Jinja2 template ``templates/report.html.j2``.
Whatever the run lacks says "Not available in this run" in its place.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import warnings
from functools import partial
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from hpa_utils.data.labels import N_TRAIN_KAGGLE
from hpa_utils.io import write_atomic
from hpa_utils.reporting import fonts
from hpa_utils.reporting.facts import flat_config, pointing_facts, report_facts
from hpa_utils.reporting.results import (
    CONTEXT_SCORES,
    ORIGINAL_REPORT,
    TABLE_FILES,
    has_columns,
    load_results,
    to_number,
)
from hpa_utils.studies.tables import MISSING, TABLES, Table, format_value

TEMPLATES_DIR = Path(__file__).parent / "templates"

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
    "stages_continuous": "Training curves of one base model and its stages A, B and C on one continuous epoch axis",
    "models_val_f1": "Validation macro F1 of every trained model, by base model and stage",
    "ensemble_shift_sweep": "Ensemble macro F1 as a function of the weight shift",
    "ensemble_comparison": "Macro F1 of single models and ensembles",
    "thresholds": "Macro F1 of threshold choices on the fit half and on the hold-out half",
    "per_class_f1": "F1 per class of the final ensemble",
    "beyond_ablation": "Difference of each technique's macro F1 from the baseline's, with paired 95% intervals",
    "beyond_gradcam": "Grad-CAM maps of the best model over the protein channel, beside the reference stains",
}
#: Figures of the sections after the experiments' "other figures": numbered after those.
LATE_FIGURES = ("beyond_ablation", "beyond_gradcam")


def _duration(seconds) -> str:
    seconds = to_number(seconds)
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else (f"{minutes} min {secs:02d} s" if minutes else f"{secs} s")


def _f3(value, signed: bool = False) -> str:
    number = to_number(value)
    return "n/a" if number is None else (f"{number:+.3f}" if signed else f"{number:.3f}")


def _pretty(column: str) -> str:
    text = str(column).replace("_", " ")
    return " ".join("F1" if word.lower() == "f1" else word for word in text.split(" "))


class UndeclaredColumnError(ValueError):
    """A table shown in the report has a column its declaration (:data:`hpa_utils.studies.tables.TABLES`) lacks."""


def not_available(what: str) -> Markup:
    return Markup(
        '<p class="na">Not available in this run: <code>{}</code> was not found or could not be read.</p>'
    ).format(what)


class _Builder:
    """Numbers figures (in :data:`FIGURES` order, so the prose can cite them first) and tables, each table's
    columns shown as its declaration in :data:`hpa_utils.studies.tables.TABLES` says. ``strict``: a column no
    declaration names raises :class:`UndeclaredColumnError` (the tests); else it is shown as text, with a
    warning (a user's report still renders)."""

    def __init__(self, results: dict, strict: bool = False):
        self.results = results
        self.strict = strict
        known = [stem for stem in FIGURES if stem in results["figures"] and stem not in LATE_FIGURES]
        late = [stem for stem in LATE_FIGURES if stem in results["figures"]]
        self.extra = [stem for stem in results["figures"] if stem not in FIGURES]
        self.numbers = {stem: i for i, stem in enumerate(known + self.extra + late, start=1)}
        self.last_figure = 0
        self.tables = 0

    def ref(self, stem: str) -> str:
        return f"Figure {self.numbers[stem]}" if stem in self.numbers else "a figure not available in this run"

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

    def table(self, key, caption: str = "", drop=(), columns=None, schema: str | Table | None = None) -> Markup:
        """Table ``key`` of the results (a key of :data:`TABLE_FILES`), or a DataFrame derived from one with its
        ``schema`` (the key of its declaration in :data:`~hpa_utils.studies.tables.TABLES`, or a
        :class:`~hpa_utils.studies.tables.Table`), each column formatted by its declared kind."""
        declared = self._schema(key, schema)
        df = self.results.get(key) if isinstance(key, str) else key
        if df is None or not isinstance(df, pd.DataFrame):
            return not_available(TABLE_FILES.get(key, str(key)))
        df = df.drop(columns=[c for c in drop if c in df.columns])
        if columns:
            df = df[[c for c in columns if c in df.columns]]
        kinds = self._kinds(declared, df.columns)
        self.tables += 1
        text_cols = [i for i, kind in enumerate(kinds, start=1) if kind == "text"]
        classes = ["data"] + [f"left-{i}" for i in text_cols if i <= 12]
        body = df.rename(columns=_pretty).to_html(
            index=False,
            border=0,
            classes=classes,
            na_rep=MISSING,
            formatters=[partial(format_value, kind) for kind in kinds],
        )
        return Markup(
            '<div class="table"><p class="caption"><span class="label">Table {}.</span> {}</p>'
            '<div class="table-wrap">{}</div></div>'
        ).format(self.tables, escape(caption), Markup(body))

    @staticmethod
    def _schema(key, schema: str | Table | None) -> Table:
        if isinstance(schema, Table):
            return schema
        name = schema if schema is not None else key
        if not isinstance(name, str):
            raise TypeError("table(): a DataFrame needs its schema (schema='<key of hpa_utils.studies.tables.TABLES>')")
        if name not in TABLES:
            raise KeyError(f"table(): no table {name!r} is declared in hpa_utils.studies.tables.TABLES")
        return TABLES[name]

    def _kinds(self, declared: Table, columns) -> list[str]:
        """The declared kind of each of ``columns``; an undeclared one raises (strict) or is shown as text."""
        undeclared = declared.undeclared(columns)
        if undeclared:
            message = (
                f"table {declared.file}: column(s) {', '.join(map(repr, undeclared))} not declared; "
                "declare their kinds in hpa_utils.studies.tables.TABLES"
            )
            if self.strict:
                raise UndeclaredColumnError(message)
            warnings.warn(f"{message}; shown as text", stacklevel=2)
        return [declared.kind(column) or "text" for column in columns]


def count(number, noun: str) -> str:
    """``3 models``, ``1 model``: a count with its noun in the right number."""
    value = to_number(number)
    if value is None:
        return f"n/a {noun}s"
    value = int(value)
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def shown_path(value, root: Path | None) -> str:
    """A path as the report shows it: relative to the project when inside it, else only its folder's name
    (a reader needs to know which data, not the machine's layout)."""
    text = str(value)
    path = Path(text)
    if not path.is_absolute():
        return text
    if root is not None:
        try:
            return str(path.resolve().relative_to(root))
        except ValueError:
            pass
    return path.name or text


def project_root(start: Path) -> Path | None:
    """The project a run lives in: the nearest folder above ``start`` with a ``pyproject.toml``."""
    for folder in [start.resolve(), *start.resolve().parents]:
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def _environment(root: Path | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined, lstrip_blocks=True
    )
    env.filters.update(
        f3=_f3,
        sf3=lambda v: _f3(v, signed=True),
        duration=_duration,
        thousands=lambda v: "n/a" if to_number(v) is None else f"{int(to_number(v)):,}",
        count=count,
        lowerfirst=lambda text: str(text)[:1].lower() + str(text)[1:],
        shown_path=lambda v: shown_path(v, root),
    )
    env.globals.update(not_available=not_available, original=ORIGINAL_REPORT, context=CONTEXT_SCORES)
    # the original's Chinese author names: the glyphs embedded, so that they render without a CJK font
    env.globals.update(cjk_font_face=Markup(fonts.font_face_css()), cjk_family=Markup(fonts.FAMILY))
    return env


def _augmentation(recorded: dict | None) -> dict:
    """The augmentation the run trained with, as the report states it: what the training study recorded
    (``results/augmentation.json``, the parameters of :class:`hpa_utils.training.augment.Augmenter`); empty
    when the run recorded none."""
    try:
        translate, shear, noise = (float(recorded[key]) for key in ("translate", "shear", "noise_std"))
        low, high = (float(value) for value in recorded["scale"])
    except (TypeError, KeyError, ValueError):
        return {}
    shown = {
        "translation": f"up to ±{translate:g} of the side",
        "scaling": f"{low:g}–{high:g}",
        "shear": f"up to ±{shear:g}°",
        "Gaussian noise": f"standard deviation up to {noise:g} × 255",
    }
    if recorded.get("flips"):
        shown["flips and quarter turns"] = "random"
    return shown


def _figure_models(params: dict) -> dict:
    """Which base models Figures 1-4 show, by the notebooks' rule (02_baseline, 03_finetune)."""
    variants = params.get("train.variants")
    if not isinstance(variants, list) or not variants:
        return {"fig1_variants": None, "stage_variant": None}
    chosen = params.get("report.stage_figure_variant")
    return {
        "fig1_variants": [v for v in params.get("report.figure_variants") or [] if v in variants] or None,
        "stage_variant": chosen if chosen in variants else variants[0],
    }


def _shown_value(key: str, value, root: Path | None) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if value is not None and (key.endswith("dir") or key.endswith("_dir")):
        return shown_path(value, root)
    return str(value)


def _context_tables(results: dict, root: Path | None = None) -> dict:
    run = results.get("run") or {}
    params = flat_config(results.get("config") or run.get("config") or {})
    params_list = [(key, _shown_value(key, value, root)) for key, value in params.items()]
    notebooks = list((run.get("notebooks") or {}).items())
    counts = results.get("class_counts")
    if has_columns(counts, "count"):  # share: fraction of the images that carry the class, here and in Kaggle's
        counts = counts.drop(columns=[c for c in ("kaggle_scaled", "kaggle_share") if c in counts.columns])
        n_train = to_number((run.get("dataset") or {}).get("n_train"))
        if "share" not in counts.columns and n_train:
            counts.insert(list(counts.columns).index("count") + 1, "share", counts["count"] / n_train)
        if "kaggle_count" in counts.columns:
            counts["kaggle_share"] = counts["kaggle_count"] / N_TRAIN_KAGGLE
    pointing = results.get("beyond_pointing")
    point_facts = pointing_facts(results.get("beyond"), pointing)
    if has_columns(pointing, "name", "maps"):
        shown = ["name", "val_images", "val_f1", "maps", "mass_on_pattern", "pattern_share", "lift", "peak_on_pattern"]
        if has_columns(pointing, "lift_cellstain"):  # with the baselines: lifts, then peak rates and their chance
            shown = ["name", "val_images", "val_f1", "val_predicted", "maps", "lift", "lift_cellstain", "lift_green"]
            shown += ["lift_vs_cellstain", "peak_on_pattern", "peak_cellstain", "peak_green", "peak_chance"]
        pointing = pointing[pointing["maps"] > 0][[c for c in shown if c in pointing.columns]]
    seeds = to_number(params.get("train.seeds"))
    return {
        "n_seeds": int(seeds) if seeds else 1,
        "pointing_table": pointing if pointing is not None else "beyond_pointing",
        "pointing_facts": point_facts,
        "params_list": params_list,
        "notebooks": notebooks,
        "class_table": counts if counts is not None else "class_counts",
        "augmentation": _augmentation(results.get("augmentation")),
        "augment_enabled": params.get("train.augment", True) not in (False, "false", 0),
        **_figure_models(params),
    }


def render_html(results: dict, strict: bool = False) -> str:
    """The report's HTML text for already loaded ``results``. ``strict``: a table column that
    :data:`hpa_utils.studies.tables.TABLES` does not declare raises :class:`UndeclaredColumnError` (the tests
    render so); else it is shown as text, with a warning."""
    builder = _Builder(results, strict=strict)
    root = project_root(Path(results["output_dir"])) if results.get("output_dir") else None
    return (
        _environment(root)
        .get_template("report.html.j2")
        .render(
            r=results,
            facts=report_facts(results),
            run=results.get("run") or {},
            fig=builder.figure,
            ref=builder.ref,
            table=builder.table,
            extra_figures=builder.extra,
            **_context_tables(results, root),
        )
        .lstrip()
    )


def render_report(
    output_dir: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    figures_dir: str | os.PathLike | None = None,
) -> Path:
    """Render the report of the run in ``output_dir`` to ``out_path`` (default ``OUT/report/report.html``),
    with the figures of ``figures_dir`` (default ``OUT/figures``).

    The file is written to a temporary file beside it, then renamed: a reader never sees half a report.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir}: no such run output directory; run the notebooks first")
    out_path = Path(out_path) if out_path else output_dir / "report" / "report.html"
    html = render_html(load_results(output_dir, figures_dir))
    return write_atomic(out_path, lambda tmp: tmp.write_bytes(html.encode("utf-8")))
