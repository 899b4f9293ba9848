"""Reusing decoded images across dataset versions, so a version that differs by k images decodes only those k.

A dataset version's report names each image by its content hash (`DatasetReport.hashes`). Beside
the array `prepare` makes from such a report, a `.rows` file (`prepcache.rows_path`) lists the
SHA-256 of the image in each row, one a line. Preparing another version at the same image size,
colour mode and resize mode copies the rows of the images a prepared array holds already (its
"donor": the one holding most of them) and decodes only the rest; a relabelled version decodes
nothing. The donor is leased while it is read, so no eviction removes it meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.common.files import atomic_write
from cnnlab.data import prepcache


@dataclass(frozen=True)
class Donor:
    """A prepared array (memory-mapped) and the row of each image it holds, by content hash."""

    path: Path
    images: np.ndarray
    row_of: dict[str, int]


def write_rows(path: Path, hashes: Sequence[str]) -> None:
    """Record which image (SHA-256) each row of the array at `path` holds."""
    with atomic_write(prepcache.rows_path(path)) as fh:
        fh.write("".join(f"{sha}\n" for sha in hashes))


@contextlib.contextmanager
def open_donor(path: Path, hashes: Sequence[str]) -> Iterator[Donor | None]:
    """The prepared array with most of the images `hashes` names, leased for the block; None when no
    array of the same settings as the one to be made at `path` holds any (or `hashes` is empty)."""
    found = _best_donor(path, set(hashes)) if hashes else None
    if found is None:
        yield None
        return
    donor_path, rows = found
    with prepcache.lease(donor_path):
        try:
            images = np.load(donor_path, mmap_mode="r")
        except (OSError, ValueError):  # evicted before the lease was taken, or damaged: decode instead
            yield None
            return
        if len(images) != len(rows):
            yield None
            return
        prepcache.touch(donor_path)
        yield Donor(donor_path, images, {sha: i for i, sha in enumerate(rows)})


def _best_donor(path: Path, wanted: set[str]) -> tuple[Path, list[str]] | None:
    """The array of the same settings as `path` (its name after the fingerprint) that holds most of
    `wanted`, with its rows' hashes."""
    settings = path.name.split("-", 1)[1].removesuffix(path.suffix)
    best: tuple[Path, list[str]] | None = None
    most = 0
    for rows_file in path.parent.glob(f"*-{settings}{prepcache.ROWS_SUFFIX}"):
        array = rows_file.with_suffix(path.suffix)
        if array == path or not array.exists():
            continue
        try:
            rows = rows_file.read_text(encoding="ascii").split()
        except (OSError, ValueError):  # removed meanwhile, or damaged
            continue
        shared = len(wanted.intersection(rows))
        if shared > most:
            best, most = (array, rows), shared
    return best
