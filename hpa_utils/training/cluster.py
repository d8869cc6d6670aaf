"""The training jobs as Ray tasks: side by side on every GPU of a machine, or on a cluster's machines.

``train.executor: ray`` (``hpa run -p executor=ray``) hands each model's training job to Ray instead of the
in-process executor (:mod:`hpa_utils.training.executor`). The jobs are the same :class:`~.executor.Job`
objects, so a model trained on Ray is the same files, skipped and resumed exactly as in-process:

* **Where:** ``train.ray_address: null`` starts a local Ray for the run with every core and GPU of this
  machine (and shuts it down after); an address (``ray://head:10001``, ``head:6379`` or ``auto``) joins an
  existing cluster, whose nodes must see the run directory and the data at the same paths (shared storage)
  and have this project installed.
* **Resources:** a task asks for one GPU when the cluster has GPUs (one model per GPU), else for
  :data:`CPUS_PER_TASK` CPU, and trains with that many TensorFlow threads (one model per core trains
  faster on a CPU than one model on all cores: docs/performance.md). A model trained on Ray is the
  default executor's, byte for byte, where that trains with as many threads per job (one thread where
  two or more jobs share two cores; :func:`~.executor.plan_processes`) and the node is the same kind
  of machine.
* **Order:** a job is submitted when the job it starts from (``after``) has finished, so stage A starts
  when its base model is done, whichever node trained it.
* **Progress:** the tasks' lines (per epoch, per model) come back through a Ray queue and are printed by
  this process, in the console and the notebook, with the run's time estimate.
* **Failures:** a task whose worker dies (a killed process, a lost node) is submitted again up to
  ``retries`` times, resuming from its last epoch's checkpoint; a job that still fails is reported by
  name, the models that do not depend on it go on training, and the run then stops with the list of
  what failed and what was not started. Re-running resumes. Ctrl-C cancels the tasks (each removes its
  temporary files) and stops a local Ray.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import pandas as pd

from hpa_utils.config import runtime
from hpa_utils.training.executor import Job

#: CPUs a task asks for (and its TensorFlow threads) when the cluster has no GPU.
CPUS_PER_TASK = 1
#: How many times a job whose worker died is submitted again.
RETRIES = 1
#: The object store of a local Ray: the tasks pass paths and small summaries, never images.
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
#: Environment variables a task's worker gets from this process (the backend and TensorFlow's settings).
FORWARDED_ENVIRONMENT = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "MPLBACKEND")


class RayJobsFailed(RuntimeError):
    """Some jobs failed on Ray (after their retries); the others finished and are kept."""

    def __init__(self, failed: dict[str, str], not_started: dict[str, str]):
        self.failed = failed
        self.not_started = not_started
        lines = [f"training failed on Ray for {len(failed)} model(s):"]
        lines += [f"  {name}: {reason}" for name, reason in failed.items()]
        if not_started:
            lines.append("not started, because the model they start from failed:")
            lines += [f"  {name} (starts from {parent})" for name, parent in not_started.items()]
        lines.append("every other model finished and is kept; run again to resume the failed ones")
        super().__init__("\n".join(lines))


#: Ray's start-up notes that are noise in a notebook's log: rich-output widgets it does not need, and the
#: (default, secure) token authentication of a local Ray it starts.
QUIET_LOGGERS = ("ray.widgets.util", "ray._private.authentication.authentication_token_setup")


def import_ray():
    """The ``ray`` module, or a clear error saying how to install it."""
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto, imported by Ray, in a kernel
    for name in QUIET_LOGGERS:  # before the import: the widgets note is logged while Ray is imported
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import ray  # deferred: Ray, an optional extra, imported only for train.executor: ray
    except ImportError:
        raise ImportError(
            "train.executor is 'ray' but Ray is not installed: pip install -e '.[cluster]' "
            "(or run with -p train.executor=local)"
        ) from None
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


@contextmanager
def ray_session(address: str | None = None, cpus: int | None = None, log: Callable[[str], None] = print):
    """Ray for a run: join the cluster at ``address``, or start a local Ray (``cpus``: default every core),
    and shut it down after (unless Ray was already running in this process). Yields the number of jobs
    that train at once: the cluster's GPUs, or its CPUs / :data:`CPUS_PER_TASK`."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        env = {key: os.environ[key] for key in FORWARDED_ENVIRONMENT if key in os.environ}
        # log_to_driver off: the tasks' lines come back through the queue, in order and without Ray's
        # "(pid=...)" prefix; a task's exception still reaches the driver as its error.
        options = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **options)
        else:
            # Ray runs its workers at niceness 15; training is the run's main work, so a local Ray's tasks get the
            # same priority as the in-process executor's workers (a user's own setting wins).
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **options,
            )
    try:
        resources = ray.cluster_resources()
        gpus, cpus_found = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        if started:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            log(f"ray: {where}: {nodes} node(s), {cpus_found} CPU(s), {gpus} GPU(s)")
        yield max(1, gpus or cpus_found // CPUS_PER_TASK)
    finally:
        if started:
            ray.shutdown()


def _task(payload: bytes, messages, threads: int) -> dict:
    """One job in a Ray worker: set the worker's threads before the job (and Keras) is unpickled."""
    runtime.configure(headless=True, threads=threads or None)
    job: Job = pickle.loads(payload)

    def log(line: str) -> None:
        messages.put(("log", line))

    def on_epoch(record: dict) -> None:
        messages.put(("epoch", record))

    return job.run(*job.args, log=log, on_epoch=on_epoch)


def run_jobs_on_ray(
    jobs: list[Job],
    address: str | None = None,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
    retries: int = RETRIES,
    cpus: int | None = None,
) -> pd.DataFrame:
    """Run ``jobs`` as Ray tasks (each after the job it names in ``after``); one summary row per job.

    Args:
        jobs: the jobs, in the order to start them.
        address: a Ray cluster's address; None starts a local Ray for these jobs (either is used as it
            is when Ray is already initialised in this process, e.g. inside :func:`ray_session`).
        log: where the lines go (per epoch, per model, progress).
        on_epoch: called here with each finished epoch's record (the run's time estimate).
        retries: how many times a job whose worker died is submitted again.
        cpus: CPUs of a local Ray (default: every core).

    Raises:
        RayJobsFailed: a job failed after its retries (the others were trained and kept).
    """
    ray = import_ray()
    from ray.util.queue import Empty, Queue  # deferred: Ray (after import_ray's checks)

    with ray_session(address, cpus, log):
        messages = Queue(actor_options={"num_cpus": 0})
        gpus = int(ray.cluster_resources().get("GPU", 0))
        threads = 1 if gpus else CPUS_PER_TASK
        options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": CPUS_PER_TASK}
        remote = ray.remote(max_retries=0)(_task)
        per_task = "1 GPU" if gpus else f"{CPUS_PER_TASK} CPU"
        log(f"models: {len(jobs)} to train or check as Ray tasks ({per_task} and {threads} thread(s) each)")
        try:
            return _schedule(jobs, remote, options, messages, threads, retries, log, on_epoch, ray, Empty)
        finally:
            try:
                ray.kill(messages.actor)
            except Exception:  # noqa: BLE001 - the queue went with Ray already
                pass


def _schedule(jobs, remote, options, messages, threads, retries, log, on_epoch, ray, Empty) -> pd.DataFrame:
    names = {job.name for job in jobs}
    by_name = {job.name: job for job in jobs}
    pending = list(jobs)
    running: dict = {}  # ObjectRef -> job name
    attempts: dict[str, int] = {}
    summaries: dict[str, dict] = {}
    failed: dict[str, str] = {}
    not_started: dict[str, str] = {}
    started = time.perf_counter()

    def drain() -> None:
        while True:
            try:
                batch = messages.get_nowait_batch(max(1, messages.size()))
            except Empty:
                return
            for kind, payload in batch:
                if kind == "log":
                    log(payload)
                elif on_epoch is not None:
                    on_epoch(payload)

    def submit(job: Job) -> None:
        attempts[job.name] = attempts.get(job.name, 0) + 1
        ref = remote.options(name=f"train-{job.name}", **options).remote(pickle.dumps(job), messages, threads)
        running[ref] = job.name

    try:
        while pending or running:
            for job in list(pending):
                parent = job.after if job.after in names else None
                if parent in failed or parent in not_started:
                    pending.remove(job)
                    not_started[job.name] = parent
                    continue
                if parent is None or parent in summaries:
                    pending.remove(job)
                    summary = job.run(*job.args, log=log, check_only=True)
                    if summary is not None:  # finished and unchanged: no task needed
                        summaries[job.name] = summary
                    else:
                        submit(job)
            if not running:
                continue
            finished, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            drain()
            for ref in finished:
                name = running.pop(ref)
                try:
                    summaries[name] = ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # the job itself raised: a bug or bad data
                    failed[name] = _reason(error)
                    log(f"{name}: failed on Ray: {failed[name]}; the other models go on")
                    continue
                except ray.exceptions.RayError as error:  # its worker died (killed, out of memory) or its node was lost
                    reason = f"its Ray worker died ({type(error).__name__})"
                    if attempts[name] <= retries:
                        log(f"{name}: {reason}; submitting it again (retry {attempts[name]} of {retries})")
                        submit(by_name[name])
                    else:
                        failed[name] = reason
                        log(f"{name}: {reason}, after {retries} retries; the other models go on")
                    continue
                elapsed = time.perf_counter() - started
                busy = ", ".join(running.values()) or "none"
                log(f"models: {len(summaries)}/{len(jobs)} done after {elapsed:.0f} s (training: {busy})")
        drain()
    except BaseException:
        for ref in running:
            ray.cancel(ref)  # KeyboardInterrupt in the task: its temp files are removed
        deadline = time.monotonic() + 5
        while running and time.monotonic() < deadline:
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=0.5)
            for ref in done:
                running.pop(ref, None)
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    if failed:
        raise RayJobsFailed(failed, not_started)
    return pd.DataFrame([summaries[job.name] for job in jobs])


def _reason(error) -> str:
    cause = getattr(error, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(error).strip().splitlines()[-1]
