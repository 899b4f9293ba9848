"""Hosted-demo housekeeping: each visitor owns their uploads and runs, removed once they leave.

A visitor's id is kept in the page's address, so it outlives reloads and reconnects. Streamlit
has no public "session ended" hook, so visitors leave a heartbeat file on every page run; a
visitor whose heartbeat is older than `max_idle_s` (or missing, after a restart) and who has no
training running has left. Closing the tab deletes nothing before that.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from cnnlab.runs import RunStore

HEARTBEATS = "sessions"
UPLOADS = "uploads"


def uploads_dir(cache: Path, session: str) -> Path:
    """Where a session's extracted uploads live."""
    return cache / UPLOADS / session


def touch_session(cache: Path, session: str) -> None:
    """Record that a session is alive now."""
    beat = cache / HEARTBEATS / session
    beat.parent.mkdir(parents=True, exist_ok=True)
    beat.touch()


def _alive(cache: Path, session: str, max_idle_s: float, now: float) -> bool:
    try:
        return now - (cache / HEARTBEATS / session).stat().st_mtime <= max_idle_s
    except FileNotFoundError:
        return False


def _forget_uploads(cache: Path, session: str) -> None:
    """Remove a session's uploaded datasets and the decoded-image caches made from them."""
    from cnnlab import archive, data

    folder = uploads_dir(cache, session)
    for upload in folder.iterdir() if folder.is_dir() else ():
        with contextlib.suppress(ValueError, OSError):  # not a usable dataset: nothing was prepared from it
            data.forget_prepared(archive.dataset_root(upload), cache)
    shutil.rmtree(folder, ignore_errors=True)


def cleanup_ended_sessions(
    cache: Path, store: RunStore, max_idle_s: float = 3600.0, now: float | None = None
) -> list[str]:
    """Delete the uploads and the runs of sessions that have ended; returns their ids.

    A running training counts as activity: its visitor has not ended while it trains (a run's
    status is "running" only while its heartbeat is fresh, so a dead training does not count).
    """
    now = time.time() if now is None else now
    upload_owners = {p.name for p in (cache / UPLOADS).iterdir()} if (cache / UPLOADS).is_dir() else set()
    runs = [r for r in store.list() if r.record.get("owner")]
    training = {r.record["owner"] for r in runs if r.status == "running"}
    ended = sorted(
        s
        for s in upload_owners | {r.record["owner"] for r in runs}
        if s not in training and not _alive(cache, s, max_idle_s, now)
    )
    for session in ended:
        for run in runs:
            if run.record["owner"] == session:
                with contextlib.suppress(
                    ValueError
                ):  # gone already: another server process cleaned up the same session
                    store.delete(run.id)
        _forget_uploads(cache, session)
        (cache / HEARTBEATS / session).unlink(missing_ok=True)
    return ended
