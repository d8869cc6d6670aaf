"""Notebook 06's explorer of a finished run: the questions a student asks after reading the report, as widgets.

What it shows is computed by :mod:`hpa_utils.studies.explore` (plain functions, tested without a browser: the
images a filter returns, the F1 at a set of thresholds, what a class is confused with); its figures are
:mod:`hpa_utils.reporting.plots.explore`'s. :class:`Explorer` builds the ipywidgets (one class picker shared by
every view, a threshold slider per class and a global one) and wires them to those functions; each of its views
(:attr:`Explorer.images`, :attr:`Explorer.thresholds`, :attr:`Explorer.confusions`) shows as the live widgets in
JupyterLab and carries its first view as a static image or HTML table for a front end without widgets
(papermill's executed copy, nbconvert), so the notebook runs headless and its executed copy still shows something.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from hpa_utils.data.labels import CLASS_NAMES, NUM_CLASSES
from hpa_utils.studies.explore import (
    FILTERS,
    Exploration,
    Scores,
    confusions,
    gallery_panels,
    outcomes,
    predicted,
    scores_at,
    select_images,
    threshold_table,
)

#: Images per page of the gallery.
PER_PAGE = 8


def figure_bytes(fig, format: str = "png") -> bytes:
    """The figure as PNG (or JPEG: the microscope images' gallery, a quarter of the size) bytes, then closed (so
    a notebook's inline backend never shows it twice)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    extra = {"pil_kwargs": {"quality": 88}} if format == "jpeg" else {}
    fig.savefig(buffer, format=format, dpi=100, bbox_inches="tight", facecolor="white", **extra)
    plt.close(fig)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the widgets


class View:
    """A widget that shows itself live where a widget manager runs (JupyterLab) and, in the same output, its
    first view as an image or ``text/html`` for a front end without one (the executed copy)."""

    def __init__(self, widget, static: dict[str, str], text: str):
        self.widget, self.static, self.text = widget, static, text

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {**self.static, **self.widget._repr_mimebundle_(), "text/plain": self.text}


class Explorer:
    """The explorer's widgets, wired: one class picker for every view; a filter and pages for the images; a
    threshold slider per class and a global one, with each class's F1 and the macro F1 as they move; what the
    picked class is confused with. Every view follows the thresholds set.

    Args:
        exploration: the run's validation images and chosen predictor
            (:func:`hpa_utils.studies.explore.open_exploration`).
        class_id: the class shown first (default: the one with the most validation images).
        per_page: images per page.
    """

    def __init__(self, exploration: Exploration, class_id: int | None = None, per_page: int = PER_PAGE):
        import ipywidgets as w

        self.data = exploration
        self.per_page = per_page
        self.class_thresholds = np.full(NUM_CLASSES, float(exploration.threshold))
        counts = exploration.y_true.sum(axis=0).astype(int)
        first = int(np.argmax(counts)) if class_id is None else int(class_id)
        self.page = 0
        self._batch = False
        self._drawn: dict[str, object] = {}
        self.picker = w.Dropdown(
            options=[(f"{c} {CLASS_NAMES[c]} ({counts[c]} validation images)", c) for c in range(NUM_CLASSES)],
            value=first,
            description="class",
            layout=w.Layout(width="32em"),
        )
        self.filter = w.ToggleButtons(
            options=list(FILTERS), value="all", description="show", tooltips=list(FILTERS.values())
        )
        self.previous = w.Button(description="previous", icon="arrow-left", layout=w.Layout(width="9em"))
        self.next = w.Button(description="next", icon="arrow-right", layout=w.Layout(width="9em"))
        self.where = w.HTML()
        self.gallery = w.Image(format="jpeg", layout=w.Layout(max_width="100%"))
        self.macro = w.HTML()
        slider = {"min": 0.01, "max": 0.99, "step": 0.01, "readout_format": ".2f", "continuous_update": True}
        self.global_slider = w.FloatSlider(
            value=exploration.threshold, description="every class", style={"description_width": "8em"}, **slider
        )
        wide = w.Layout(width="auto")
        self.to_chosen = w.Button(description=f"all at the chosen global {exploration.threshold:.2f}", layout=wide)
        self.to_fitted = w.Button(description="all at the fitted per-class", layout=wide)
        self.names = [w.HTML(layout=w.Layout(width="19em")) for _ in range(NUM_CLASSES)]
        self.sliders = [w.FloatSlider(value=exploration.threshold, **slider) for _ in range(NUM_CLASSES)]
        self.fitted_labels = [w.HTML(f"fitted {t:.2f}", layout=w.Layout(width="7em")) for t in exploration.fitted]
        self.f1_labels = [w.HTML(layout=w.Layout(width="6em")) for _ in range(NUM_CLASSES)]
        self.confusion_image = w.Image(format="png", layout=w.Layout(max_width="100%"))

        self.picker.observe(self._on_class, "value")
        self.filter.observe(self._on_filter, "value")
        self.previous.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(+1))
        self.global_slider.observe(lambda change: self.set_all(change["new"]), "value")
        self.to_chosen.on_click(lambda _: self.set_all(exploration.threshold))
        self.to_fitted.on_click(lambda _: self.set_all(exploration.fitted))
        for c, widget in enumerate(self.sliders):
            widget.observe(lambda change, c=c: self._on_threshold(c, change["new"]), "value")
        self._refresh()

    # ----------------------------------------------------------------- state

    @property
    def class_id(self) -> int:
        return int(self.picker.value)

    @property
    def predictions(self) -> np.ndarray:
        """(N, C) 0/1 predictions at the thresholds set."""
        return predicted(self.data.probabilities, self.class_thresholds)

    @property
    def scores(self) -> Scores:
        return scores_at(self.data.y_true, self.data.probabilities, self.class_thresholds)

    def shown(self) -> np.ndarray:
        """The validation images on the current page."""
        rows = select_images(
            self.data.y_true, self.predictions, self.data.probabilities, self.class_id, self.filter.value
        )
        return rows[self.page * self.per_page : (self.page + 1) * self.per_page]

    def set_all(self, thresholds) -> None:
        """Every class's slider to ``thresholds`` (one value, or one per class); one refresh."""
        values = np.broadcast_to(np.asarray(thresholds, dtype=float), (NUM_CLASSES,))
        self._batch = True
        try:
            for widget, value in zip(self.sliders, values):
                widget.value = round(float(value), 2)
        finally:
            self._batch = False
        self.class_thresholds = np.array([widget.value for widget in self.sliders])
        self._refresh()

    # ----------------------------------------------------------------- callbacks

    def _on_class(self, change) -> None:
        self.page = 0
        self._refresh()

    def _on_filter(self, change) -> None:
        self.page = 0
        self._refresh()

    def _turn(self, step: int) -> None:
        self.page += step
        self._refresh()

    def _on_threshold(self, class_id: int, value: float) -> None:
        self.class_thresholds[class_id] = float(value)
        if not self._batch:
            self._refresh()

    def _refresh(self) -> None:
        """Scores, the gallery and the confusions at the state set; a figure is drawn again only when what
        it shows has changed."""
        from hpa_utils.reporting.plots.explore import plot_class_gallery, plot_confusions

        data, c = self.data, self.class_id
        scores, y_pred = self.scores, self.predictions
        chosen = scores_at(data.y_true, data.probabilities, data.threshold).macro
        fitted = scores_at(data.y_true, data.probabilities, data.fitted).macro
        self.macro.value = (
            f"<b>macro F1 on validation ({len(data)} images): {scores.macro:.3f}</b> at these thresholds; "
            f"{chosen:.3f} at the chosen global threshold {data.threshold:.2f}; {fitted:.3f} at the fitted "
            "per-class thresholds (fitted on these same images, so optimistic)"
        )
        for k, label in enumerate(self.f1_labels):
            text = f"F1 {scores.per_class[k]:.2f}"
            label.value = f"<b>{text}</b>" if k == c else text
        for k, name in enumerate(self.names):
            plain = f"{k} {CLASS_NAMES[k]} ({int(data.y_true[:, k].sum())})"
            name.value = f"<b>{plain}</b>" if k == c else plain

        rows = select_images(data.y_true, y_pred, data.probabilities, c, self.filter.value)
        pages = max(1, int(np.ceil(len(rows) / self.per_page)))
        self.page = min(max(self.page, 0), pages - 1)
        shown = rows[self.page * self.per_page : (self.page + 1) * self.per_page]
        self.previous.disabled, self.next.disabled = self.page == 0, self.page >= pages - 1
        first = self.page * self.per_page
        self.where.value = (
            f"images {first + 1}-{first + len(shown)} of {len(rows)}: {FILTERS[self.filter.value]}"
            if len(rows)
            else f"no image: {FILTERS[self.filter.value]}"
        )
        outcome = outcomes(data.y_true, y_pred, c)
        key = (c, tuple(int(i) for i in shown), tuple(outcome[shown]))
        if self._drawn.get("gallery") != key:
            panels = gallery_panels(data, shown, c, y_pred)
            self.gallery.value = figure_bytes(plot_class_gallery(panels, c), "jpeg")
            self._drawn["gallery"] = key
        table = confusions(data.y_true, y_pred, c)
        key = (c, table.drop(columns="name").to_numpy().tobytes())
        if self._drawn.get("confusions") != key:
            self.confusion_image.value = figure_bytes(plot_confusions(table, c))
            self._drawn["confusions"] = key

    # ----------------------------------------------------------------- views

    @property
    def images(self) -> View:
        """The class picker, the filter and pages, and the gallery."""
        import ipywidgets as w

        box = w.VBox([self.picker, self.filter, w.HBox([self.previous, self.next, self.where]), self.gallery])
        static = {"image/jpeg": base64.b64encode(self.gallery.value).decode("ascii")}
        return View(box, static, f"{CLASS_NAMES[self.class_id]}: {self.where.value}")

    @property
    def thresholds(self) -> View:
        """The global slider, the two presets, and a slider per class with its fitted threshold and F1."""
        import ipywidgets as w

        rows = [
            w.HBox([name, slider, fitted, f1])
            for name, slider, fitted, f1 in zip(self.names, self.sliders, self.fitted_labels, self.f1_labels)
        ]
        box = w.VBox([self.macro, w.HBox([self.global_slider, self.to_chosen, self.to_fitted]), *rows])
        table = threshold_table(self.data, self.class_thresholds)
        html = f"<p>{self.macro.value}</p>" + table.to_html(float_format="{:.2f}".format)
        return View(box, {"text/html": html}, table.to_string(float_format="{:.2f}".format))

    @property
    def confusions(self) -> View:
        """The class picker and what the class is confused with."""
        import ipywidgets as w

        box = w.VBox([self.picker, self.confusion_image])
        static = {"image/png": base64.b64encode(self.confusion_image.value).decode("ascii")}
        return View(box, static, f"{CLASS_NAMES[self.class_id]}: what it is confused with")
