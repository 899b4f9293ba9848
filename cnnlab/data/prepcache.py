"""The prepared-image cache on disk: leases on the arrays in use, least-recently-used eviction.

`data.prepare` writes one `.npy` array per dataset content, image size, colour mode and resize
mode under `<cache>/prepared/`. A training (or an evaluation) holds a lease on its array while it
reads it, so an eviction never removes an array someone is using; every use refreshes the
array's modification time, which is what "least recently used" goes by.

A lease is an empty file `.<array name>.<host>-<pid>-<random>.lease` beside the array, removed when the
lease ends; a lease whose process is gone (killed) no longer counts and is removed by `evict`.
An array of a dataset version may have a `.rows` file beside it, naming the image in each row
(see `cnnlab.data.reuse`); it goes with its array.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cnnlab.common.checks import MB, megabytes
from cnnlab.common.files import TEMP_MARK, writer_alive, writer_tag

FOLDER = "prepared"
LEASE_SUFFIX = ".lease"
ROWS_SUFFIX = ".rows"
_LEASE = re.compile(r"^\.(?P<array>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]+\.lease$")


@dataclass(frozen=True)
class CachedArray:
    """One prepared array (or one being written) and what it takes on disk."""

    path: Path
    size: int
    used: float
    writing: bool = False


def folder(cache: Path) -> Path:
    """Where the prepared arrays live in a cache folder."""
    return Path(cache) / FOLDER


def array_bytes(num_images: int, image_size: tuple[int, int], channels: int) -> int:
    """Bytes a prepared array of `num_images` images takes on disk (uint8, plus the .npy header)."""
    height, width = image_size
    return num_images * height * width * channels + 128


@contextlib.contextmanager
def lease(path: Path) -> Iterator[None]:
    """Mark the array at `path` (which may not exist yet) in use by this process while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = path.with_name(f".{path.name}.{writer_tag()}-{os.urandom(4).hex()}{LEASE_SUFFIX}")
    token.touch()
    try:
        yield
    finally:
        token.unlink(missing_ok=True)


def rows_path(path: Path) -> Path:
    """The file beside the array at `path` that lists which image each of its rows holds."""
    return path.with_suffix(ROWS_SUFFIX)


def remove(path: Path) -> None:
    """Delete the array at `path` and the list of its rows."""
    path.unlink(missing_ok=True)
    rows_path(path).unlink(missing_ok=True)


def touch(path: Path) -> None:
    """Record a use of the array at `path`, for least-recently-used eviction."""
    with contextlib.suppress(OSError):  # evicted meanwhile: the reader's memory map still works
        os.utime(path)


def in_use(cache: Path) -> set[str]:
    """Names of the arrays that a live process holds a lease on (stale leases are removed)."""
    names = set()
    for entry in _entries(cache):
        match = _LEASE.match(entry.name)
        if match is None:
            continue
        try:
            alive = writer_alive(match["host"], int(match["pid"]), entry.stat().st_mtime)
        except OSError:  # ended meanwhile
            continue
        if alive:
            names.add(match["array"])
        else:
            Path(entry.path).unlink(missing_ok=True)
    return names


def arrays(cache: Path) -> list[CachedArray]:
    """The prepared arrays in `cache`, and the ones being written, oldest use first."""
    found = []
    for entry in _entries(cache):
        writing = TEMP_MARK in entry.name and entry.name.endswith(".npy")
        if not entry.name.endswith(".npy") or (entry.name.startswith(".") and not writing):
            continue
        with contextlib.suppress(OSError):  # removed meanwhile
            stat = entry.stat(follow_symlinks=False)
            found.append(CachedArray(Path(entry.path), stat.st_size, stat.st_mtime, writing))
    return sorted(found, key=lambda a: a.used)


def total_bytes(cache: Path) -> int:
    """What the prepared arrays (finished or being written) take on disk."""
    return sum(a.size for a in arrays(cache))


def evict(cache: Path, max_bytes: int, needed: int = 0, keep: Path | None = None) -> int:
    """Remove least-recently-used arrays until `needed` more bytes fit in `max_bytes`; returns the total left.

    Arrays under a live lease, arrays being written and `keep` are never removed, so the total
    left may stay over the budget; the caller decides whether that refuses its work.
    """
    busy = in_use(cache)
    found = arrays(cache)
    total = sum(a.size for a in found)
    for array in found:
        if total + needed <= max_bytes:
            break
        if array.writing or array.path.name in busy or array.path == keep:
            continue
        remove(array.path)
        total -= array.size
    return total


def make_room(cache: Path, needed: int, max_bytes: int | None, keep: Path | None = None) -> None:
    """Evict so that an array of `needed` bytes fits the server's budget, or say why it cannot."""
    if max_bytes is None:
        return
    if needed > max_bytes:
        raise ValueError(
            f"Preparing this dataset needs {megabytes(needed)} of decoded images, more than the server's whole "
            f"{megabytes(max_bytes)} cache for them; choose a smaller image size or grayscale, or use fewer "
            f"images. Received: needed_mb={needed / MB:.1f}"
        )
    left = evict(cache, max_bytes, needed, keep)
    if left + needed > max_bytes:
        raise ValueError(
            f"The server's cache of decoded images is full with datasets other trainings are using now "
            f"({megabytes(left)} of {megabytes(max_bytes)}); try again in a few minutes or choose a smaller "
            f"image size. Received: needed_mb={needed / MB:.1f}"
        )


def _entries(cache: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder(cache)))
    except OSError:
        return []
