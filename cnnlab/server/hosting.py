"""Hosted-demo housekeeping: each visitor owns their uploads and runs, removed once they leave.

A visitor's id is kept in a cookie of their browser, so it outlives reloads, reconnects and new
tabs. Streamlit has no public "session ended" hook, so visitors leave a heartbeat file on every page run; a
visitor whose heartbeat is older than `max_idle_s` (or missing, after a restart) and who has no
training running has left. Closing the tab deletes nothing before that. `tidy` (in any mode)
removes what killed work left behind and keeps the decoded-image cache in its budget.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from cnnlab.common.checks import MB, shorten
from cnnlab.common.files import remove_stale_temporaries
from cnnlab.data import prepcache
from cnnlab.runs.store import RunStore

HEARTBEATS = "sessions"
UPLOADS = "uploads"
VISITORS = "visitors"
MESSAGE_LIMIT = 300
# An absolute path in a message: a slash not inside a word, a URL or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\-])/[^\s'\"/]+(?:/[^\s'\"/]*)*")


def uploads_dir(cache: Path, session: str) -> Path:
    """Where a session's extracted uploads live."""
    return cache / UPLOADS / session


def visitor_datasets_dir(datasets: Path, session: str) -> Path:
    """Where a hosted visitor's dataset versions and added images live (theirs alone)."""
    return datasets / VISITORS / session


def visitor_message(text: str, uploads: Path, limit: int = MESSAGE_LIMIT) -> str:
    """A message fit for a hosted visitor: on one line, at most `limit` characters, with no server path.

    Files in the visitor's uploads (`uploads`, from `uploads_dir`) are named relative to their
    upload; any other absolute path is cut to its last part.
    """
    text = " ".join(text.split())
    for folder in dict.fromkeys((str(uploads), str(uploads.resolve()))):
        text = re.sub(re.escape(folder) + r"/[^/\s'\"]+/?", "", text)
    text = _ABSOLUTE_PATH.sub(lambda m: PurePosixPath(m.group()).name or "...", text)
    return shorten(text, limit)


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


def forget_uploads(cache: Path, session: str, keep: Path | None = None) -> int:
    """Remove a session's uploaded datasets (except the one holding `keep`) and the decoded-image
    caches made from them that nobody is using; returns how many uploads were removed."""
    from cnnlab import data
    from cnnlab.data import archive

    folder = uploads_dir(cache, session)
    kept = Path(keep).resolve() if keep is not None else None
    removed = 0
    for upload in sorted(folder.iterdir()) if folder.is_dir() else ():
        if kept is not None and (kept == upload.resolve() or upload.resolve() in kept.parents):
            continue
        with contextlib.suppress(ValueError, OSError):  # not a usable dataset: nothing was prepared from it
            data.forget_prepared(archive.dataset_root(upload), cache)
        shutil.rmtree(upload, ignore_errors=True)
        removed += 1
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def tidy(cache: Path, models_dir: Path, max_cache_mb: int | None) -> list[Path]:
    """Remove the temporaries of killed work (preparations, extractions, exports, deletes) from the
    cache and the run store, and evict decoded images over `max_cache_mb`; returns the temporaries removed."""
    removed = remove_stale_temporaries(cache) + remove_stale_temporaries(models_dir)
    if max_cache_mb is not None:
        prepcache.evict(cache, max_cache_mb * MB)
    return removed


def cleanup_ended_sessions(
    cache: Path,
    store: RunStore,
    max_idle_s: float = 3600.0,
    now: float | None = None,
    *,
    busy: Collection[str] = (),
    datasets: Path | None = None,
) -> list[str]:
    """Delete the uploads, dataset versions (in `datasets`) and runs of sessions that have ended; returns their ids.

    `store` must be the whole models folder, not a visitor's view. A running training counts as
    activity: its visitor has not ended while it trains (a run's status is "running" only while its
    heartbeat is fresh, so a dead training does not count); so do the `busy` sessions, whose jobs
    are waiting for a training slot or running in this server (a training, a sweep, a label check
    on a completed run).
    """
    now = time.time() if now is None else now
    upload_owners = {p.name for p in (cache / UPLOADS).iterdir()} if (cache / UPLOADS).is_dir() else set()
    dataset_owners = _visitor_folders(datasets)
    runs = [r for r in store.list() if r.record.owner]
    active = {r.record.owner for r in runs if r.status == "running"} | set(busy)
    ended = sorted(
        s
        for s in upload_owners | dataset_owners | {r.record.owner for r in runs if r.record.owner}
        if s not in active and not _alive(cache, s, max_idle_s, now)
    )
    for session in ended:
        for run in runs:
            if run.record.owner == session:
                with contextlib.suppress(
                    ValueError
                ):  # gone already: another server process cleaned up the same session
                    store.delete(run.id)
        forget_uploads(cache, session)
        if datasets is not None:
            shutil.rmtree(visitor_datasets_dir(datasets, session), ignore_errors=True)
        (cache / HEARTBEATS / session).unlink(missing_ok=True)
    return ended


def _visitor_folders(datasets: Path | None) -> set[str]:
    """The sessions with dataset versions of their own in `datasets`."""
    folder = datasets / VISITORS if datasets is not None else None
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder is not None and folder.is_dir() else set()
