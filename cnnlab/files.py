"""Files and folders: atomic writes and user-typed paths.

Every file or folder CNN Lab writes goes through `atomic_write`, `atomic_path`, `write_json` or
`build_folder`: a reader sees the whole new file or folder or the old one, never half of one, and
a failed write leaves no temporary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write instead; it becomes `path` when the block ends normally.

    For writers that want a file name rather than a file object (Keras's `model.save`, a NumPy
    memory map): the temporary keeps `path`'s suffix. When the block raises, the temporary is
    deleted and `path` is left as it was. The folder must exist.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: Path, mode: Literal["w", "wb"] = "w") -> Iterator[IO[Any]]:
    """A file object (text in UTF-8, or binary with mode "wb") whose contents become `path` whole,
    flushed to disk, when the block ends normally; when it raises, `path` is left as it was."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (keep_existing and target.is_dir()):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def user_path(path: str | Path, name: str) -> Path:
    """A path someone typed, with `~` or `~user` expanded; an unknown user is a clear ValueError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # what pathlib raises for `~nosuchuser`
        raise ValueError(
            f"The path starts with '~' but names no user on this machine; give the full path instead. "
            f"Received: {name}={str(path)!r}"
        ) from None
