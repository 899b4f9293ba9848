"""Background jobs (a training or a sweep), their server-wide registry, and the limit on how many run at once.

A job runs in a thread that makes no UI calls: it only updates its own state, which a page
polls and draws. Jobs belong to the server, not to a browser session: the registry finds a
training by its run id, or a person's jobs by owner, so a reloaded tab finds its training
again. The limit is process-wide, so it holds across every session of one server.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.common import background
from cnnlab.runs.store import new_run_id
from cnnlab.runs.workspace import Workspace
from cnnlab.training import memory
from cnnlab.training.hooks import TrainingHooks

if TYPE_CHECKING:
    from cnnlab.runs.store import Run
    from cnnlab.sweep import SweepConfig, SweepSpace
    from cnnlab.training.plan import TrainingPlan

WAIT_POLL_S = 0.25
# Finished jobs stay findable this long, so a tab reloaded as a training ends still shows its result.
KEEP_FINISHED_S = 3600.0
# The kind of a cross-validated label check (the others are "training" and "sweep").
LABEL_CHECK = "label_check"


class _Slots:
    """The server-wide count of running jobs, admitted against the limit in force when they ask.

    A job that starts with a different limit changes it for every job still waiting: a higher
    limit admits waiting jobs at once, a lower one admits none until enough running jobs end.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.limit = 1
        self.running = 0

    def set_limit(self, limit: int) -> None:
        with self._changed:
            self.limit = limit
            self._changed.notify_all()

    def acquire(self, timeout: float) -> bool:
        """Take a slot if one is (or within `timeout` seconds becomes) free; False otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.running < self.limit, timeout):
                return False
            self.running += 1
            return True

    def release(self) -> None:
        with self._changed:
            self.running -= 1
            self._changed.notify_all()


_slots = _Slots()


def running_jobs() -> int:
    """How many jobs hold a slot on this server right now."""
    return _slots.running


@contextmanager
def holding_slot(limit: int, what: str) -> Iterator[None]:
    """Hold one of the server's job slots while `what` runs in the caller's own thread (a page's export
    benchmark): it counts against `limit` like a training, and never runs beside one that would
    starve it or that it would slow. No free slot now is a ValueError saying to try again later.
    """
    _slots.set_limit(limit)
    if not _slots.acquire(timeout=0):
        raise ValueError(
            f"The server is busy: {running_jobs()} job(s) running, at most {limit} at once, and {what} would "
            f"share their CPU; try again when one ends. Received: running={running_jobs()}"
        )
    try:
        yield
    finally:
        _slots.release()


@dataclass(eq=False)  # a job is itself, not the value of its fields
class Job:
    """One background job's state. `target(job)` does the work and reports through the job."""

    target: Callable[[Job], Any]
    label: str = ""
    limit: int = 1
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    status: str = "queued"
    message: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    # The settings the job was started with that a page shows while it runs (epochs, objective),
    # since the widgets may have moved on.
    info: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    kind: str = "training"
    # Who may see and stop it: a hosted visitor's id, or None (everyone, when not hosted).
    owner: str | None = None
    # The run a training writes, known before it starts, so the job can be found by it.
    run_id: str | None = None
    created: float = field(default_factory=time.time)
    # Held while the status changes, so that a stop and the job's own start or end never interleave.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key(self) -> str:
        """What the registry finds it by: its run id, or (a sweep) its own id."""
        return self.run_id or self.id

    def start(self) -> Job:
        """Register the job and start its thread; it waits for a free slot before doing any work.

        A run that already has a job still queued or running cannot get a second one.
        """
        _registry.add(self)
        background.submit(self._run)
        return self

    def stop(self) -> None:
        """Ask the job to stop: a queued job never starts, a training ends after its current batch."""
        with self._lock:
            self.stop_event.set()
            if self.status == "running":
                self.message = "Stopping after the current batch..."

    @property
    def done(self) -> bool:
        """Whether the job has ended, whatever the outcome."""
        return self.status in ("completed", "stopped", "failed", "cancelled")

    @property
    def elapsed(self) -> float:
        """Seconds since the job started running (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def add_epoch(self, row: dict[str, Any]) -> None:
        """Callback for a training's per-epoch metrics."""
        self.history = [*self.history, row]

    def set_progress(self, progress: dict[str, Any]) -> None:
        """Callback for a training's per-batch progress."""
        self.progress = progress

    def add_item(self, item: dict[str, Any]) -> None:
        """Callback for a finished unit of a multi-part job (a sweep's trial)."""
        self.items = [*self.items, item]

    def _run(self) -> None:
        _slots.set_limit(self.limit)
        if not self._start_when_free():
            self._end("cancelled", "Cancelled before it started.")
            return
        try:
            self.result = self.target(self)
            # A stop asked for while a training was already finishing leaves it completed: say so.
            stopped = self.stop_event.is_set() and getattr(self.result, "status", "stopped") == "stopped"
            self._end("stopped" if stopped else "completed", "Stopped; the best weights were kept." if stopped else "")
        except Exception as exc:  # noqa: BLE001 - the UI shows the reason instead of a dead thread
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._end("failed", self.error)
        finally:
            _slots.release()
            # The server lives on after the job: what its threads freed goes back to the system.
            memory.give_back_freed_memory()

    def _start_when_free(self) -> bool:
        """Wait for a free slot and mark the job running; False, holding no slot, when it was stopped first."""
        while not self.stop_event.is_set():
            if not _slots.acquire(timeout=WAIT_POLL_S):
                self.message = (
                    f"Waiting for a free training slot: {running_jobs()} training(s) running on this server "
                    f"(limit {_slots.limit}). It starts by itself when one ends."
                )
                continue
            with self._lock:  # a stop that came while the slot was being taken cancels the job
                if not self.stop_event.is_set():
                    self.status, self.message, self.started = "running", "", time.monotonic()
                    return True
            _slots.release()
        return False

    def _end(self, status: str, message: str) -> None:
        with self._lock:
            self.finished = time.monotonic()
            self.message = message
            self.status = status


class _Registry:
    """Every job this server process started, by key; finished ones are forgotten after a while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        with self._lock:
            current = self._jobs.get(job.key)
            if current is not None and current is not job and not current.done:
                raise ValueError(
                    f"Run {job.key} is already {current.status} in this app; watch it on the Train page "
                    f"instead of starting it again. Received: run={job.key!r}"
                )
            now = time.monotonic()
            self._jobs = {
                key: old
                for key, old in self._jobs.items()
                if not old.done or now - (old.finished or now) < KEEP_FINISHED_S
            }
            self._jobs[job.key] = job

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def visible(self, owner: str | None) -> list[Job]:
        with self._lock:
            found = [job for job in self._jobs.values() if owner is None or job.owner == owner]
        return sorted(found, key=lambda job: job.created, reverse=True)


_registry = _Registry()


def find_job(run_id: str) -> Job | None:
    """The job (queued, running or recently finished) that trains this run in this server, if any."""
    return _registry.get(run_id)


def visible_jobs(owner: str | None, kind: str | None = None) -> list[Job]:
    """Jobs `owner` may watch and stop, newest first: every job when `owner` is None (not hosted),
    else that owner's only. `kind` ("training" or "sweep") narrows them."""
    return [job for job in _registry.visible(owner) if kind is None or job.kind == kind]


def busy_owners() -> set[str]:
    """The owners whose jobs are waiting for a slot or running in this server (hosted visitors at work)."""
    return {job.owner for job in _registry.visible(None) if job.owner and not job.done}


@dataclass(frozen=True)
class JobSettings:
    """What every kind of job works with: the `workspace` its trainings use (its owner is the jobs'
    owner too), and `limit`, how many jobs may run at once on this server."""

    workspace: Workspace
    limit: int = 1


def training_job(plan: TrainingPlan, settings: JobSettings, *, tags: dict[str, Any] | None = None) -> Job:
    """A (not yet started) job that trains one new run as `plan` says (its configs and precision),
    streaming epochs and batches into the job; `tags` adds fields to the run record.

    The run's id is chosen now, so the registry finds the job by it from the start.
    """
    from cnnlab.training.engine import train

    run_id = new_run_id()

    def target(job: Job):
        hooks = replace(_hooks(job), on_download=lambda received: job.set_progress({"download_bytes": received}))
        return train(
            plan.data_dir,
            plan.model_config,
            plan.train_config,
            workspace=settings.workspace,
            hooks=hooks,
            tags=tags,
            run_id=run_id,
            precision=plan.precision,
            dataset_version=plan.dataset_version,
        )

    info = {"epochs": plan.epochs}
    label = f"Training on {plan.data_dir}"
    return Job(target, label=label, limit=settings.limit, info=info, owner=settings.workspace.owner, run_id=run_id)


def resume_job(run_id: str, settings: JobSettings, *, more_epochs: int | None = None) -> Job:
    """A (not yet started) job that resumes an interrupted, stopped or failed run in place, or with
    `more_epochs`, continues a completed run for that many more epochs as a new run."""
    from cnnlab.training.engine import run_epochs
    from cnnlab.training.resuming import continue_training, resume

    workspace = settings.workspace
    run = workspace.store.get(run_id)
    if more_epochs is None:
        planned, new_id, label = run_epochs(run), run.id, f"Resuming {run.name}"
    else:
        planned, new_id, label = len(run.history) + more_epochs, new_run_id(), f"{run.name} +{more_epochs} epochs"

    def target(job: Job):
        if more_epochs is None:
            return resume(run.id, workspace=workspace, hooks=_hooks(job))
        return continue_training(run.id, more_epochs, workspace=workspace, hooks=_hooks(job), run_id=new_id)

    info = {"epochs": planned}
    return Job(target, label=label, limit=settings.limit, info=info, owner=settings.workspace.owner, run_id=new_id)


def _hooks(job: Job) -> TrainingHooks:
    """The training callbacks that stream a run's progress into its job."""
    return TrainingHooks(on_epoch=job.add_epoch, on_batch=job.set_progress, stop_event=job.stop_event)


def label_check_job(run: Run, settings: JobSettings, *, folds: int, epochs: int) -> Job:
    """A (not yet started) job that looks for likely label errors among all of a run's images by a
    cross-validated pass (`cnnlab.analysis.crossval`), streaming each fold's epochs and the pass's progress.

    It takes a training slot, as the folds train models; `info["run_id"]` says which run it checks.
    """
    from cnnlab.analysis.crossval import cross_validated_issues

    def target(job: Job):
        return cross_validated_issues(run, folds=folds, epochs=epochs, workspace=settings.workspace, hooks=_hooks(job))

    info = {"run_id": run.id, "folds": folds, "epochs": epochs}
    return Job(
        target,
        label=f"Checking the labels of {run.name}",
        limit=settings.limit,
        info=info,
        kind=LABEL_CHECK,
        owner=settings.workspace.owner,
    )


def sweep_job(
    data_dir: str | Path,
    space: SweepSpace,
    config: SweepConfig,
    settings: JobSettings,
    dataset_version: int | None = None,
) -> Job:
    """A (not yet started) job that runs a sweep (see `run_sweep`) on version `dataset_version` of the
    dataset (default: the latest), streaming finished trials and epochs into the job.

    With an owner (a hosted visitor's session id) every run is tagged with it and the study name
    ends with it, so visitors never join each other's studies, even with the same space and data.
    """
    from cnnlab.sweep import run_sweep

    owner = settings.workspace.owner
    if owner:
        config = replace(config, study_name=f"{config.study_name or space.default_study_name(str(data_dir))}-{owner}")

    def target(job: Job):
        hooks = TrainingHooks(on_epoch=job.add_epoch, stop_event=job.stop_event)
        return run_sweep(
            data_dir,
            space,
            config,
            workspace=settings.workspace,
            hooks=hooks,
            on_trial=job.add_item,
            dataset_version=dataset_version,
        )

    info = {"objective": space.objective}
    return Job(target, label="Sweep", limit=settings.limit, info=info, kind="sweep", owner=owner)
