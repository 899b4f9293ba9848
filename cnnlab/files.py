"""Files and folders: atomic writes (a reader sees a whole file or folder or none of it, never
half of one) and user-typed paths."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    _write_atomic(path, "w", lambda fh: json.dump(data, fh, indent=1, default=str))


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes (an encoded PNG, say) through a temporary file and a rename."""
    _write_atomic(path, "wb", lambda fh: fh.write(data))


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write a NumPy array as `.npy` through a temporary file and a rename."""
    _write_atomic(path, "wb", lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))


def _write_atomic(path: Path, mode: str, write: Callable[[Any], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_folder(target: Path, fill: Callable[[Path], object]) -> Path:
    """Make `target` by filling a temporary folder beside it with `fill(folder)`, then renaming it.

    A failure leaves no `target` behind. When another process renames its own copy into place
    first, that copy is kept: both were built from the same input.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():
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
