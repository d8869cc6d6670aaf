"""``hpa run``: execute the numbered notebooks in order with papermill, then render the report.

Data flows preset -> here -> papermill -> notebook -> hpa_utils -> files under the run's
output directory -> report. A notebook is skipped when its fingerprint (its source, the
run's parameters, the library's code and the upstream notebooks' fingerprints) matches
the stamp its last successful execution left; ``force`` re-runs everything. A failing
notebook stops the run with its error; the executed copy stays for reading and no stamp
is written, so the next run retries it. Earlier results are left intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from hpa_utils.run.config import (
    FIGURES_DIR,
    NOTEBOOKS_DIR,
    PROJ_ROOT,
    REPORT_DIR,
    RUNS_DIR,
    RunPaths,
    ensure_dataset,
    resolve_params,
)

NOTEBOOKS = ("01_eda", "02_baseline", "03_finetune", "04_ensemble")
KERNEL_DISPLAY_NAME = "Python (hpa)"


class NotebookFailed(RuntimeError):
    """A notebook raised: the message holds the notebook, the failing cell's error and where the log is."""


def kernel_name() -> str:
    """A kernel name unique to this environment, so papermill runs the project's Python whatever
    kernels the user has registered (a user-level 'python3' or 'hpa' cannot shadow it)."""
    return "hpa-" + hashlib.sha1(sys.prefix.encode()).hexdigest()[:8]


def install_kernel(name: str | None = None, display_name: str = KERNEL_DISPLAY_NAME) -> str:
    """Write the project's kernelspec into this environment (``sys.prefix``); returns its name.

    The kernel runs this interpreter with TensorFlow's start-up log silenced and the inline
    matplotlib backend, so executed notebooks hold results, not log noise.
    """
    name = name or kernel_name()
    folder = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
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
        "env": {
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        },
        "metadata": {"debugger": True},
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "kernel.json"
    if not target.is_file() or json.loads(target.read_text()) != spec:
        target.write_text(json.dumps(spec, indent=1))
    return name


def library_fingerprint() -> str:
    """Hash of the library's source files (a code change re-runs the notebooks)."""
    digest = hashlib.sha256()
    for path in sorted((PROJ_ROOT / "hpa_utils").rglob("*")):
        if path.suffix in (".py", ".j2", ".yaml") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(PROJ_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def notebook_fingerprint(notebook: Path, params: dict, upstream: str, library: str) -> str:
    digest = hashlib.sha256()
    for part in (
        notebook.read_bytes(),
        json.dumps(params, sort_keys=True).encode(),
        upstream.encode(),
        library.encode(),
    ):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()


def check_dataset(data_dir: str | Path, log: Callable[[str], None] = print) -> None:
    """Validate the dataset before any notebook runs (PNG headers here; the cache build decodes
    every image). Raises DataError listing the problems, each naming the file and CSV line."""
    from hpa_utils.data.dataset import validate_dataset
    from hpa_utils.errors import DataError

    report = validate_dataset(data_dir, decode=False)
    if not report.ok:
        raise DataError(problems=report.problems)
    sizes = ", ".join(sorted(report.image_sizes))
    log(f"dataset {data_dir}: {report.n_train} training and {report.n_test} test Ids, images {sizes}: valid")


def _stamp(paths: RunPaths, name: str) -> Path:
    return paths.notebooks / f".{name}.done"


def _format_seconds(seconds: float) -> str:
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


def execute_notebook(name: str, params: dict, paths: RunPaths, kernel: str, echo: bool = True) -> float:
    """Run one notebook with papermill into ``paths.notebooks``; returns its wall time in seconds.

    With ``echo``, what the notebook prints (model, epoch, elapsed time) streams to the console, indented.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = NOTEBOOKS_DIR / f"{name}.ipynb"
    target = paths.notebooks / f"{name}.ipynb"
    declared = papermill.inspect_notebook(str(source))
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters={k: v for k, v in params.items() if k in declared},
            kernel_name=kernel,
            progress_bar=False,
            log_output=False,
            cwd=str(paths.output_dir),
            stdout_file=_Indented(sys.stdout) if echo else None,
            stderr_file=_Indented(sys.stderr) if echo else None,
        )
    except PapermillExecutionError as error:
        raise NotebookFailed(
            f"{name}.ipynb failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
            f"the executed notebook, with the traceback, is {target}"
        ) from None
    return time.perf_counter() - started


def run(
    preset: str = "quick",
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    force: bool = False,
    notebooks: tuple[str, ...] = NOTEBOOKS,
    render: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the whole pipeline for a preset; returns the run record (also ``results/run.json``).

    Raises:
        NotebookFailed: a notebook raised; the run stops there.
    """
    params = resolve_params(preset, overrides, data_dir, output_dir)
    paths = RunPaths(Path(params["output_dir"])).make()
    run_started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log(f"hpa run: preset {params['preset']} -> {paths.output_dir}")
    ensure_dataset(params, log)
    check_dataset(params["data_dir"], log)
    kernel = install_kernel()
    library = library_fingerprint()
    upstream = ""
    timings: dict[str, float | None] = {}
    for index, name in enumerate(notebooks, 1):
        fingerprint = notebook_fingerprint(NOTEBOOKS_DIR / f"{name}.ipynb", params, upstream, library)
        stamp = _stamp(paths, name)
        executed = paths.notebooks / f"{name}.ipynb"
        if not force and stamp.is_file() and executed.is_file() and stamp.read_text().split()[0] == fingerprint:
            log(f"[{index}/{len(notebooks)}] {name}: up to date, skipped")
            timings[name] = float(stamp.read_text().split()[1])
        else:
            elapsed = _format_seconds(time.perf_counter() - run_started)
            log(f"[{index}/{len(notebooks)}] {name}: running (elapsed {elapsed})")
            stamp.unlink(missing_ok=True)
            seconds = execute_notebook(name, params, paths, kernel)
            stamp.write_text(f"{fingerprint} {seconds:.1f}\n")
            timings[name] = round(seconds, 1)
            log(f"[{index}/{len(notebooks)}] {name}: done in {_format_seconds(seconds)}")
        upstream = fingerprint
    record = _write_run_record(params, paths, timings, started_at, time.perf_counter() - run_started)
    if render and (NOTEBOOKS_DIR / "04_ensemble.ipynb").is_file():
        from hpa_utils.reporting.report import render_report

        html = render_report(paths.output_dir)
        log(f"report: {html}")
    if is_default_run(params):
        publish_default_run(paths)
        log(f"default run published to {FIGURES_DIR} and {REPORT_DIR}")
    log(f"hpa run: finished in {_format_seconds(time.perf_counter() - run_started)}")
    return record


def _write_run_record(params: dict, paths: RunPaths, timings: dict, started_at: str, seconds: float) -> dict:
    from hpa_utils.io import write_json_atomic

    record_path = paths.results / "run.json"
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    dataset = previous.get("dataset", {})
    dataset_path = paths.results / "dataset.json"
    if dataset_path.is_file():
        dataset = json.loads(dataset_path.read_text())
    record = {
        "preset": params["preset"],
        "params": params,
        "dataset": dataset,
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
    write_json_atomic(record_path, record)
    return record


def _machine() -> str:
    import platform

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}, {platform.system()}"


def is_default_run(params: dict) -> bool:
    """The run ``make run`` makes: the quick preset, on the synthetic data, in ``runs/quick``."""
    return Path(params["output_dir"]) == (RUNS_DIR / "quick").resolve() and bool(params.get("synthetic"))


def publish_default_run(paths: RunPaths) -> None:
    """Copy the default run's figures and report to the project's top-level ``figures/`` and ``report/``."""
    for source_dir, target_dir, pattern in (
        (paths.figures, FIGURES_DIR, "*.png"),
        (paths.report, REPORT_DIR, "*.html"),
    ):
        target_dir.mkdir(parents=True, exist_ok=True)
        for source in sorted(source_dir.glob(pattern)):
            tmp = target_dir / f".{source.name}.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, target_dir / source.name)
