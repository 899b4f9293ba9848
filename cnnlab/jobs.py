"""Background jobs (a training or a sweep) and the server-wide limit on how many run at once.

A job runs in a thread that makes no UI calls: it only updates its own state, which a page
polls and draws. The limit is process-wide, so it holds across every session of one server.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_slots_lock = threading.Lock()
_slots: dict[str, Any] = {"limit": None, "semaphore": None, "running": 0}


def _semaphore(limit: int) -> threading.Semaphore:
    """The process-wide semaphore, created on first use with the configured limit."""
    with _slots_lock:
        # A new limit takes effect once nothing holds a slot (tests and restarts change it).
        if _slots["semaphore"] is None or (_slots["limit"] != limit and _slots["running"] == 0):
            _slots["limit"], _slots["semaphore"] = limit, threading.BoundedSemaphore(limit)
        return _slots["semaphore"]


def running_jobs() -> int:
    """How many jobs hold a slot on this server right now."""
    return int(_slots["running"])


@dataclass
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

    def start(self) -> Job:
        """Start the job's thread; it waits for a free slot before doing any work."""
        threading.Thread(target=self._run, name=f"cnnlab-job-{self.id}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Ask the job to stop: a queued job never starts, a training ends after its current batch."""
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
        semaphore = _semaphore(self.limit)
        while not semaphore.acquire(timeout=0.25):
            if self.stop_event.is_set():
                self._end("cancelled", "Cancelled before it started.")
                return
            self.message = (
                f"Waiting for a free training slot: {running_jobs()} training(s) running on this server "
                f"(limit {_slots['limit']}). It starts by itself when one ends."
            )
        with _slots_lock:
            _slots["running"] += 1
        self.status, self.message, self.started = "running", "", time.monotonic()
        try:
            self.result = self.target(self)
            stopped = self.stop_event.is_set()
            self._end("stopped" if stopped else "completed", "Stopped; the best weights were kept." if stopped else "")
        except Exception as exc:  # noqa: BLE001 - the UI shows the reason instead of a dead thread
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._end("failed", self.error)
        finally:
            with _slots_lock:
                _slots["running"] -= 1
            semaphore.release()

    def _end(self, status: str, message: str) -> None:
        self.finished = time.monotonic()
        self.message = message
        self.status = status


def training_job(data_dir: str, model_config, train_config, *, store, limit: int = 1, tags: dict | None = None) -> Job:
    """A (not yet started) job that trains one run, streaming epochs and batches into the job."""
    from cnnlab.train import planned_epochs, train

    def target(job: Job):
        return train(
            data_dir,
            model_config,
            train_config,
            store=store,
            tags=tags,
            on_epoch=job.add_epoch,
            on_batch=job.set_progress,
            on_download=lambda received: job.set_progress({"download_bytes": received}),
            stop_event=job.stop_event,
        )

    epochs = planned_epochs(model_config, train_config)
    return Job(target, label=f"Training on {data_dir}", limit=limit, info={"epochs": epochs})
