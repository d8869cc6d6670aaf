"""``hpa run``: resolve the configuration once, execute the numbered notebooks in order with
papermill, then render the report.

Data flows preset -> :mod:`hpa_utils.config.resolve` (once, written to the run's ``config.json``) ->
here -> papermill -> notebook -> :mod:`hpa_utils.studies` -> files under the run's output directory
-> :mod:`hpa_utils.reporting`. A notebook is skipped when its fingerprint (its source, the
configuration sections it uses, the library code it imports and its upstream notebooks' fingerprints,
see :mod:`hpa_utils.run.fingerprint`) matches the stamp its last successful execution left; ``force``
re-runs everything. A failing notebook stops the run with its error; the executed copy stays for
reading and no stamp is written, so the next run retries it. Ctrl-C interrupts the running notebook's
kernel, shuts it down and stops the run, keeping everything already finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from hpa_utils.config import runtime
from hpa_utils.config.checks import check_against_dataset
from hpa_utils.config.paths import user_cache_dir
from hpa_utils.config.resolve import resolve_config
from hpa_utils.config.run_config import NOTEBOOKS_DIR, RunConfig
from hpa_utils.config.techniques import SWITCHES
from hpa_utils.errors import DataError
from hpa_utils.io import write_json_atomic
from hpa_utils.reporting.render import render_report
from hpa_utils.run.fingerprint import notebook_fingerprint
from hpa_utils.run.session import ensure_dataset
from hpa_utils.training.device import cpu_warning, detect_device
from hpa_utils.training.executor import plan_processes


@dataclass(frozen=True)
class Notebook:
    """One numbered notebook: its name, the configuration sections it reads, the notebook before it."""

    name: str
    uses: tuple[str, ...]
    upstream: str | None
    switch: str | None = None  # a true/false key that turns the notebook on; None: always run

    def enabled(self, config: RunConfig) -> bool:
        return self.switch is None or bool(config.section(self.switch))


_DATA = ("preset", "seed", "data", "synth")
_TECHNIQUES = tuple(f"train.{key}" for key in SWITCHES)
#: The notebooks in run order. ``uses``: dotted configuration keys; changing one re-runs the notebook
#: and, through ``upstream``, every notebook after it.
NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("01_eda", _DATA, None),
    Notebook(
        "02_baseline",
        (
            *_DATA,
            "train.variants",
            "train.batch_size",
            "train.augment",
            "train.base",
            *_TECHNIQUES,
            "report.figure_variants",
        ),
        "01_eda",
    ),
    Notebook("03_finetune", (*_DATA, "train", "report.stage_figure_variant"), "02_baseline"),
    Notebook("04_ensemble", (*_DATA, "train.variants", "ensemble"), "03_finetune"),
    # 05 reads the trained models (03), not the ensemble: a new ensemble setting does not re-run it
    Notebook("05_beyond", (*_DATA, "train", "beyond"), "03_finetune", switch="beyond.run"),
    # 06 explores the predictor 04 chose (its ensemble.json, the stored predictions): any change to 04 re-runs it
    Notebook("06_explore", (*_DATA, "ensemble"), "04_ensemble"),
)
NOTEBOOK_NAMES = tuple(notebook.name for notebook in NOTEBOOKS)
KERNEL_DISPLAY_NAME = "Python (hpa run)"
#: Seconds a kernel has to stop after Ctrl-C before it is killed.
INTERRUPT_GRACE_SECONDS = 8.0


class NotebookFailed(RuntimeError):
    """A notebook raised: the message holds the notebook, the failing cell's error and where the log is."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; the message says where, and that re-running resumes."""


def kernel_name() -> str:
    """A kernel name unique to this environment, so ``hpa run`` executes the project's Python whatever
    kernels the user has registered (a user-level 'python3' cannot shadow it)."""
    return "hpa-" + hashlib.sha1(sys.prefix.encode()).hexdigest()[:8]


def private_kernels_root() -> Path:
    """Where ``hpa run`` keeps its kernelspec: inside this environment but outside every folder Jupyter
    lists, so JupyterLab's launcher shows only the ``python3`` kernel a student knows. An environment that is
    not writable (``pip install --user`` on the system's Python) keeps it in the user's cache instead."""
    root = Path(sys.prefix) / "share" / "hpa-utils" / "jupyter"
    existing = next(folder for folder in [root, *root.parents] if folder.exists())
    return root if os.access(existing, os.W_OK) else user_cache_dir() / "jupyter"


def install_kernel(name: str | None = None, display_name: str = KERNEL_DISPLAY_NAME) -> str:
    """Write ``hpa run``'s kernelspec into :func:`private_kernels_root` and make it visible to this process
    only (``JUPYTER_PATH``); returns its name.

    It is this interpreter's plain ipykernel, quieted (ipykernel warns on every start that its local
    transport is unencrypted). The runtime settings are made by the notebook's ``open_run``. The
    notebooks themselves name the ``python3`` kernel that every environment with ipykernel has, so
    ``papermill`` and JupyterLab run them as they are. A copy that an earlier version installed into
    Jupyter's own kernel folder (where the launcher listed it) is removed.
    """
    name = name or kernel_name()
    root = private_kernels_root()
    folder = root / "kernels" / name
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--IPKernelApp.log_level=ERROR",
        ],
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True},
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "kernel.json"
    if not target.is_file() or json.loads(target.read_text()) != spec:
        target.write_text(json.dumps(spec, indent=1))
    old = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    if (old / "kernel.json").is_file() and json.loads((old / "kernel.json").read_text()).get("display_name") in (
        display_name,
        KERNEL_DISPLAY_NAME,
    ):
        shutil.rmtree(old, ignore_errors=True)
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if str(root) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([*paths, str(root)])
    return name


def check_dataset(config: RunConfig, log: Callable[[str], None] = print) -> None:
    """Validate the dataset before any notebook runs (PNG headers here; the cache build decodes every
    image), then the settings that depend on it (:func:`hpa_utils.config.checks.check_against_dataset`).

    Raises:
        DataError: the dataset's problems, each naming the file and CSV line.
        ValueError: a setting the dataset cannot serve (the model input larger than the images, a batch
            larger than the training images).
    """
    # deferred: OpenCV
    from hpa_utils.data.dataset import validate_dataset

    data_dir = config.data_dir
    report = validate_dataset(data_dir, decode=False)
    if not report.ok:
        raise DataError(problems=report.problems)
    side = min((min(int(n) for n in size.split("x")) for size in report.image_sizes), default=0)
    check_against_dataset(config, report.n_train, side)
    sizes = ", ".join(sorted(report.image_sizes))
    log(f"dataset {data_dir}: {report.n_train} training and {report.n_test} test Ids, images {sizes}: valid")


def format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class _Indented:
    """A text stream that indents every line, for the notebooks' own output on the console."""

    def __init__(self, stream, prefix: str = "    "):
        self.stream, self.prefix, self.at_line_start = stream, prefix, True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self.at_line_start and piece.strip():
                self.stream.write(self.prefix)
            self.stream.write(piece)
            self.at_line_start = piece.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _KernelInterrupter:
    """While a notebook executes, Ctrl-C interrupts its kernel instead of the runner.

    Jupyter starts kernels in a session of their own, so a Ctrl-C at the terminal never reaches them.
    On the first SIGINT the kernel (every child process of this one) gets SIGINT, which stops the
    running cell; papermill then reports the interrupted cell and shuts the kernel down. A kernel still
    alive after :data:`INTERRUPT_GRACE_SECONDS`, or a second Ctrl-C, kills it. Outside this context
    (in the main thread only) SIGINT behaves as usual.
    """

    def __init__(self):
        self.interrupted = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def _handle(self, signum, frame):
        first = not self.interrupted
        self.interrupted = True
        self._signal_kernels(signal.SIGINT if first else signal.SIGKILL)
        if first:
            timer = threading.Timer(INTERRUPT_GRACE_SECONDS, self._signal_kernels, args=(signal.SIGKILL,))
            timer.daemon = True
            timer.start()

    @staticmethod
    def _signal_kernels(signum) -> None:
        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(signum)
            except psutil.Error:
                pass


def execute_notebook(name: str, config: RunConfig, kernel: str, echo: bool = True) -> float:
    """Run one notebook with papermill into the run's ``notebooks/``; returns its wall time in seconds.

    The notebook gets its preset and run directory; its first cell opens the run's ``config.json``.
    With ``echo``, what the notebook prints (model, epoch, elapsed time) streams to the console, indented.

    Raises:
        NotebookFailed: a cell raised.
        RunInterrupted: Ctrl-C.
    """
    # deferred: papermill
    import papermill
    from papermill.exceptions import PapermillExecutionError

    paths = config.paths
    target = paths.notebooks / f"{name}.ipynb"
    started = time.perf_counter()
    interrupter = _KernelInterrupter()
    try:
        with interrupter:
            papermill.execute_notebook(
                str(NOTEBOOKS_DIR / f"{name}.ipynb"),
                str(target),
                parameters={"preset": config.preset, "output_dir": config.output_dir},
                kernel_name=kernel,
                progress_bar=False,
                log_output=False,
                cwd=str(paths.output_dir),
                stdout_file=_Indented(sys.stdout) if echo else None,
                stderr_file=_Indented(sys.stderr) if echo else None,
            )
    except Exception as error:
        if interrupter.interrupted:
            raise RunInterrupted(
                f"interrupted in {name} after {format_seconds(time.perf_counter() - started)}; finished notebooks"
                f" and trained models are kept: run the same command again to resume"
            ) from None
        if isinstance(error, PapermillExecutionError):
            raise NotebookFailed(
                f"{name}.ipynb failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
                f"the executed notebook, with the traceback, is {target}"
            ) from None
        raise
    if interrupter.interrupted:  # Ctrl-C as the last cell ended: the notebook is complete, the run stops
        raise RunInterrupted(f"interrupted after {name}; run the same command again to go on")
    return time.perf_counter() - started


def fingerprints(config: RunConfig) -> dict[str, str]:
    """Each notebook's fingerprint for this configuration (see :mod:`hpa_utils.run.fingerprint`)."""
    done: dict[str, str] = {}
    for notebook in NOTEBOOKS:
        parts = {key: config.section(key) for key in notebook.uses}
        upstream = [done[notebook.upstream]] if notebook.upstream else []
        done[notebook.name] = notebook_fingerprint(NOTEBOOKS_DIR / f"{notebook.name}.ipynb", parts, upstream)
    return done


def run(
    preset: str = "quick",
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    force: bool = False,
    render: bool = True,
    log: Callable[[str], None] = print,
    echo: bool = True,
) -> dict:
    """Run the whole pipeline for a preset; returns the run record (also ``results/run.json``).

    Raises:
        NotebookFailed: a notebook raised; the run stops there.
        RunInterrupted: Ctrl-C; the run stops there.
        ValueError: an unknown preset, or a bad key or value (the message names it).
    """
    runtime.configure()
    config = resolve_config(preset, overrides, data_dir, output_dir)
    paths = config.paths.make()
    config.save()
    run_started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log(f"hpa run: preset {config.preset} -> {paths.output_dir}")
    ensure_dataset(config, log)
    check_dataset(config, log)
    report_device(config, log)
    kernel = install_kernel()
    timings: dict[str, float | None] = {}
    prints = fingerprints(config)
    for index, notebook in enumerate(NOTEBOOKS, 1):
        name, fingerprint = notebook.name, prints[notebook.name]
        stamp = paths.notebooks / f".{name}.done"
        executed = paths.notebooks / f"{name}.ipynb"
        counter = f"[{index}/{len(NOTEBOOKS)}] {name}"
        if not notebook.enabled(config):
            log(f"{counter}: off in this preset ({notebook.switch}: false), skipped")
            continue
        if not force and stamp.is_file() and executed.is_file() and stamp.read_text().split()[0] == fingerprint:
            log(f"{counter}: up to date, skipped")
            timings[name] = float(stamp.read_text().split()[1])
            continue
        log(f"{counter}: running (elapsed {format_seconds(time.perf_counter() - run_started)})")
        stamp.unlink(missing_ok=True)
        seconds = execute_notebook(name, config, kernel, echo=echo)
        stamp.write_text(f"{fingerprint} {seconds:.1f}\n")
        timings[name] = round(seconds, 1)
        log(f"{counter}: done in {format_seconds(seconds)}")
    record = _write_run_record(config, timings, started_at, time.perf_counter() - run_started)
    if render:
        log(f"report: {render_report(paths.output_dir)}")
    log(f"hpa run: finished in {format_seconds(time.perf_counter() - run_started)}")
    return record


def report_device(config: RunConfig, log: Callable[[str], None] = print) -> None:
    """Say what the run trains on, and warn when a GPU preset is about to run on a CPU (with its time)."""
    device = detect_device()
    processes, threads = plan_processes(
        config.train.processes, len(config.train.variants) * config.train.seeds, gpus=len(device.gpus)
    )
    side = f", {processes} training jobs side by side ({threads} thread(s) each)" if processes > 1 else ""
    if config.train.executor == "ray":
        where = config.train.ray_address or "a local Ray started for the run"
        side = f", each model a Ray task on {where}"
    log(f"hpa run: {device.describe()}{side}")
    warning = cpu_warning(config, device)
    if warning:
        log(f"hpa run: {warning}")


def _write_run_record(config: RunConfig, timings: dict, started_at: str, seconds: float) -> dict:
    paths = config.paths
    dataset_path = paths.results / "dataset.json"
    record = {
        "preset": config.preset,
        "config": config.to_dict(),
        "dataset": json.loads(dataset_path.read_text()) if dataset_path.is_file() else {},
        "started": started_at,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "notebooks": timings,
        "notebook_seconds": round(sum(v for v in timings.values() if v), 1),
        "model_train_seconds": round(
            sum(json.loads(p.read_text()).get("train_seconds", 0) for p in paths.models.glob("*.json")), 1
        ),
        "machine": _machine(),
    }
    write_json_atomic(paths.results / "run.json", record)
    return record


def _machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}, {platform.system()}"
