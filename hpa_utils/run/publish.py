"""The shipped report: the `standard` run's result tables, figures and report, committed with the project.

``hpa publish`` (after ``hpa run --preset standard``) copies the run's ``config.json`` and result tables
(``results/*.csv``, ``results/*.json``; no model, prediction or submission file) to ``report/run/``, its
figures to the top-level ``figures/``, renders ``report/report.html`` from them, and rewrites the README's
block between :data:`README_START` and :data:`README_END` from the same tables. ``hpa report`` (no
preset) re-renders the shipped report from the committed files, without training.

Every file is written atomically; files of an earlier publication that the new run lacks are removed.
Both write into a checkout of the project: an installed package (no checkout, :mod:`hpa_utils.config.paths`)
refuses with one line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from hpa_utils.config.run_config import CHECKOUT, FIGURES_DIR, PROJ_ROOT, REPORT_DIR
from hpa_utils.config.stages import CONTROL, STAGE_ORDER
from hpa_utils.io import write_text_atomic
from hpa_utils.reporting.render import render_report
from hpa_utils.reporting.results import load_results

#: Where the shipped run's tables live (a run directory without models, predictions or submissions).
SHIPPED_RUN = REPORT_DIR / "run"
SHIPPED_REPORT = REPORT_DIR / "report.html"
README = PROJ_ROOT / "README.md"
README_START = "<!-- shipped-run:start (written by `hpa publish` from report/run/results; do not edit) -->"
README_END = "<!-- shipped-run:end -->"


def require_checkout(what: str) -> None:
    """Raise FileNotFoundError (one line, which ``hpa`` prints) when the package is installed, not a checkout.

    Raises:
        FileNotFoundError: no checkout of the project around the package.
    """
    if CHECKOUT is None:
        raise FileNotFoundError(
            f"{what}: that needs a checkout of the project (git clone it, then pip install -e . there), and this"
            " hpa is an installed package"
        )


def _copy(source: Path, target: Path) -> None:
    """Copy atomically; in a JSON or CSV file, paths inside the project become relative to it (no machine paths)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix in (".json", ".csv"):
        root = str(PROJ_ROOT) + "/"
        text = source.read_text(encoding="utf-8").replace(json.dumps(root)[1:-1], "").replace(root, "")
        write_text_atomic(target, text)
        return
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _mirror(files: list[Path], source_root: Path, target_root: Path, pattern: str) -> None:
    """Copy ``files`` (under ``source_root``) to ``target_root``; remove target files of ``pattern`` not copied."""
    wanted = {target_root / f.relative_to(source_root) for f in files}
    for f in files:
        _copy(f, target_root / f.relative_to(source_root))
    for old in target_root.glob(pattern) if target_root.is_dir() else []:
        if old.is_file() and old not in wanted:
            old.unlink()


def publish(
    run_dir: str | os.PathLike, shipped: Path = SHIPPED_RUN, figures: Path = FIGURES_DIR, readme: Path = README
) -> Path:
    """Ship the run in ``run_dir`` (see the module docstring); returns the rendered report's path.

    Raises:
        FileNotFoundError: ``run_dir`` is not a finished run, or there is no checkout to publish into.
    """
    require_checkout("publishing writes the project's report/, figures/ and README.md")
    run_dir = Path(run_dir).resolve()
    results = run_dir / "results"
    if not (run_dir / "config.json").is_file() or not (results / "ensemble.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run (config.json and results/ensemble.json are needed)")
    tables = sorted(p for p in results.iterdir() if p.is_file() and p.suffix in (".csv", ".json"))
    _mirror(tables, results, shipped / "results", "*")
    _copy(run_dir / "config.json", shipped / "config.json")
    _mirror(sorted((run_dir / "figures").glob("*.png")), run_dir / "figures", figures, "*.png")
    html = render_report(shipped, shipped.parent / "report.html", figures_dir=figures)
    update_readme(readme, shipped)
    return html


def render_shipped() -> Path:
    """Re-render ``report/report.html`` from the committed tables and figures (no training)."""
    require_checkout("the shipped report is the project's report/report.html (a run's: --preset or --output-dir)")
    if not (SHIPPED_RUN / "results").is_dir():
        raise FileNotFoundError(f"{SHIPPED_RUN}: no shipped run; run `hpa run --preset standard` then `hpa publish`")
    return render_report(SHIPPED_RUN, SHIPPED_REPORT, figures_dir=FIGURES_DIR)


def readme_block(shipped: Path = SHIPPED_RUN) -> str:
    """The README's tables of the shipped run, from its committed result files."""
    results = load_results(shipped)
    config = results["config"] or {}
    run = results["run"] or {}
    lines = [README_START, ""]
    train = config.get("train", {})
    stages = train.get("stages", {}).get("epochs", {})
    seeds = int(train.get("seeds", 1) or 1)
    control = train.get("stages", {}).get("control") or []
    lines.append(
        f"The shipped report (`report/report.html`) is the `{config.get('preset', '?')}` run: "
        f"{len(train.get('variants', []))} base variants"
        + (f", each trained with {seeds} training seeds," if seeds > 1 else "")
        + f" of {train.get('base', {}).get('epochs', '?')} epochs and their "
        f"stages A/B/C of {stages.get('A', '?')}/{stages.get('B', '?')}/{stages.get('C', '?')} epochs"
        + (f", and a fine-tuning control for {len(control)} of the variants" if control else "")
        + f", at {config.get('data', {}).get('image_size', '?')} px on the synthetic dataset; training the models "
        f"took {_minutes(run.get('model_train_seconds'))} of worker time on {run.get('machine', 'n/a')}."
    )
    models = results["models"]
    if models is not None and {"variant", "stage", "val_macro_f1"} <= set(models.columns):
        kinds = [*STAGE_ORDER, CONTROL.name]
        scores = models.assign(stage=models["stage"].astype(str))
        mean = scores.pivot_table(index="variant", columns="stage", values="val_macro_f1", aggfunc="mean")
        low = scores.pivot_table(index="variant", columns="stage", values="val_macro_f1", aggfunc="min")
        high = scores.pivot_table(index="variant", columns="stage", values="val_macro_f1", aggfunc="max")
        shown = [c for c in kinds if c in mean.columns]
        spread = seeds > 1 and "seed" in models.columns
        lines += [
            "",
            "Validation macro F1 (threshold 0.5) by base variant and stage"
            + (f", mean over {seeds} training seeds (lowest-highest)" if spread else "")
            + " (`report/run/results/models.csv`):",
            "",
        ]
        lines.append("| variant | " + " | ".join("control" if c == CONTROL.name else c for c in shown) + " |")
        lines.append("|---|" + "---|" * len(shown))
        for variant in mean.index:
            cells = [
                _f3(mean.at[variant, c])
                + (f" ({_f3(low.at[variant, c])}-{_f3(high.at[variant, c])})" if spread else "")
                if pd.notna(mean.at[variant, c])
                else "—"
                for c in shown
            ]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    summary = results["ensemble"]
    if summary is not None:
        members = [m for m, w in (summary.weights or {}).items() if w > 0]
        lines += [
            "",
            f"Ensemble: {len(members)} members ({', '.join(members)}), weight = validation F1 - {_f3(summary.shift)}, "
            f"threshold {_f3(summary.threshold)} ({summary.threshold_method}): validation {_f3(summary.val_f1)}, "
            f"public {_f3(summary.public_f1)}, private {_f3(summary.private_f1)} (synthetic solution).",
        ]
        chosen = getattr(summary, "submitted", None) or {}
        if chosen.get("name"):
            runner_up = (
                f", {_f3(chosen.get('val_f1'))} against {_f3(chosen.get('runner_up_val_f1'))} for {chosen['runner_up']}"
                if chosen.get("runner_up")
                else ""
            )
            lines[-1] += (
                f" Submitted: {chosen['name']}, what validation chooses among the best single model and the "
                f"ensembles{runner_up} (public {_f3(chosen.get('public_f1'))}, "
                f"private {_f3(chosen.get('private_f1'))})."
            )
    found = (results["findings"] or {}).get("findings") or []
    if found:
        lines += ["", "The original's findings, re-tested (`report/run/results/findings.json`):", ""]
        lines += ["| finding | deciding estimate [95% interval] | interval over | verdict |", "|---|---|---|---|"]
        for f in found:
            deciding = f.get("deciding") or (
                []
                if f["estimate"] is None
                else [{"what": "", "estimate": f["estimate"], "low": f["low"], "high": f["high"]}]
            )
            interval = "<br>".join(
                (f"{d['what']}: " if d["what"] else "") + f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                for d in deciding
            )
            lines.append(f"| {f['claim']} | {interval or '—'} | {f.get('interval_over') or '—'} | {f['verdict']} |")
    lines += _beyond_lines(results)
    lines += ["", README_END]
    return "\n".join(lines)


def _beyond_lines(results: dict) -> list[str]:
    """Notebook 05's ablation table, its Grad-CAM figure and pointing score, when the shipped run has them."""
    summary = results.get("beyond")
    config = results.get("config") or {}
    if summary is None or not (config.get("beyond") or {}).get("run"):
        return []
    split = summary.verdict_set or "val"
    where = {"test": "held-out test images", "val": "validation images"}.get(split, split)
    seeds = max([int(row.get("seeds") or 1) for row in summary.rows or []] or [1])
    over = f"{seeds} training seeds, then the " if seeds > 1 else "the "
    lines = [
        "",
        f"Beyond the original (notebook 05, `report/run/results/beyond_ablation.csv`): base model {summary.variant} "
        f"with each technique of the competition's winners, alone and together; difference from the baseline "
        f"with its paired 95% interval over {over}{_count((summary.sets or {}).get(split))} {where}:",
        "",
        "| technique | validation | public | private | difference [95% interval] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.rows or []:
        diff = (
            "—"
            if row.get("key") == "baseline"
            else f"{row[f'd_{split}']:+.3f} [{row[f'd_{split}_low']:+.3f}, {row[f'd_{split}_high']:+.3f}]"
        )
        lines.append(
            f"| {row['technique']} | {_f3(row.get('val_f1'))} | {_f3(row.get('public_f1'))} | "
            f"{_f3(row.get('private_f1'))} | {diff} | {row.get('verdict') or ''} |"
        )
    if summary.gradcam_model:
        lines += [
            "",
            f"Where {summary.gradcam_model} looks (Grad-CAM over the protein channel;"
            " cyan: where the pattern was drawn):",
        ]
        lines += ["", "![Grad-CAM maps of the best model](figures/beyond_gradcam.png)"]
    point = summary.pointing
    if point:
        lift = point["mass_on_pattern"] / point["pattern_share"] if point.get("pattern_share") else float("nan")
        lines += [
            "",
            f"Pointing game over {point['maps']:,} maps: {100 * point['mass_on_pattern']:.1f}% of a map's mass lies "
            f"on its class's pattern, which covers {100 * point['pattern_share']:.1f}% of the image ({lift:.2f} times "
            f"chance); the peak is on the pattern in {100 * point['peak_on_pattern']:.1f}% of the maps.",
        ]
        cellstain = (point.get("baselines") or {}).get("cellstain")
        if cellstain and point.get("verdict"):
            lines[-1] += (
                f" A class-agnostic map (the cell stains, red + yellow) scores {cellstain['lift']:.2f} times chance: "
                f"Grad-CAM is {point['verdict']} a map that ignores the class."
            )
    return lines


def update_readme(readme: Path = README, shipped: Path = SHIPPED_RUN) -> bool:
    """Rewrite the README's shipped-run block; False when there is no README or it has no such block."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    write_text_atomic(readme, before + readme_block(shipped) + after)
    return True


def _f3(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if pd.isna(number) else f"{number:.3f}"


def _count(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "?"


def _minutes(seconds) -> str:
    try:
        return f"{float(seconds) / 60:.0f} min"
    except (TypeError, ValueError):
        return "n/a"
