"""A notebook's door into its run: :func:`open_run`, called once by each notebook's first code cell.

It configures the process (:func:`hpa_utils.run.runtime.configure`), opens the run's configuration
(the one ``hpa run`` resolved and wrote, else the preset's, with a notebook's own overrides),
makes sure the embedded synthetic dataset exists, and returns a :class:`Run`: the configuration,
the run's paths, and :meth:`Run.save_figure`, which saves a figure labelled with the run that made it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hpa_utils.run.config import DEFAULT_PRESET, RunConfig, RunPaths, load_config, resolve_config


@dataclass(frozen=True)
class Run:
    """One run, as a notebook uses it."""

    config: RunConfig

    @property
    def paths(self) -> RunPaths:
        return self.config.paths

    def save_figure(self, fig, name: str) -> Path:
        """Save ``fig`` as ``figures/<name>.png``, with a footer and PNG metadata naming the run; in a
        notebook, also show it in the cell's output (the executed notebook keeps it) and close it."""
        import sys

        from hpa_utils.reporting.plots import save_figure

        path = save_figure(fig, self.paths.figures / f"{name}.png", source=self.config.label)
        if "ipykernel" in sys.modules:  # the saved PNG itself, whatever matplotlib backend the kernel has
            import matplotlib.pyplot as plt
            from IPython.display import Image, display

            display(Image(data=path.read_bytes(), format="png"))
            plt.close(fig)
        return path

    def _repr_markdown_(self) -> str:
        config = self.config
        data = "the embedded synthetic dataset" if config.synthetic else "real data"
        return (
            f"Run **{config.preset}** ({config.description}): {data} at `{config.data_dir}`, "
            f"outputs in `{config.output_dir}`, seed {config.seed}."
        )


def open_run(
    preset: str = DEFAULT_PRESET,
    output_dir: str | Path | None = None,
    overrides: Mapping[str, object] | None = None,
    log: Callable[[str], None] = print,
) -> Run:
    """The run a notebook works on.

    Without overrides, the run directory's ``config.json`` (written by ``hpa run``, with its ``-p``
    overrides and ``--data-dir``) is used when it was made from the same preset; otherwise the preset
    is resolved with ``overrides`` (e.g. ``{"train.base.epochs": 3}``) and written there, so the
    notebooks that follow open the same configuration.

    Args:
        preset: a preset name (``presets/<name>.yaml``) or path.
        output_dir: the run directory (default ``runs/<preset>``).
        overrides: dotted keys -> values, applied to the preset.
        log: where the one-line note about generating the synthetic dataset goes.
    """
    from hpa_utils.run import runtime

    runtime.configure()
    config = resolve_config(preset, dict(overrides or {}), output_dir=output_dir)
    saved = config.paths.config
    stored = load_config(saved) if saved.is_file() else None
    if stored is not None and not overrides and stored.preset == config.preset:
        config = stored
    if config != stored:
        config.paths.make()
        config.save()
    ensure_dataset(config, log)
    return Run(config)


def ensure_dataset(config: RunConfig, log: Callable[[str], None] = print) -> None:
    """Generate the embedded synthetic dataset when the run uses it (skipped when complete and made
    by this generator version; regenerated otherwise). Only the project's own ``data/synthetic-*``
    folders are ever written: a data directory given by the user is read-only input."""
    if not config.synthetic:
        return
    from hpa_utils.data.synth import generate_dataset

    summary = generate_dataset(
        config.data_dir,
        n_train=config.synth.n_train,
        n_test=config.synth.n_test,
        size=config.synth.size,
        seed=config.synth.seed,
        overwrite=True,  # the project's own generated data: a newer generator version replaces it
    )
    if not summary.get("skipped"):
        log(f"synthetic dataset {config.data_dir}: generated in {summary.get('seconds', 0):.0f} s")
