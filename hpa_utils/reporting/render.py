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
from hpa_utils.studies.ensemble import SINGLE
from hpa_utils.studies.tables import MISSING, TABLES, Table, format_value

TEMPLATES_DIR = Path(__file__).parent / "templates"

#: The figures the report shows, in the order they appear, with their alt text: the body's, then the appendix's
#: (:data:`APPENDIX_FIGURES`). Figures the run wrote that neither this nor :data:`REPEATS` names are shown at
#: the end of the appendix.
FIGURES = {
    "eda_class_counts": "Bar chart: training images per class in this dataset and in Kaggle's training set",
    "eda_cooccurrence": "Heat map: how often two classes are labelled on the same image",
    "eda_labels_per_image": "Bar chart: how many images carry 1, 2, 3... labels",
    "eda_channel_stats": "Distribution of per-image mean intensity for each of the four channels",
    "eda_montage_rgb": "Sample images as RGB composites with their labels",
    "eda_montage_channels": "One sample shown channel by channel: microtubules, protein, nucleus, ER",
    "eda_split_balance": "Per-class counts in the training and validation parts of the split",
    "fig1_base_models": "Training curves of the base models: loss and macro F1, training and validation",
    "stages_continuous": "Training curves of one base model and its stages A, B and C on one continuous epoch axis",
    "models_val_f1": "Validation macro F1 of every trained model, by base model and stage",
    "ensemble_shift_sweep": "Ensemble macro F1 as a function of the weight shift",
    "beyond_gradcam": "Grad-CAM maps of the best model over the protein channel, beside the reference stains",
    "per_class_f1": "F1 per class of the final ensemble",
}
#: Of :data:`FIGURES`, those of the appendix (numbered A1, A2...; the run's unknown figures follow them).
APPENDIX_FIGURES = ("per_class_f1",)
#: Figures the notebooks write that the report leaves out, because a figure or a table it shows has the same
#: content: (``"figure"`` or ``"table"``, the stem of that figure or the id of that table).
REPEATS = {
    "base_val_f1": ("figure", "models_val_f1"),  # its bars are the heat map's base-model column
    "fig2_stage_A": ("figure", "stages_continuous"),  # the stages of one base model, each on its own axes
    "fig3_stage_B": ("figure", "stages_continuous"),
    "fig4_stage_C": ("figure", "stages_continuous"),
    "ensemble_comparison": ("table", "ensemble_comparison"),  # every single model and ensemble, as numbers
    "thresholds": ("table", "thresholds"),
    "beyond_ablation": ("table", "ablation"),  # the ablation's differences and intervals
}
#: A table placed ``where="auto"`` with more rows than this goes to the appendix.
SHORT_TABLE_ROWS = 12
#: A table of more columns than this is printed smaller (class ``wide``), so that it fits the page's width.
WIDE_COLUMNS = 9


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
    """Numbers figures (in :data:`FIGURES` order, fixed up front, so the prose can cite them first) and tables
    (in the order the template shows them; ``labels``: the numbers of an earlier pass over the same template,
    so that :meth:`tref` can cite a table before it is shown), each table's columns shown as its declaration in
    :data:`hpa_utils.studies.tables.TABLES` says. The body's figures and tables are numbered 1, 2...; the
    appendix's A1, A2... ``strict``: a column no declaration names raises :class:`UndeclaredColumnError` (the
    tests); else it is shown as text, with a warning (a user's report still renders)."""

    def __init__(self, results: dict, strict: bool = False, labels: dict | None = None, uris: dict | None = None):
        self.results = results
        self.strict = strict
        figures = results["figures"]
        self.extra = [stem for stem in figures if stem not in FIGURES and stem not in REPEATS]
        body = [stem for stem in FIGURES if stem in figures and stem not in APPENDIX_FIGURES]
        appendix = [stem for stem in APPENDIX_FIGURES if stem in figures] + self.extra
        self.numbers = {stem: str(i) for i, stem in enumerate(body, start=1)}
        self.numbers.update({stem: f"A{i}" for i, stem in enumerate(appendix, start=1)})
        self.order = {stem: i for i, stem in enumerate(body + appendix)}
        self.repeats = [(stem, *REPEATS[stem]) for stem in figures if stem in REPEATS]
        self.last_figure = -1
        self.tables = 0
        self.appendix: list[Markup] = []  # the tables placed in the appendix, in the order they were numbered
        self.labels: dict[str, str] = {}  # table id -> its number, as numbered in this pass
        self.known = labels or {}
        self.uris = {} if uris is None else uris

    def ref(self, stem: str) -> Markup | str:
        if stem not in self.numbers:
            return "a figure not available in this run"
        return Markup('<a href="#fig-{}">Figure {}</a>').format(stem, self.numbers[stem])

    def tref(self, table_id: str, link: bool = True) -> Markup | str:
        """``Table N`` for the table shown with ``id=table_id`` anywhere in the report, linked to it (``link``
        False: plain text, for a caption)."""
        label = self.labels.get(table_id) or self.known.get(table_id)
        if label is None:
            return "a table not available in this run"
        if not link:
            return f"Table {label}"
        return Markup('<a href="#table-{}">Table {}</a>').format(table_id, label)

    def in_appendix(self, table_id: str) -> bool:
        return (self.labels.get(table_id) or self.known.get(table_id) or "").startswith("A")

    def figure(self, stem: str, caption: str = "") -> Markup:
        if stem not in self.numbers:
            return not_available(f"figures/{stem}.png")
        if self.order[stem] <= self.last_figure:
            raise RuntimeError(f"figure {stem!r} rendered out of order; keep the template in FIGURES order")
        self.last_figure = self.order[stem]
        path = self.results["figures"][stem]
        if path not in self.uris:
            mime = mimetypes.guess_type(path.name)[0] or "image/png"
            self.uris[path] = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        alt = FIGURES.get(stem, stem.replace("_", " "))
        return Markup(
            '<figure id="fig-{}"><img src="{}" alt="{}"><figcaption><span class="label">Figure {}.'
            "</span> {}</figcaption></figure>"
        ).format(stem, self.uris[path], alt, self.numbers[stem], escape(caption))

    def number(self, table_id: str, appendix: bool = False) -> str:
        """The next table's number (``3``, or ``A2`` in the appendix), recorded for :meth:`tref`."""
        if appendix:
            label = f"A{len(self.appendix) + 1}"
        else:
            self.tables += 1
            label = str(self.tables)
        self.labels[table_id] = label
        return label

    def caption(self, table_id: str, caption: str) -> Markup:
        """The numbered caption of a table the template writes itself (always in the body)."""
        return Markup('<p class="caption"><span class="label">Table {}.</span> {}</p>').format(
            self.number(table_id), escape(caption)
        )

    def table(
        self,
        key,
        caption: str = "",
        drop=(),
        columns=None,
        schema: str | Table | None = None,
        where: str = "body",
        id: str | None = None,  # noqa: A002  (the table's id in the page, for tref)
    ) -> Markup:
        """Table ``key`` of the results (a key of :data:`TABLE_FILES`), or a DataFrame derived from one with its
        ``schema`` (the key of its declaration in :data:`~hpa_utils.studies.tables.TABLES`, or a
        :class:`~hpa_utils.studies.tables.Table`), each column formatted by its declared kind.

        ``where``: ``"body"`` shows it here; ``"appendix"`` keeps it for :meth:`appendix_tables` (numbered A1,
        A2...) and shows nothing here; ``"auto"``: the appendix when it has more than :data:`SHORT_TABLE_ROWS`
        rows. ``id`` (default: ``key``, or ``schema`` for a DataFrame) names it for :meth:`tref`."""
        declared = self._schema(key, schema)
        df = self.results.get(key) if isinstance(key, str) else key
        if df is None or not isinstance(df, pd.DataFrame):
            return not_available(TABLE_FILES.get(key, str(key)))
        df = df.drop(columns=[c for c in drop if c in df.columns])
        if columns:
            df = df[[c for c in columns if c in df.columns]]
        kinds = self._kinds(declared, df.columns)
        appendix = where == "appendix" or (where == "auto" and len(df) > SHORT_TABLE_ROWS)
        table_id = id or (key if isinstance(key, str) else schema if isinstance(schema, str) else declared.file)
        label = self.number(table_id, appendix)
        text_cols = [i for i, kind in enumerate(kinds, start=1) if kind == "text"]
        classes = (
            ["data"] + [f"left-{i}" for i in text_cols if i <= 12] + (["wide"] if len(kinds) > WIDE_COLUMNS else [])
        )
        body = df.rename(columns=_pretty).to_html(
            index=False,
            border=0,
            classes=classes,
            na_rep=MISSING,
            formatters=[partial(format_value, kind) for kind in kinds],
        )
        html = Markup(
            '<div class="table" id="table-{}"><p class="caption"><span class="label">Table {}.</span> {}</p>'
            '<div class="table-wrap">{}</div></div>'
        ).format(table_id, label, escape(caption), Markup(body))
        if appendix:
            self.appendix.append(html)
            return Markup("")
        return html

    def appendix_tables(self) -> Markup:
        """The tables placed in the appendix, in their order."""
        return Markup("\n").join(self.appendix)

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
        return {"fig1_variants": None, "stage_variant": None, "trained_variants": None}
    chosen = params.get("report.stage_figure_variant")
    return {
        "fig1_variants": [v for v in params.get("report.figure_variants") or [] if v in variants] or None,
        "stage_variant": chosen if chosen in variants else variants[0],
        "trained_variants": variants,
    }


def _shown_value(key: str, value, root: Path | None) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if value is not None and (key.endswith("dir") or key.endswith("_dir")):
        return shown_path(value, root)
    return str(value)


def _comparison_short(comparison: pd.DataFrame | None) -> pd.DataFrame | None:
    """The comparison's best single model (on validation) and its ensembles: the evidence of Section 4.4 (the
    whole table, every single model, is in the appendix)."""
    if not has_columns(comparison, "name", "role", "val_f1"):
        return None
    singles = comparison[comparison["role"] == SINGLE].dropna(subset=["val_f1"])
    best = singles.loc[[singles["val_f1"].idxmax()]] if not singles.empty else singles
    short = pd.concat([best, comparison[comparison["role"] != SINGLE]])
    return short.drop(columns=[c for c in ("kind", "role", "seed") if c in short.columns])


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
    findings = (results.get("findings") or {}).get("findings") or []
    return {
        "comparison_short": _comparison_short(results.get("ensemble_comparison")),
        "finding_no": {f.get("key"): i for i, f in enumerate(findings, start=1) if isinstance(f, dict)},
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
    render so); else it is shown as text, with a warning.

    The template is rendered twice: the first pass numbers the tables, the second cites each by its number
    wherever it is shown (the long ones in the appendix), before or after the citing sentence."""
    root = project_root(Path(results["output_dir"])) if results.get("output_dir") else None
    template = _environment(root).get_template("report.html.j2")
    context = {
        "r": results,
        "facts": report_facts(results),
        "run": results.get("run") or {},
        **_context_tables(results, root),
    }
    labels: dict[str, str] = {}
    uris: dict = {}
    for first in (True, False):
        builder = _Builder(results, strict=strict, labels=labels, uris=uris)
        with warnings.catch_warnings():
            if first:  # the second pass warns once for what both passes see
                warnings.simplefilter("ignore")
            html = template.render(
                fig=builder.figure,
                ref=builder.ref,
                table=builder.table,
                tref=builder.tref,
                in_appendix=builder.in_appendix,
                table_caption=builder.caption,
                appendix_tables=builder.appendix_tables,
                extra_figures=builder.extra,
                repeats=builder.repeats,
                **context,
            )
        labels = builder.labels
    return html.lstrip()


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
