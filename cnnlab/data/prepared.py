"""Preparing a scanned dataset: every usable image decoded and resized once into an on-disk array."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.common.checks import MB, check_choice, check_image_size
from cnnlab.common.files import atomic_path, temporary_path
from cnnlab.data import images, prepcache, reuse
from cnnlab.data.scanning import (
    CACHE_VERSION,
    DatasetReport,
    SkippedFile,
    known_unreadable,
    or_reason,
    remember_unreadable,
    scan,
    without,
)

# Below this many files handing the work to a thread pool costs more than it saves.
PARALLEL_MIN_FILES = 200


@dataclass(frozen=True)
class PreparedData:
    """Decoded, resized images of a report, held in an on-disk array (memory-mapped, not loaded).

    `report` is the report the images were prepared from, without the files that failed to
    decode; `unreadable` lists those, with the reasons. `decoded` counts the images this call
    decoded: none when the array was cached, and for a dataset version, only the images no
    prepared array held yet (see `cnnlab.data.reuse`).
    """

    report: DatasetReport
    images: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]
    color_mode: str
    resize_mode: str
    cache_path: Path
    from_cache: bool = False
    unreadable: tuple[SkippedFile, ...] = ()
    decoded: int = 0


def prepare(
    report: DatasetReport,
    image_size: tuple[int, int],
    color_mode: str = "rgb",
    resize_mode: str = "stretch",
    *,
    cache: Path,
    max_cache_mb: int | None = None,
) -> PreparedData:
    """Decode and resize every usable image once into an on-disk cache, in parallel.

    The cache is keyed by the dataset's content, the image size, colour mode and resize mode, so
    later epochs and later runs reuse it. The array is memory-mapped: a dataset larger than RAM is
    streamed from disk, never loaded whole. A file that fails to decode (truncated or corrupt
    data, which the scan's header check cannot see) is left out: the result's `report` is
    `report` without it and its `unreadable` says why, and `cache` remembers it, so later scans
    skip it too. With `max_cache_mb`, the least recently used arrays that nobody holds a lease on
    are evicted to make room for a new one, which is refused when it cannot fit; `open_prepared`
    holds that lease while the array is read. A dataset version's report (with content `hashes`)
    decodes only the images no array prepared at the same settings holds yet, copying the others.
    """
    return _prepare(report, image_size, color_mode, resize_mode, cache, max_cache_mb, hold=lambda path: None)


@contextlib.contextmanager
def open_prepared(
    report: DatasetReport,
    image_size: tuple[int, int],
    color_mode: str = "rgb",
    resize_mode: str = "stretch",
    *,
    cache: Path,
    max_cache_mb: int | None = None,
) -> Iterator[PreparedData]:
    """`prepare`, with a lease on the array for the block, so no eviction removes it while it is read."""
    with contextlib.ExitStack() as leases:
        yield _prepare(
            report,
            image_size,
            color_mode,
            resize_mode,
            cache,
            max_cache_mb,
            hold=lambda path: leases.enter_context(prepcache.lease(path)),
        )


def _prepare(
    report: DatasetReport,
    image_size: tuple[int, int],
    color_mode: str,
    resize_mode: str,
    cache: Path,
    max_cache_mb: int | None,
    hold: Callable[[Path], object],
) -> PreparedData:
    """`prepare`, calling `hold(path)` for the array's path before it is looked for or moved into place."""
    size = check_image_size(image_size, max_side=1024)
    check_choice("color_mode", color_mode, images.COLOR_MODES)
    check_choice("resize_mode", resize_mode, images.RESIZE_MODES)
    unreadable = known_unreadable(report, cache)
    report = without(report, unreadable)
    path = prepared_path(report.fingerprint, size, color_mode, resize_mode, cache=cache)
    hold(path)
    from_cache, decoded = path.exists(), 0
    if from_cache:
        prepcache.touch(path)
        if report.hashes and not prepcache.rows_path(path).exists():  # prepared before rows were listed
            reuse.write_rows(path, report.hashes)
    else:
        budget = None if max_cache_mb is None else max_cache_mb * MB
        needed = prepared_bytes(report, size, color_mode)
        with _donor_and_room(path, report.hashes, needed, budget, cache) as donor:
            report, path, failed, decoded = _decode_all(report, size, color_mode, resize_mode, cache, hold, donor)
        unreadable = [*unreadable, *failed]
    return PreparedData(
        report=report,
        images=np.load(path, mmap_mode="r"),
        labels=np.asarray(report.labels, dtype=np.int32),
        image_size=size,
        color_mode=color_mode,
        resize_mode=resize_mode,
        cache_path=path,
        from_cache=from_cache,
        unreadable=tuple(unreadable),
        decoded=decoded,
    )


@contextlib.contextmanager
def _donor_and_room(
    path: Path, hashes: tuple[str, ...], needed: int, budget: int | None, cache: Path
) -> Iterator[reuse.Donor | None]:
    """The prepared array to copy rows from (leased for the block), once room is made for the new one.

    The donor is leased before eviction, so it is not evicted; when only its room would let the new
    array fit the budget, it is let go and everything is decoded instead.
    """
    with contextlib.ExitStack() as stack:
        donor = stack.enter_context(reuse.open_donor(path, hashes))
        try:
            prepcache.make_room(cache, needed, budget, keep=path)
        except ValueError:
            if donor is None:
                raise
            stack.close()
            donor = None
            prepcache.make_room(cache, needed, budget, keep=path)
        yield donor


def _decode_all(
    report: DatasetReport,
    image_size: tuple[int, int],
    color_mode: str,
    resize_mode: str,
    cache: Path,
    hold: Callable[[Path], object],
    donor: reuse.Donor | None = None,
) -> tuple[DatasetReport, Path, list[SkippedFile], int]:
    """Decode a report's images into its array, copying those `donor` holds; returns the report
    without the files that failed to decode (remembered in `cache`), where its array now is, those
    files, and how many images were decoded."""
    height, width = image_size
    row_of = donor.row_of if donor is not None else {}
    copied = [row_of.get(sha) for sha in report.hashes] if report.hashes else [None] * len(report.files)
    jobs = [
        (str(report.path_of(rel)), image_size, color_mode, resize_mode)
        for rel, row in zip(report.files, copied, strict=True)
        if row is None
    ]
    decoded = iter(parallel_map(_decode_one, jobs))
    rows = ((donor.images[row], None) if donor is not None and row is not None else next(decoded) for row in copied)
    path = prepared_path(report.fingerprint, image_size, color_mode, resize_mode, cache=cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporary_path(path) as tmp:
        shape = (len(report.files), height, width, _channels(color_mode))
        written, failed = _write_rows(tmp, shape, report.files, rows)
        if failed:
            remember_unreadable(cache, report.fingerprint, failed)
            report = without(report, failed)
            remember_unreadable(cache, report.fingerprint, failed)
            path = prepared_path(report.fingerprint, image_size, color_mode, resize_mode, cache=cache)
            hold(path)
            with atomic_path(path) as clean:  # the rows that decoded, at the size of the images left
                _write_rows(clean, written.shape, report.files, ((row, None) for row in written))
        else:
            os.replace(tmp, path)
    if report.hashes:
        reuse.write_rows(path, report.hashes)
    return report, path, failed, len(jobs)


def prepared_path(
    fingerprint: str, image_size: tuple[int, int], color_mode: str, resize_mode: str, *, cache: Path
) -> Path:
    """Where `prepare` keeps (or will keep) the decoded array of a dataset's content for these settings."""
    height, width = image_size
    key = f"{fingerprint}-{height}x{width}-{color_mode}-{resize_mode}-v{CACHE_VERSION}"
    return prepcache.folder(cache) / f"{key}.npy"


def prepared_bytes(report: DatasetReport, image_size: tuple[int, int], color_mode: str) -> int:
    """What `prepare` would write to disk for this dataset and these settings."""
    return prepcache.array_bytes(len(report.files), image_size, _channels(color_mode))


def _channels(color_mode: str) -> int:
    check_choice("color_mode", color_mode, images.COLOR_MODES)
    return 3 if color_mode == "rgb" else 1


def _decode_one(args: tuple[str, tuple[int, int], str, str]) -> tuple[np.ndarray | None, str | None]:
    path, image_size, color_mode, resize_mode = args
    return or_reason(lambda: images.load_array(path, image_size, color_mode, resize_mode))


def _write_rows(
    path: Path, shape: tuple[int, ...], files: Iterable[str], rows: Iterable[tuple[np.ndarray | None, str | None]]
) -> tuple[np.ndarray, list[SkippedFile]]:
    """Fill a new .npy file at `path` with the rows that decoded, one after another, without gaps.

    `rows` gives each file's decoded image, or None and the reason it failed; returns the rows
    written (a memory map) and the files that failed.
    """
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    failed, count = [], 0
    for rel, (row, reason) in zip(files, rows, strict=True):
        if row is None:
            failed.append(SkippedFile(rel, reason or "unreadable image"))
        else:
            out[count] = row
            count += 1
    out.flush()
    return out[:count], failed


def parallel_map(fn: Callable, jobs: list, workers: int | None = None) -> Iterable:
    """Map over worker threads, in order, lazily; inline when there is too little work.

    Threads suffice because Pillow releases the GIL while it decodes and resizes, and they cost
    nothing to start, unlike processes (which would also need "spawn" beside TensorFlow).
    """
    workers = workers or os.cpu_count() or 1
    if workers < 2 or len(jobs) < PARALLEL_MIN_FILES:
        return map(fn, jobs)
    return _pool_map(fn, jobs, workers)


def _pool_map(fn: Callable, jobs: list, workers: int) -> Iterable:
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(fn, jobs)


def forget_prepared(data_dir: str | Path, cache: Path) -> int:
    """Delete the decoded-image caches made from a dataset that is going away, except those in use; returns how many.

    The caches are keyed by content, so another copy of the same images would simply prepare
    them again. Used when a hosted session's uploads are removed, so the server's disk does not
    fill up with the arrays of datasets nobody can open any more.
    """
    fingerprint = scan(data_dir, cache=cache).fingerprint
    busy = prepcache.in_use(cache)  # another visitor may be training on the same images
    removed = 0
    for path in prepcache.folder(cache).glob(f"{fingerprint}-*.npy"):
        if path.name not in busy:
            prepcache.remove(path)
            removed += 1
    return removed
