"""Every figure of the report, drawn from the DataFrames and arrays it is given.

This package never trains, loads models or reads the dataset: callers pass the
numbers, each function returns a :class:`matplotlib.figure.Figure`, and
:func:`save_figure` writes it. Figures are drawn in one seaborn theme
(whitegrid, colourblind palette, fonts of 9.9 pt and up) whatever the global
matplotlib state; :func:`use_style` applies the same theme globally, for the
notebook's own plots. Classes are shown by name ("0 Nucleoplasm"), never by id
alone. Importing the package changes no global state (no backend choice, no rcParams).

Modules: :mod:`.style` (theme, saving, shared input helpers); :mod:`.eda` (label
statistics); :mod:`.images` (composites, montages, channel intensity);
:mod:`.training` (curves, one model's stages on one epoch axis, per-model scores, stages);
:mod:`.evaluation` (ensembles, thresholds, per-class F1; :func:`set_labels` names the test set's parts);
:mod:`.beyond` (notebook 05: the ablation's intervals, Grad-CAM maps); :mod:`.explore` (notebook 06: a
class's images with the predictor's output, what a class is confused with).
:func:`format_list` writes a list for a title ("Base models 0, 1, 2 and 3"). Titles carry no figure
number: the HTML report numbers its figures.
"""

from hpa_utils.reporting.plots.beyond import plot_ablation, plot_gradcam
from hpa_utils.reporting.plots.eda import (
    plot_class_counts,
    plot_cooccurrence,
    plot_labels_per_image,
    plot_split_balance,
)
from hpa_utils.reporting.plots.evaluation import (
    plot_ensemble_comparison,
    plot_per_class_f1,
    plot_shift_sweep,
    plot_threshold_study,
    set_labels,
)
from hpa_utils.reporting.plots.explore import plot_class_gallery, plot_confusions
from hpa_utils.reporting.plots.images import plot_channel_stats, plot_montage, rgb_composite
from hpa_utils.reporting.plots.style import format_list, save_figure, use_style
from hpa_utils.reporting.plots.training import (
    plot_model_scores,
    plot_stage_chain,
    plot_stage_heatmap,
    plot_training_curves,
)

__all__ = [
    "format_list",
    "plot_ablation",
    "plot_channel_stats",
    "plot_class_counts",
    "plot_class_gallery",
    "plot_confusions",
    "plot_cooccurrence",
    "plot_gradcam",
    "plot_ensemble_comparison",
    "plot_labels_per_image",
    "plot_model_scores",
    "plot_montage",
    "plot_per_class_f1",
    "plot_shift_sweep",
    "plot_split_balance",
    "plot_stage_chain",
    "plot_stage_heatmap",
    "plot_threshold_study",
    "plot_training_curves",
    "rgb_composite",
    "save_figure",
    "set_labels",
    "use_style",
]
