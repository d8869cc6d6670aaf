"""Where the training jobs run: one after the other in this process, or side by side in worker processes.

Why worker processes: on a CPU, one training job with every core as TensorFlow threads spends much of
its time handing small memory-bound ops (batch norm, pooling on the 126x126 feature map) to its thread
pool and waiting for them; the profile (docs/performance.md) found one single-threaded job per core,
side by side, trains 1.2-1.4 times as many images/s on two cores as one job with two threads.
The base models are independent jobs, and each fine-tuning stage depends only on its own parent, so
``train.processes: auto`` runs one job per core (one per GPU on a GPU box: 1 there, as jobs on one
GPU would fight over it).

A :class:`Job` names a module-level function and its arguments, so it can be sent to a spawned worker;
:class:`~hpa_utils.training.batches.TrainingData` pickles as the paths it was opened from, not the image
cache. Each job writes its own model files atomically; the parent prints the workers' lines (per epoch,
per model) as they come, the overall progress, and, after the first epoch, the estimate of the whole
run's time (:class:`~hpa_utils.training.plan.WorkPlan`).

Ctrl-C (or a kernel interrupt, which reaches the workers too: they share the kernel's process group)
stops every worker with KeyboardInterrupt, so their temporary files are removed; a worker still alive
after a grace period is killed. A job that fails stops the others the same way and is reported by name;
models already finished are kept, and re-running resumes.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import pandas as pd
from tqdm import tqdm

from hpa_utils.config import runtime

#: Seconds a worker gets to stop after Ctrl-C before it is killed.
STOP_GRACE_SECONDS = 5.0  # the runner kills an interrupted kernel after 8 s


@dataclass(frozen=True)
class Job:
    """One training job: ``run(*args, log=..., on_epoch=...)`` returns the model's summary dict, and
    ``run(*args, log=..., check_only=True)`` the summary of the model already trained with the same
    settings, or None (without training).

    Attributes:
        name: the model's name.
        run: a module-level function (so a worker process can import it).
        args: its positional arguments (picklable).
        after: the name of the job whose model this one starts from, or None.
    """

    name: str
    run: Callable[..., dict]
    args: tuple = field(default=())
    after: str | None = None


def plan_processes(setting: int | str, n_jobs: int, gpus: int = 0, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, threads per worker) for ``train.processes`` (a count, or ``"auto"``).

    ``auto``: one process in all when a GPU is used (several jobs on one GPU compete for it); on a
    CPU, one per core, at most one per job. 1 means "in this process" (threads: TensorFlow's default,
    returned as 0).

    The thread count is the one setting here that changes a model's bits: TensorFlow splits a kernel's
    sums by its number of threads, so the same job with 1 and with 2 threads gives slightly different
    models (the last bits of the first gradients, more after many steps). Plans with the same threads per
    job (and the Ray executor, one thread per task) give the same models, byte for byte; on two cores,
    two or more jobs get one thread each, as on Ray, but a single job (or ``train.processes: 1``) trains
    in this process with both.
    """
    cores = cores or os.cpu_count() or 1
    if setting == "auto":
        processes = 1 if gpus else max(1, min(cores, n_jobs))
    else:
        processes = max(1, min(int(setting), max(n_jobs, 1)))
    if processes == 1:
        return 1, 0
    return processes, max(1, cores // processes)


def run_jobs(
    jobs: list[Job],
    processes: int = 1,
    threads: int = 0,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Run ``jobs`` (each after the job it names in ``after``); one summary row per job, in job order.

    Args:
        jobs: the jobs, in the order to start them.
        processes: worker processes; 1 runs every job in this process, one after the other.
        threads: threads per worker process (0: the backend's default).
        log: where the lines go (per epoch, per model, progress).
        on_epoch: called in this process with each finished epoch's record (see
            :class:`~hpa_utils.training.fit.EpochEnd`), e.g. for the run's time estimate.
    """
    if processes <= 1:
        return _run_here(jobs, log, on_epoch)
    return _run_in_workers(jobs, processes, threads, log, on_epoch)


def _run_here(jobs, log, on_epoch) -> pd.DataFrame:
    started = time.perf_counter()
    summaries = []
    for done, job in enumerate(jobs):
        elapsed = time.perf_counter() - started
        postfix = f"next {job.name}"
        log(tqdm.format_meter(done, len(jobs), elapsed, ncols=90, prefix="models", unit="model", postfix=postfix))
        summaries.append(job.run(*job.args, log=log, on_epoch=on_epoch))
    log(tqdm.format_meter(len(jobs), len(jobs), time.perf_counter() - started, ncols=90, prefix="models", unit="model"))
    return pd.DataFrame(summaries)


# -- worker processes -------------------------------------------------------------------------------

_worker_queue = None
_worker_busy = False


def _init_worker(messages, threads: int) -> None:
    global _worker_queue
    _worker_queue = messages
    signal.signal(signal.SIGINT, _worker_interrupted)
    sys.unraisablehook = _worker_unraisable

    runtime.configure(headless=True, threads=threads or None)


def _worker_interrupted(signum, frame) -> None:
    """Ctrl-C in a worker: stop the job (its ``finally`` blocks remove temp files), or leave quietly if idle."""
    if _worker_busy:
        raise KeyboardInterrupt
    os._exit(130)


def _worker_unraisable(unraisable) -> None:
    """A KeyboardInterrupt raised where Python cannot raise (a weakref callback or ``__del__`` that the
    garbage collector ran) is delivered again, so the job still stops, and is not printed as a traceback."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        # From a timer thread, so the handler runs again in the main thread's own code, not in this hook.
        timer = threading.Timer(0.05, _thread.interrupt_main, args=(signal.SIGINT,))
        timer.daemon = True
        timer.start()
        return
    sys.__unraisablehook__(unraisable)


def _worker_log(line: str) -> None:
    _worker_queue.put(("log", line))


def _worker_epoch(record: dict) -> None:
    _worker_queue.put(("epoch", record))


def _run_in_worker(job: Job) -> dict:
    global _worker_busy
    _worker_busy = True
    try:
        return job.run(*job.args, log=_worker_log, on_epoch=_worker_epoch)
    finally:
        _worker_busy = False
        _worker_queue.put(("done", job.name))  # after the job's last line, so the parent prints them in order


def _run_in_workers(jobs, processes, threads, log, on_epoch) -> pd.DataFrame:
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    names = {job.name for job in jobs}
    pending = list(jobs)
    running: dict = {}
    summaries: dict[str, dict] = {}
    started = time.perf_counter()
    log(f"models: {len(jobs)} to train or check, {processes} at a time in worker processes ({threads} thread(s) each)")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker, initargs=(messages, threads))
    reported: set[str] = set()  # jobs whose worker has sent its last line
    try:
        while pending or running:
            for job in list(pending):
                if len(running) >= processes:
                    break
                if job.after is None or job.after not in names or job.after in summaries:
                    pending.remove(job)
                    summary = job.run(*job.args, log=log, check_only=True)
                    if summary is not None:  # finished and unchanged: no worker needed
                        summaries[job.name] = summary
                        continue
                    running[pool.submit(_run_in_worker, job)] = job
            if not running:
                continue
            finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(messages, log, on_epoch, reported)
            for future in finished:
                job = running.pop(future)
                deadline = time.monotonic() + 5
                while job.name not in reported and future.exception() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    _drain(messages, log, on_epoch, reported)
                try:
                    summaries[job.name] = future.result()
                except Exception as error:
                    raise RuntimeError(f"training {job.name} failed in a worker process: {error}") from error
                elapsed = time.perf_counter() - started
                busy = ", ".join(j.name for j in running.values()) or "none"
                log(f"models: {len(summaries)}/{len(jobs)} done after {elapsed:.0f} s (training: {busy})")
        _drain(messages, log, on_epoch, reported)
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        messages.close()
    return pd.DataFrame([summaries[job.name] for job in jobs])


def _drain(messages, log, on_epoch, reported: set[str]) -> None:
    while True:
        try:
            kind, payload = messages.get_nowait()
        except queue_module.Empty:
            return
        if kind == "log":
            log(payload)
        elif kind == "done":
            reported.add(payload)
        elif on_epoch is not None:
            on_epoch(payload)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """KeyboardInterrupt in every worker (their ``finally`` blocks remove temp files), then kill stragglers."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        if worker.is_alive():
            try:
                os.kill(worker.pid, signal.SIGINT)
            except (ProcessLookupError, TypeError):
                pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(1)
