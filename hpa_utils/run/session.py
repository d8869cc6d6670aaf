"""A notebook's door into its run: :func:`open_run`, called once by each notebook's first code cell.

It configures the process (:func:`hpa_utils.config.runtime.configure`), opens the run's configuration
(the one ``hpa run`` resolved and wrote, else the preset's, with a notebook's own overrides),
makes sure the embedded synthetic dataset exists, and returns a :class:`Run`: the configuration,
the run's paths, and :meth:`Run.save_figure`, which saves a figure labelled with the run that made it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hpa_utils.config import runtime
from hpa_utils.config.resolve import derive_config, load_config, resolve_config
from hpa_utils.config.run_config import CONFIG_FILE, DEFAULT_PRESET, RUNS_DIR, RunConfig, RunPaths, config_digest


@dataclass(frozen=True)
class Run:
    """One run, as a notebook uses it: its configuration, and the overrides it was opened with (with the run
    directory they were applied to), if any."""

    config: RunConfig
    overrides: Mapping[str, object] = field(default_factory=dict)
    base: Path | None = None

    @property
    def paths(self) -> RunPaths:
        return self.config.paths

    def save_figure(self, fig, name: str) -> Path:
        """Save ``fig`` as ``figures/<name>.png``, with a footer and PNG metadata naming the run; in a
        notebook, also show it in the cell's output (the executed notebook keeps it) and close it."""
        from hpa_utils.reporting.plots import save_figure  # deferred: matplotlib

        path = save_figure(fig, self.paths.figures / f"{name}.png", source=self.config.label)
        if "ipykernel" in sys.modules:  # the saved PNG itself, whatever matplotlib backend the kernel has
            # deferred: matplotlib, and IPython (in a kernel only)
            import matplotlib.pyplot as plt
            from IPython.display import Image, display

            display(Image(data=path.read_bytes(), format="png"))
            plt.close(fig)
        return path

    def _repr_markdown_(self) -> str:
        config = self.config
        data = "the embedded synthetic dataset" if config.synthetic else "real data"
        text = (
            f"Run **{config.preset}** ({config.description}): {data} at `{config.data_dir}`, "
            f"outputs in `{config.output_dir}`, seed {config.seed}."
        )
        if self.overrides:
            changed = ", ".join(f"`{key}={value!r}`" for key, value in self.overrides.items())
            origin = f"the run in `{self.base}`" if self.base else f"preset {config.preset}"
            text += f" Overrides {changed}, applied to {origin}: a run of its own, which leaves that one as it is."
        return text


def open_run(
    preset: str | Path = DEFAULT_PRESET,
    output_dir: str | Path | None = None,
    overrides: Mapping[str, object] | str | None = None,
    log: Callable[[str], None] = print,
) -> Run:
    """The run a notebook works on.

    Without overrides: the run in ``output_dir`` (default ``runs/<preset>``) as its ``config.json`` says
    (written by ``hpa run`` with its ``-p`` overrides and ``--data-dir``); where there is none yet, the preset
    is resolved and the run created there.

    With overrides (e.g. ``{"train.base.epochs": 1}``): a new run, never a changed one. They are applied on
    top of the stored run's configuration (its data directory included), else the preset's, and the result
    works in a directory of its own: ``<output_dir>-<8 hex digits of its configuration>`` (so the same
    overrides find the same directory again), or ``output_dir`` itself when the user names a folder that
    holds no run yet. A run's ``config.json`` is written once, by whoever creates the run.

    Args:
        preset: a preset name (``presets/<name>.yaml``) or path.
        output_dir: the run directory (default ``runs/<preset>``).
        overrides: dotted keys -> values (or their YAML/JSON text).
        log: where the one-line note about generating the synthetic dataset goes.

    Raises:
        ValueError: a bad override, or ``output_dir`` holds a run of another preset.
    """
    runtime.configure()
    overrides = parse_overrides(overrides)
    name = preset_name(preset)
    base_dir = Path(output_dir).expanduser().resolve() if output_dir else RUNS_DIR / name
    stored = _stored_run(base_dir, name)
    if not overrides:
        config = stored or _create(resolve_config(preset, output_dir=base_dir))
        ensure_dataset(config, log)
        return Run(config)
    if stored is None and output_dir is not None:  # a folder the user named for this run
        config = resolve_config(preset, overrides, output_dir=base_dir)
        config = _create(config)
        ensure_dataset(config, log)
        return Run(config, overrides)
    start = stored or resolve_config(preset, output_dir=base_dir)
    derived = derive_config(start, overrides, output_dir=base_dir)
    target = base_dir.with_name(f"{base_dir.name}-{config_digest(derived)}")
    derived = derive_config(start, overrides, output_dir=target)
    config = _stored_run(target, name) or _create(derived)
    if config != derived:
        raise ValueError(
            f"{target / CONFIG_FILE} holds another configuration than these overrides give; "
            "remove that folder or pass another output_dir"
        )
    ensure_dataset(config, log)
    return Run(config, overrides, base_dir if stored else None)


def parse_overrides(overrides: Mapping[str, object] | str | None) -> dict:
    """A notebook's ``overrides`` as a dict: a mapping, or its text as YAML or JSON (what ``papermill -p
    overrides '{"seed": 1}'`` passes).

    Raises:
        ValueError: the text is not a mapping.
    """
    if isinstance(overrides, str):
        try:
            parsed = yaml.safe_load(overrides) if overrides.strip() else {}
        except yaml.YAMLError as error:
            raise ValueError(f"overrides {overrides!r} are not a mapping such as {{'seed': 1}} ({error})") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"overrides {overrides!r} are not a mapping such as {{'seed': 1}}")
        overrides = parsed
    return dict(overrides or {})


def preset_name(preset: str | Path) -> str:
    """The name a preset's runs go by: its name, or a preset file's stem."""
    return Path(preset).stem if Path(str(preset)).suffix else str(preset)


def _stored_run(folder: Path, name: str) -> RunConfig | None:
    """The configuration of the run in ``folder``, or None where there is none.

    Raises:
        ValueError: it is a run of another preset.
    """
    saved = folder / CONFIG_FILE
    if not saved.is_file():
        return None
    stored = load_config(saved)
    if stored.preset != name:
        raise ValueError(
            f"{folder} holds a run of preset {stored.preset!r}, not {name!r}: open it with preset={stored.preset!r},"
            " or pass another output_dir"
        )
    return stored


def _create(config: RunConfig) -> RunConfig:
    """Make the run's folders and write its ``config.json``, which marks the run as created."""
    config.paths.make()
    config.save()
    return config


def ensure_dataset(config: RunConfig, log: Callable[[str], None] = print) -> None:
    """Generate the embedded synthetic dataset when the run uses it (skipped when complete and made
    by this generator version; regenerated otherwise). Only the project's own ``data/synthetic-*``
    folders are ever written: a data directory given by the user is read-only input."""
    if not config.synthetic:
        return
    # deferred: OpenCV
    from hpa_utils.data.synth import generate_dataset

    summary = generate_dataset(
        config.data_dir,
        n_train=config.synth.n_train,
        n_test=config.synth.n_test,
        size=config.synth.size,
        seed=config.synth.seed,
        test_prior_shift=config.synth.test_prior_shift,
        overwrite=True,  # the project's own generated data: a newer generator version replaces it
    )
    if not summary.get("skipped"):
        log(f"synthetic dataset {config.data_dir}: generated in {summary.get('seconds', 0):.0f} s")
