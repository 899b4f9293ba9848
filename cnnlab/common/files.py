"""Files and folders: atomic writes and user-typed paths.

Every file or folder CNN Lab writes goes through `atomic_write`, `atomic_path`, `write_json` or
`build_folder`: a reader sees the whole new file or folder or the old one, never half of one, and
a failed write leaves no temporary behind. A killed process can still leave one, so every
temporary is named for its writer, `.<name>.<host>-<pid>-<random>.tmp[<suffix>]` (`host`: a short
hash of the machine's name): `remove_stale_temporaries` finds them and removes those whose writer
is gone. Age alone never condemns a temporary of this machine (a live writer may take hours); one
written on another machine sharing the folder, whose process cannot be checked from here, is
removed only once it has been left untouched for a day.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

TEMP_MARK = ".tmp"
# This machine, in the names of temporaries and leases: a process id means something only where it runs.
HOST_ID = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# How long another machine's temporary or lease is trusted to be live without a change.
FOREIGN_MAX_AGE_S = 24 * 3600.0
_TEMPORARY = re.compile(r"^\..+?\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9]+){0,2}$")
_STARTED = time.time()


def writer_tag(pid: int | None = None) -> str:
    """`<host>-<pid>`: who writes a temporary or holds a lease (default: this process)."""
    return f"{HOST_ID}-{os.getpid() if pid is None else pid}"


def _temp_prefix(path: Path, pid: int | None = None) -> str:
    return f".{path.name}.{writer_tag(pid)}-"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write instead; it becomes `path` when the block ends normally.

    For writers that want a file name rather than a file object (Keras's `model.save`, a NumPy
    memory map): the temporary keeps `path`'s suffixes (Keras checks for `.weights.h5`). When the
    block raises, the temporary is deleted and `path` is left as it was. The folder must exist.
    The writer must have closed (or flushed) the file when the block ends: its contents are then
    synced to disk before the rename, and the folder after it, so that after a power cut `path`
    is the old file or the whole new one (a rename can reach the disk before the data it names).
    """
    with temporary_path(path) as tmp:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
        _sync(path.parent)


def _sync(path: Path) -> None:
    """Flush a file's contents, or a folder's entries, to disk (a folder where the system allows it)."""
    folder = path.is_dir()
    try:
        fd = os.open(path, os.O_RDONLY if folder else os.O_RDWR)  # Windows flushes only files open for writing
    except OSError:
        if folder:
            return  # a folder cannot be opened on some systems (Windows): its entries are the system's to flush
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise  # some file systems refuse to sync a folder; a file's data must reach the disk
    finally:
        os.close(fd)


@contextmanager
def temporary_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, named as `atomic_path` names them, deleted when the block ends.

    For a writer that decides only at the end what becomes of its file (it may `os.replace` it
    into place itself). The folder must exist.
    """
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=f"{TEMP_MARK}{suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: Path, mode: Literal["w", "wb"] = "w") -> Iterator[IO[Any]]:
    """A file object (text in UTF-8, or binary with mode "wb") whose contents become `path` whole,
    synced to disk (`atomic_path`), when the block ends normally; when it raises, `path` is left as it was."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
        yield fh


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON, atomically (values JSON has no type for are written as text)."""
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=1, default=str)


def build_folder(target: Path, fill: Callable[[Path], object], *, keep_existing: bool = False) -> Path:
    """Make `target` by filling a temporary folder beside it with `fill(folder)`, then renaming it.

    A failure leaves neither `target` nor the temporary folder behind. `target` may exist only as
    an empty folder. When another writer puts a full `target` in place first, this one fails
    with OSError, unless `keep_existing` (a cache that every writer builds from the same input),
    when that copy is kept and returned.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=TEMP_MARK, dir=target.parent))
    try:
        fill(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (keep_existing and target.is_dir()):
                raise
        _sync(target.parent)  # the folder's name; files that `fill` wrote with `atomic_path` are synced already
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def temporary_name(path: Path) -> Path:
    """A new temporary name beside `path` (for moving something aside before deleting it)."""
    return path.with_name(f"{_temp_prefix(path)}{os.urandom(4).hex()}{TEMP_MARK}")


def remove_stale_temporaries(root: Path, max_depth: int = 3) -> list[Path]:
    """Remove the temporaries that killed writers left in `root`, down to `max_depth` levels; returns them.

    A temporary is stale once the process named in it is gone from this machine (or is a new
    process that reused its id), or, written on another machine, once untouched for
    `FOREIGN_MAX_AGE_S`. Files not named as CNN Lab names its temporaries are never touched.
    """
    removed: list[Path] = []
    now = time.time()
    folders = [(Path(root), 1)]
    while folders:
        folder, depth = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match and _is_stale(entry, match["host"], int(match["pid"]), now):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
            elif depth < max_depth and entry.is_dir(follow_symlinks=False):
                folders.append((Path(entry.path), depth + 1))
    return removed


def remove_temporaries(path: Path, pid: int) -> list[Path]:
    """Remove the temporaries that the process `pid`, now gone, was writing in place of `path`; returns them."""
    prefix = _temp_prefix(path, pid)
    found = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and _TEMPORARY.match(p.name)]
    for leftover in found:
        _remove(leftover)
    return found


def _is_stale(entry: os.DirEntry, host: str, pid: int, now: float) -> bool:
    try:
        modified = entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    return not writer_alive(host, pid, modified, now)


def writer_alive(host: str, pid: int, modified: float, now: float | None = None) -> bool:
    """Whether the writer `host`-`pid` named in a file last modified at `modified` may still be using it.

    On this machine, while its process exists: our own id on a file older than this process
    means a previous process with the same id (a restarted container reuses them). Another
    machine's process cannot be checked from here: it counts as alive until the file has been
    left alone for `FOREIGN_MAX_AGE_S`.
    """
    if host != HOST_ID:
        return (time.time() if now is None else now) - modified < FOREIGN_MAX_AGE_S
    return process_alive(pid) and not (pid == os.getpid() and modified < _STARTED)


def folder_bytes(path: Path) -> int:
    """The size of every file under `path` (links not followed); 0 when it does not exist."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False  # os.kill(0 or -1, ...) would signal process groups, not one process
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, run by another user
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def user_path(path: str | Path, name: str) -> Path:
    """A path someone typed, with `~` or `~user` expanded; an unknown user is a clear ValueError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # what pathlib raises for `~nosuchuser`
        raise ValueError(
            f"The path starts with '~' but names no user on this machine; give the full path instead. "
            f"Received: {name}={str(path)!r}"
        ) from None
