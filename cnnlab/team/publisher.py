"""Live publishing of one training to the team tracking server, off the training's thread.

`Publisher(config, run)` starts a thread that creates (or finds) the run's team copy; each
`log_epoch(row)` only puts the row on a queue, so the training never waits for the network;
`close(run)` sends the rest (test metrics, files, status), waits a bounded time and records in
run.json whether the copy is whole. The first failure logs one warning and stops publishing that
run: it trains on at full speed and stays "not yet published" until `python -m cnnlab sync`.

Trainings call it through `cnnlab.training.engine.train(..., tracking=...)`; code that continues a run
outside `train` uses the same three calls (a run published before is found again by its key).
"""

from __future__ import annotations

import logging
import queue
from concurrent import futures
from typing import Any

from cnnlab.common import background
from cnnlab.common.checks import one_line
from cnnlab.runs.store import Run
from cnnlab.team import tracking
from cnnlab.team.tracking import TrackingConfig

logger = logging.getLogger("cnnlab.team.tracking")
# Long enough to upload a model over a slow link; past it the run is synced later instead.
CLOSE_TIMEOUT_S = 120.0
# Servers already warned about in this process: one warning per outage, not one per run.
_warned: set[str] = set()


class Publisher:
    """Publishes one run while it trains; every network call happens in its own thread."""

    def __init__(self, config: TrackingConfig, run: Run) -> None:
        self.config = config
        self.run_id = run.id
        # A run published before (resumed) has a key: its team copy may hold epochs already.
        self.resumed = run.record.team is not None and bool(run.record.team.key)
        self.key = tracking.team_key(run)
        self.team_run_id: str | None = run.record.team.run_id if run.record.team else None
        self.error: str | None = None
        self._logged: set[tuple[str, int]] = set()
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._queue.put(("start", run.record))  # frozen: the record as the training starts
        self._sending = background.submit(self._work)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Queue one epoch's metrics (returns at once)."""
        self._queue.put(("epoch", dict(row)))

    def close(self, run: Run, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Publish the finished run's remaining data, wait up to `timeout` s, and record the outcome.

        Call it once the training has stopped writing the run. Returns whether the copy is whole.
        """
        self._queue.put(("finish", run))
        self._queue.put(None)
        futures.wait([self._sending], timeout=timeout)
        if not self._sending.done() and self.error is None:
            self._fail(TimeoutError(f"still publishing after {timeout:.0f} s"))
        published = self.error is None
        tracking.mark(run, self.key, self.team_run_id, published)
        return published

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # failed once: drop the rest, `sync` sends the run whole later
            try:
                self._send(*item)
            except Exception as exc:  # noqa: BLE001 - best effort: no server problem may reach the training
                self._fail(exc)

    def _send(self, kind: str, payload: Any) -> None:
        if kind == "start":
            self.team_run_id = tracking.start_team_run(self.config, payload, self.key)
            if self.resumed:
                self._logged = tracking.logged_steps(self.config, self.team_run_id)
        elif kind == "epoch":
            # An epoch the copy holds already (it ended just before its checkpoint) is not sent twice.
            metrics = [m for m in tracking.epoch_metrics(payload) if (m[0], m[2]) not in self._logged]
            tracking.log_metrics(self.config, str(self.team_run_id), metrics)
            self._logged.update((key, step) for key, _, step in metrics)
        else:
            tracking.publish_run(self.config, payload, self.key, self.team_run_id, self._logged)
            _warned.discard(self.config.uri)  # the server is back: warn again at its next outage

    def _fail(self, exc: BaseException) -> None:
        self.error = one_line(exc)[:300]
        if self.config.uri in _warned:
            return
        _warned.add(self.config.uri)
        reason = "no answer" if tracking.is_connection_error(exc) else self.error
        logger.warning(
            "Team tracking server %s could not be reached (%s): training goes on, and run %s is kept here as "
            "not yet published. Publish it later with `python -m cnnlab sync` (or Sync on the Runs page).",
            self.config.uri,
            reason,
            self.run_id,
        )
