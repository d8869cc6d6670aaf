"""Writes notebooks/0*.ipynb from the cell lists below (sources only, no outputs).

The notebooks are the product; this script is how their sources are kept consistent
(same parameters cell shape, same set-up). Run `python tools/make_notebooks.py` after editing.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

COMMON_PARAMETERS = '''preset = "quick"     # presets/<preset>.yaml: defaults for everything below
data_dir = None      # None: the embedded synthetic dataset (generated on first use)
output_dir = None    # None: runs/<preset>
cache_dir = None     # None: .cache/<data dir>-<hash>
'''


def params_cell(names: dict) -> str:
    lines = [COMMON_PARAMETERS.rstrip()]
    for name, (value, comment) in names.items():
        lines.append(f"{name} = {value!r}".ljust(32) + f"  # {comment}")
    return "\n".join(lines) + "\n"


def setup_cell(names: dict, extra_imports: str) -> str:
    overrides = ", ".join(f"{name}={name}" for name in names)
    return f'''from pathlib import Path

from IPython.display import display

from hpa_utils.run import config
from hpa_utils.reporting import plots
{extra_imports}
params = config.resolve_params(preset, dict({overrides}, cache_dir=cache_dir), data_dir, output_dir)
paths = config.RunPaths(Path(params["output_dir"])).make()
config.ensure_dataset(params)
made_by = config.run_label(params)  # every saved figure says which run made it
print(f"preset {{params['preset']}} | data {{params['data_dir']}} | output {{paths.output_dir}}")
'''


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"name": "hpa", "display_name": "Python (hpa)", "language": "python"},
        "language_info": {"name": "python"},
    }
    return nb


def parameters(source: str):
    return new_code_cell(source, metadata={"tags": ["parameters"]})


# --------------------------------------------------------------------------- 01 EDA
EDA_PARAMS = {
    "image_size": (128, "side in px of the decoded-image cache used for training"),
    "val_fraction": (0.2, "share of training Ids held out for validation"),
    "seed": (0, "one seed: one split"),
    "workers": (2, "decoding threads"),
}
eda = notebook([
    new_markdown_cell(
        "# 01 · Exploratory data analysis\n\n"
        "What the data looks like before any model sees it: how many images each of the 28 classes has "
        "(the imbalance that makes macro F1 hard), how many labels an image carries and which labels come "
        "together, what the four stains look like, their intensities, and the multilabel-stratified "
        "train/validation split that every later notebook uses (saved with the run)."
    ),
    parameters(params_cell(EDA_PARAMS)),
    new_code_cell(setup_cell(EDA_PARAMS, "from hpa_utils.data import dataset, split\nfrom hpa_utils.studies import eda\nfrom hpa_utils.data.cache import open_cache\nfrom hpa_utils.io import save_table, write_json_atomic\n")),
    new_markdown_cell("## The dataset\nThe Kaggle layout is read and checked; the summary says what this run uses."),
    new_code_cell(
        'data = dataset.open_dataset(params["data_dir"])\n'
        "y = data.y\n"
        "train_idx, val_idx = split.get_or_make_split(paths.split_file(seed, val_fraction), data.train_ids, y,\n"
        "                                             val_fraction, seed)\n"
        "description = eda.describe_dataset(data, params, n_val=len(val_idx))\n"
        'write_json_atomic(paths.results / "dataset.json", description)\n'
        "description"
    ),
    new_markdown_cell("## Images per class\nLog scale: the rarest classes have a handful of images. Diamonds: Kaggle's training counts scaled to this dataset's size."),
    new_code_cell(
        "counts = eda.class_counts(y)\n"
        'save_table(counts, paths.results / "class_counts.csv")\n'
        'fig = plots.plot_class_counts(counts["count"], reference=counts["kaggle_scaled"],\n'
        '                              label="this dataset", reference_label="Kaggle (scaled)")\n'
        'plots.save_figure(fig, paths.figures / "eda_class_counts.png", source=made_by)\n'
        'counts.drop(columns="share")'
    ),
    new_markdown_cell("## Labels per image and co-occurrence\nMost images carry one or two labels; the heatmap shows P(column | row): how often a class comes with another."),
    new_code_cell(
        "per_image = eda.labels_per_image(y)\n"
        'plots.save_figure(plots.plot_labels_per_image(per_image), paths.figures / "eda_labels_per_image.png", source=made_by)\n'
        'plots.save_figure(plots.plot_cooccurrence(y), paths.figures / "eda_cooccurrence.png", source=made_by)\n'
        "per_image.to_frame().T"
    ),
    new_markdown_cell("## Sample images\nComposites (red microtubules, green protein, blue nucleus, yellow ER added to red and green) and the four channels separately. The green channel carries the labels."),
    new_code_cell(
        "rows = eda.montage_rows(y, n=8, seed=seed)\n"
        "images = dataset.load_samples(data.train_dir, [data.train_ids[r] for r in rows], size=256)\n"
        "titles = [data.train['labels'][r] for r in rows]\n"
        'plots.save_figure(plots.plot_montage(images, titles, mode="rgb"), paths.figures / "eda_montage_rgb.png", source=made_by)\n'
        'plots.save_figure(plots.plot_montage(images[:4], titles[:4], mode="channels"), paths.figures / "eda_montage_channels.png", source=made_by);'
    ),
    new_markdown_cell("## Channel intensities\nPer-image mean intensity of each stain, from the decoded cache the models train on (it is built here once and reused)."),
    new_code_cell(
        'images = open_cache(data, "train", params["image_size"], params["cache_dir"], workers=workers)\n'
        "stats = eda.channel_stats(images, eda.sample_rows(len(y), 500, seed))\n"
        'plots.save_figure(plots.plot_channel_stats(stats), paths.figures / "eda_channel_stats.png", source=made_by)\n'
        'stats.groupby("channel")[["mean", "std"]].describe().round(1)'
    ),
    new_markdown_cell("## Train / validation split\nIterative stratification over all 28 labels; every class with two or more images is on both sides, a class with a single image is in training."),
    new_code_cell(
        "balance = eda.split_counts(y, train_idx, val_idx)\n"
        'save_table(balance, paths.results / "split_balance.csv")\n'
        'fig = plots.plot_split_balance(balance["train"], balance["val"])\n'
        'plots.save_figure(fig, paths.figures / "eda_split_balance.png", source=made_by)\n'
        'print(f"{len(train_idx)} training and {len(val_idx)} validation images")'
    ),
])

# --------------------------------------------------------------------------- 02 baseline
BASE_PARAMS = {
    "image_size": (128, "model input side in px"),
    "val_fraction": (0.2, "the split of 01_eda"),
    "seed": (0, "seeds the split, the initial weights and the augmentation"),
    "workers": (2, "input-pipeline threads"),
    "variants": ([0, 1, 2], "base-model variants to train (0-7; 0 is the report's baseline)"),
    "epochs": (6, "epochs per base model (report: 40)"),
    "batch_size": (16, "images per gradient step"),
    "learning_rate": (0.002, "Adam's learning rate"),
    "augment": (True, "the report's imgaug augmentation"),
    "prior_bias": (True, "start the output bias at the classes' log-odds"),
    "figure_variants": ([0, 1, 2, 3, 4], "Figure 1 shows these base models (those trained)"),
}
baseline = notebook([
    new_markdown_cell(
        "# 02 · The baseline model and the base variants\n\n"
        "The report's CNN+DNN (after Haltuf's GAPNet-PL kernel): three conv blocks whose dropout outputs are "
        "globally average-pooled and concatenated, then a two-layer dense head with 28 sigmoid outputs. Here: its "
        "layer table, the table of base-model variants, their training, and the report's Figure 1."
    ),
    parameters(params_cell(BASE_PARAMS)),
    new_code_cell(setup_cell(BASE_PARAMS, "from hpa_utils.training import models, train\nfrom hpa_utils.io import save_table, write_json_atomic\n")),
    new_markdown_cell("## The model\nThe layer table at the report's input of 256x256x4 (597,388 parameters in the report)."),
    new_code_cell(
        "reference = models.build_variant(0, (256, 256, 4))\n"
        "layer_table = models.model_summary_table(reference)\n"
        'save_table(layer_table, paths.results / "model_table.csv")\n'
        "totals = models.parameter_counts(reference)\n"
        'write_json_atomic(paths.results / "model_table.json", totals)\n'
        "print(totals)\n"
        "layer_table"
    ),
    new_markdown_cell("## The base-model variants\nOther kernel sizes and dropout rates, as the report's eight base models (parameters at 256 px)."),
    new_code_cell(
        "variant_table = models.describe_variants((256, 256, 4))\n"
        'save_table(variant_table, paths.results / "variants.csv")\n'
        "variant_table"
    ),
    new_markdown_cell("## Training\nOne line per epoch per model and an overall line per model; a model already trained with the same settings is skipped, an interrupted one resumes."),
    new_code_cell(
        'data = train.load_training_data(params["data_dir"], params["cache_dir"], image_size,\n'
        "                                paths.split_file(seed, val_fraction), val_fraction, seed, workers)\n"
        "settings = train.TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,\n"
        "                               augment=augment, prior_bias=prior_bias, seed=seed)\n"
        "summaries = train.run_jobs(train.base_jobs(variants, data, settings, paths.models))"
    ),
    new_markdown_cell("## Figure 1: base models\nTrain loss, validation loss, train F1 and validation F1 per epoch (F1: Keras' macro F1 at threshold 0.5; dashed: the exact validation macro F1)."),
    new_code_cell(
        "shown = [v for v in figure_variants if v in variants]\n"
        "histories = {train.base_name(v): train.load_history(paths.models, train.base_name(v)) for v in shown}\n"
        'fig = plots.plot_training_curves(histories, title=f"Figure 1. Base models {shown}")\n'
        'plots.save_figure(fig, paths.figures / "fig1_base_models.png", source=made_by);'
    ),
    new_markdown_cell("## Validation macro F1 of every base model"),
    new_code_cell(
        "table = train.models_table(paths.models)\n"
        'bases = table[table["stage"] == "base"]\n'
        'save_table(bases, paths.results / "base_models.csv")\n'
        'fig = plots.plot_model_scores(bases.rename(columns={"val_macro_f1": "val_f1"}), title="Validation macro F1 of the base models")\n'
        'plots.save_figure(fig, paths.figures / "base_val_f1.png", source=made_by)\n'
        'bases[["model", "variant_name", "epochs", "val_macro_f1", "best_val_macro_f1", "best_epoch", "train_seconds"]]'
    ),
])

# --------------------------------------------------------------------------- 03 fine-tune
FT_PARAMS = {
    "image_size": (128, "model input side in px"),
    "val_fraction": (0.2, "the split of 01_eda"),
    "seed": (0, "seeds the initial weights and the augmentation"),
    "workers": (2, "input-pipeline threads"),
    "variants": ([0, 1, 2], "base models to fine-tune (trained by 02_baseline)"),
    "batch_size": (16, "images per gradient step"),
    "augment": (True, "the report's imgaug augmentation"),
    "stage_a_epochs": (2, "stage A: the CNN part (report: 10)"),
    "stage_b_epochs": (1, "stage B: the dense head (report: 4)"),
    "stage_c_epochs": (1, "stage C: the dense head again (report: 2)"),
    "stage_learning_rate": (0.0005, "Adam's learning rate in the stages"),
    "stage_figure_variant": (1, "Figures 2-4 show this base model's stages"),
}
finetune = notebook([
    new_markdown_cell(
        "# 03 · Fine-tuning in three stages\n\n"
        "As the report: from each pretrained base model, stage A retrains the CNN part with the dense head frozen, "
        "stage B then the dense head with the CNN frozen, stage C the dense head again. Each stage's model is kept, "
        "so every base model gives three more (the report: 8 base models, 24 fine-tuned, 32 in all)."
    ),
    parameters(params_cell(FT_PARAMS)),
    new_code_cell(setup_cell(FT_PARAMS, "from hpa_utils.training import train\nfrom hpa_utils.io import save_table\n")),
    new_markdown_cell("## Training the stages"),
    new_code_cell(
        'data = train.load_training_data(params["data_dir"], params["cache_dir"], image_size,\n'
        "                                paths.split_file(seed, val_fraction), val_fraction, seed, workers)\n"
        "stage_epochs = {\"A\": stage_a_epochs, \"B\": stage_b_epochs, \"C\": stage_c_epochs}\n"
        "stage_settings = {stage: train.TrainSettings(epochs=n, batch_size=batch_size, learning_rate=stage_learning_rate,\n"
        "                                             augment=augment, seed=seed) for stage, n in stage_epochs.items()}\n"
        "summaries = train.run_jobs(train.stage_jobs(variants, data, stage_settings, paths.models))"
    ),
    new_markdown_cell("## Figures 2-4: the stages of one base model\nCurves of stage A (CNN), B (dense head) and C (dense head again)."),
    new_code_cell(
        "shown = stage_figure_variant if stage_figure_variant in variants else variants[0]\n"
        'captions = {"A": "CNN part retrained", "B": "then the dense head", "C": "then the dense head again"}\n'
        'for number, stage in zip((2, 3, 4), "ABC"):\n'
        "    name = train.stage_name(shown, stage)\n"
        "    fig = plots.plot_training_curves({name: train.load_history(paths.models, name)},\n"
        '                                     title=f"Figure {number}. Base model {shown}, stage {stage}: {captions[stage]}")\n'
        '    plots.save_figure(fig, paths.figures / f"fig{number}_stage_{stage}.png", source=made_by)'
    ),
    new_markdown_cell("## Every model's validation macro F1, by base model and stage"),
    new_code_cell(
        "table = train.models_table(paths.models)\n"
        "table = table[table[\"variant\"].isin(variants)]\n"
        'save_table(table, paths.results / "models.csv")\n'
        'scores = table.rename(columns={"val_macro_f1": "val_f1", "variant": "base"})\n'
        'plots.save_figure(plots.plot_stage_heatmap(scores), paths.figures / "models_val_f1.png", source=made_by)\n'
        'table.pivot(index="variant", columns="stage", values="val_macro_f1")[["base", "A", "B", "C"]].round(3)'
    ),
])

# --------------------------------------------------------------------------- 04 ensemble
ENS_PARAMS = {
    "image_size": (128, "model input side in px"),
    "val_fraction": (0.2, "the split of 01_eda"),
    "seed": (0, "the split's seed"),
    "workers": (2, "decoding threads"),
    "variants": ([0, 1, 2], "the run's base variants (their stages are included)"),
    "ensemble_top_k": (6, "the weighted ensemble takes the k best models on validation (report: 6)"),
    "shift": ("fit", "weight is val F1 minus shift; fit: the best shift on validation; report: 0.34"),
    "threshold": ("fit", "probability threshold; fit: the best global one on validation"),
}
ensemble_nb = notebook([
    new_markdown_cell(
        "# 04 · Ensemble, thresholds and the submission\n\n"
        "As the report: a chosen set of models, each weighted by its validation macro F1 minus a shift, their "
        "predicted probabilities averaged and thresholded. The report's findings become experiments: the shift "
        "swept, the equal-weight ensemble of all models against the weighted one, every single model against "
        "the ensembles, and the choice of threshold. Every choice is made on validation; the test labels (the "
        "synthetic dataset's `solution.csv`, split into Kaggle's public and private parts) are only used to score."
    ),
    parameters(params_cell(ENS_PARAMS)),
    new_code_cell(setup_cell(ENS_PARAMS, "import numpy as np\nimport pandas as pd\n\nfrom hpa_utils.data import dataset\nfrom hpa_utils.evaluation import ensemble, metrics, submission\nfrom hpa_utils.training import train\nfrom hpa_utils.data.cache import open_cache\nfrom hpa_utils.io import save_table, write_json_atomic\n")),
    new_markdown_cell("## Predictions of every model\nComputed once per model and split and stored under `predictions/`, so the sweeps below cost no inference."),
    new_code_cell(
        'data = train.load_training_data(params["data_dir"], params["cache_dir"], image_size,\n'
        "                                paths.split_file(seed, val_fraction), val_fraction, seed, workers)\n"
        'source = dataset.open_dataset(params["data_dir"])\n'
        "table = train.models_table(paths.models)\n"
        'table = table[table["variant"].isin(variants)]\n'
        'splits = {"val": (data.images, data.val_indices)}\n'
        "if source.test_ids:\n"
        '    test_images = open_cache(source, "test", image_size, params["cache_dir"], workers=workers)\n'
        '    splits["test"] = (test_images, np.arange(len(test_images)))\n'
        'probs = train.predict_models(dict(zip(table["model"], table["path"])), splits, paths.predictions)\n'
        "y_test, usage = (submission.solution_labels(source.solution, source.test_ids)\n"
        '                 if source.solution.is_file() and source.test_ids else (None, None))\n'
        "sets, labels = ensemble.evaluation_sets(probs, data.y[data.val_indices], y_test, usage)\n"
        'print("scored on:", {name: len(y) for name, y in labels.items()})'
    ),
    new_markdown_cell("## Validation F1 of every model and the models chosen\nThe weights start from each model's validation macro F1 (threshold 0.5, as in training); the ensemble takes the best `ensemble_top_k` on validation."),
    new_code_cell(
        'val_f1 = ensemble.model_f1_scores(sets["val"], labels["val"], threshold=0.5)\n'
        "selected = ensemble.select_models(val_f1, k=ensemble_top_k)\n"
        'sweep = ensemble.shift_sweep({m: sets["val"][m] for m in selected}, val_f1[selected], labels["val"],\n'
        "                             shifts=ensemble.sweep_shifts(val_f1[selected]),\n"
        '                             extra_sets={k: ({m: sets[k][m] for m in selected}, labels[k]) for k in sets if k != "val"})\n'
        "chosen_shift, weights = ensemble.choose_weights(val_f1[selected], sweep, shift)\n"
        'p_val = ensemble.weighted_mean({m: sets["val"][m] for m in selected}, weights)\n'
        'chosen_threshold, _ = metrics.best_global_threshold(labels["val"], p_val) if threshold == "fit" else (float(threshold), None)\n'
        'print(f"shift {chosen_shift:.2f}, threshold {chosen_threshold:.2f}")\n'
        'pd.DataFrame({"val_f1": val_f1, "selected": val_f1.index.isin(selected), "weight": weights.reindex(val_f1.index).fillna(0)})'
    ),
    new_markdown_cell("## The shift\nThe report found the shift mattered a lot (0.34 vs 0.36 moved its public score by 0.02). Each row re-weights the chosen models and scores the ensemble at threshold 0.5 (as in training); blank where the shift removes every model."),
    new_code_cell(
        'save_table(sweep, paths.results / "shift_sweep.csv")\n'
        'plots.save_figure(plots.plot_shift_sweep(sweep, marked_shifts=(0.34, 0.36, chosen_shift)), paths.figures / "ensemble_shift_sweep.png", source=made_by)\n'
        'sweep[sweep["shift"].isin([0.34, 0.36, chosen_shift])].round(3)'
    ),
    new_markdown_cell("## Single models against the ensembles\nThe weighted ensemble of the chosen models, and the report's other finding: all models with equal weights."),
    new_code_cell(
        'ensembles = {"weighted (chosen)": dict(weights), "equal weights (all models)": {m: 1.0 for m in table["model"]}}\n'
        "comparison = ensemble.compare_models(sets, labels, ensembles, threshold=chosen_threshold)\n"
        'save_table(comparison, paths.results / "ensemble_comparison.csv")\n'
        'plots.save_figure(plots.plot_ensemble_comparison(comparison), paths.figures / "ensemble_comparison.png", source=made_by)\n'
        "comparison.round(3)"
    ),
    new_markdown_cell("## Thresholds\nA global 0.5, the best single global threshold and per-class thresholds, each fitted on validation and scored on held-out data (the test labels when known, else half of validation). Per-class thresholds fitted on few examples overfit: the gap shows it."),
    new_code_cell(
        'held_out = "private" if "private" in sets else None\n'
        "if held_out:\n"
        '    p_hold = ensemble.weighted_mean({m: sets[held_out][m] for m in selected}, weights)\n'
        '    study = ensemble.threshold_study(labels["val"], p_val, labels[held_out], p_hold)\n'
        "else:\n"
        "    fit_rows, hold_rows = ensemble.halves(len(p_val), seed)\n"
        '    study = ensemble.threshold_study(labels["val"][fit_rows], p_val[fit_rows], labels["val"][hold_rows], p_val[hold_rows])\n'
        'study.insert(1, "held_out", held_out or "validation half")\n'
        'save_table(study.drop(columns="thresholds"), paths.results / "thresholds.csv")\n'
        'plots.save_figure(plots.plot_threshold_study(study), paths.figures / "thresholds.png", source=made_by)\n'
        'study.drop(columns="thresholds").round(3)'
    ),
    new_markdown_cell("## Per-class F1 of the ensemble on validation"),
    new_code_cell(
        'per_class = metrics.f1_per_class(labels["val"], metrics.binarize(p_val, chosen_threshold))\n'
        "train_counts = data.y[data.train_indices].sum(axis=0)\n"
        'plots.save_figure(plots.plot_per_class_f1(per_class, counts=train_counts), paths.figures / "per_class_f1.png", source=made_by);'
    ),
    new_markdown_cell("## Submission and leaderboard\n`submission.csv` in Kaggle's format (the sample submission's Id order). With a solution file, each submission is scored on the public and private parts, like Kaggle's leaderboard."),
    new_code_cell(
        "entries = ensemble.leaderboard_entries(comparison, ensembles)\n"
        "rows = []\n"
        "for stem, description, members in entries:\n"
        '    path = paths.submission if stem == "submission" else paths.results / "submissions" / f"{stem}.csv"\n'
        '    p_test = ensemble.weighted_mean({m: probs["test"][m] for m in members}, members) if "test" in probs else None\n'
        "    if p_test is None:\n"
        "        continue\n"
        "    submission.make_submission(source.sample_submission, source.test_ids, p_test, chosen_threshold, path)\n"
        "    scores = submission.score_submission(path, source.solution) if source.solution.is_file() else {}\n"
        '    rows.append({"submission": path.name, "description": description,\n'
        '                 "public_f1": scores.get("public"), "private_f1": scores.get("private")})\n'
        "leaderboard = pd.DataFrame(rows)\n"
        'save_table(leaderboard, paths.results / "leaderboard.csv")\n'
        "leaderboard.round(3)"
    ),
    new_code_cell(
        'final = comparison.set_index("name").loc["weighted (chosen)"]\n'
        'write_json_atomic(paths.results / "ensemble.json", {\n'
        '    "selected": selected, "weights": dict(weights), "shift": chosen_shift, "shift_setting": shift,\n'
        '    "threshold": chosen_threshold, "threshold_method": "best global on validation" if threshold == "fit" else "fixed",\n'
        '    "val_f1": final.get("val_f1"), "public_f1": final.get("public_f1"), "private_f1": final.get("private_f1")})\n'
        'print(f"submission: {paths.submission if paths.submission.is_file() else \'none (no test set)\'}")'
    ),
])

for name, nb in (("01_eda", eda), ("02_baseline", baseline), ("03_finetune", finetune), ("04_ensemble", ensemble_nb)):
    for index, cell in enumerate(nb.cells):  # stable ids keep the sources diffable
        cell.id = f"{name[:2]}-{index:02d}"
    nbformat.write(nb, ROOT / "notebooks" / f"{name}.ipynb")
    print("wrote", name)
