"""Liveness of a training: a file in its run folder that the training touches every few seconds.

A run is running only while its heartbeat is fresh and, when it was written on this machine,
its writer's process exists. A pid alone cannot tell: it is reused after a crash, and a record
from a container that was recreated names a host that no longer exists. A stale heartbeat
means the writer is gone, whatever pid or host name it recorded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cnnlab.common import background
from cnnlab.common.files import process_alive

HEARTBEAT_FILE = "heartbeat"
BEAT_S = 2.0
# Several beats may be missed on a machine busy enough to starve a thread for a while.
STALE_S = 30.0


def beat(folder: Path) -> None:
    """Mark the training in `folder` alive now (its heartbeat file's modification time)."""
    path = folder / HEARTBEAT_FILE
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def age_s(folder: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None when the folder has no heartbeat."""
    try:
        modified = (folder / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        return None
    return (time.time() if now is None else now) - modified


def is_alive(folder: Path, host: str | None, pid: int | None, max_age_s: float = STALE_S) -> bool:
    """Whether the training that writes `folder` is alive: a fresh heartbeat, and its process
    still exists where that can be checked (the `host` its record names is this machine)."""
    age = age_s(folder)
    if age is None or age > max_age_s:
        return False
    if host != socket.gethostname():
        return True  # another machine's process: the fresh heartbeat is all there is to go on
    return pid is not None and process_alive(pid)


@contextlib.contextmanager
def beating(folder: Path, every_s: float = BEAT_S) -> Iterator[None]:
    """Beat now and every `every_s` seconds from a background thread until the block ends."""
    done = threading.Event()

    def keep_beating() -> None:
        while not done.wait(every_s):
            with contextlib.suppress(OSError):  # the folder was deleted under a stopping training
                beat(folder)

    beat(folder)
    beats = background.submit(keep_beating)
    try:
        yield
    finally:
        done.set()
        background.wait(beats)
