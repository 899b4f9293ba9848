"""Batch prediction at folder scale: every image of a folder or zip streamed through a run's model into a CSV.

The images are decoded in a thread pool up to `PREFETCH` batches ahead of the model (Pillow and
TensorFlow both release the interpreter lock, so the decoding of the next batches overlaps the
model's pass over this one), and no more than that is ever in memory: memory stays the same for
a hundred images or a hundred thousand. Rows are written as each batch ends, into a temporary
file that becomes the CSV only once every image is in it (`common.files.atomic_write`): an
interruption leaves no half CSV under its name. An image that cannot be read is a row with its
reason, never a failure of the whole batch.
"""

from __future__ import annotations

import csv
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cnnlab.common.files import atomic_write
from cnnlab.data import images
from cnnlab.data.archive import SKIPPED_FOLDERS, ZipSource
from cnnlab.model import ModelConfig

if TYPE_CHECKING:
    from cnnlab.analysis.novelty import NoveltyReference

# Images per model pass: large enough for the model's batch throughput, small enough to keep memory low.
BATCH_SIZE = 64
# Batches decoded ahead of the one the model is on: one to overlap, one to absorb uneven decode times.
PREFETCH = 2

Progress = Callable[[int, int], object]


@dataclass(frozen=True)
class BatchItem:
    """One input: its name (a path relative to the folder, or inside the zip) and its file or bytes,
    or the reason it cannot be read."""

    name: str
    source: Path | bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class BatchSource:
    """The images of a folder or zip to predict: `total` of them, `items()` yields them one at a time,
    and `skipped` files were not images (by their extension) and are left out."""

    name: str
    total: int
    skipped: int
    items: Callable[[], Iterator[BatchItem]]
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class BatchSummary:
    """What a batch prediction did: `num_images` rows, `num_unreadable` of them with an error,
    `num_skipped` files that were not images, in `seconds`."""

    num_images: int
    num_unreadable: int
    num_skipped: int
    seconds: float
    flagged: bool

    @property
    def images_per_s(self) -> float:
        """Rows per second, decoding included."""
        return self.num_images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "images": self.num_images,
            "unreadable": self.num_unreadable,
            "skipped": self.num_skipped,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 1),
            "unlike_training_column": self.flagged,
        }


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension this app reads."""
    return Path(name).suffix.lower() in images.SUPPORTED_EXTENSIONS


def folder_source(folder: Path) -> BatchSource:
    """Every image file under `folder` (sub-folders included, hidden ones and `__MACOSX` left out), by path.

    The folder is walked once to count and again to predict, so no list of its files is kept.
    A missing folder, or one without images, is a ValueError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"The folder does not exist or is not a folder; check the path. Received: folder={str(folder)!r}"
        )
    total = skipped = 0
    for path in _walk(folder):
        if is_image_name(path.name):
            total += 1
        else:
            skipped += 1
    _check_some(total, skipped, str(folder))
    items = (BatchItem(path.relative_to(folder).as_posix(), path) for path in _walk(folder) if is_image_name(path.name))
    return BatchSource(folder.name, total, skipped, lambda: items)


def zip_source(source: ZipSource, *, max_members: int = 100_000, max_total_bytes: int = 10**10) -> BatchSource:
    """Every image file in a zip (a path or its bytes), read one at a time with the upload checks of
    `cnnlab.data.zip_reader` (a member refused alone is a row with its reason). A zip that cannot be
    read, or has no images, is a ValueError."""
    from cnnlab.data.zip_reader import ZipReader

    reader = ZipReader(source, accept=is_image_name, max_members=max_members, max_total_bytes=max_total_bytes)
    name = Path(source).name if isinstance(source, (str, Path)) else "zip"
    try:
        _check_some(len(reader), 0, name)
    except ValueError:
        reader.close()
        raise
    items = (BatchItem(m.name, m.data, m.error) for m in reader)
    return BatchSource(name, len(reader), 0, lambda: items, reader.close)


def path_source(path: Path) -> BatchSource:
    """A folder's or a `.zip` file's images (`folder_source`, `zip_source`)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return zip_source(path)
    return folder_source(path)


def predict_to_csv(
    model,
    class_names: Sequence[str],
    config: ModelConfig,
    source: BatchSource,
    csv_path: Path,
    *,
    batch_size: int = BATCH_SIZE,
    temperature: float | None = None,
    reference: NoveltyReference | None = None,
    progress: Progress | None = None,
) -> BatchSummary:
    """`write_predictions` into `csv_path`, atomically: the CSV appears whole when the last row is in,
    and an interruption (an error, Ctrl-C, a `progress` callback raising) leaves no file under its name."""
    csv_path = Path(csv_path)
    if not csv_path.parent.is_dir():
        raise ValueError(
            f"The CSV's folder does not exist; create it or choose another path. Received: csv={str(csv_path)!r}"
        )
    with atomic_write(csv_path) as fh:
        return write_predictions(
            model,
            class_names,
            config,
            source,
            fh,
            batch_size=batch_size,
            temperature=temperature,
            reference=reference,
            progress=progress,
        )


def write_predictions(
    model,
    class_names: Sequence[str],
    config: ModelConfig,
    source: BatchSource,
    out: IO[str],
    *,
    batch_size: int = BATCH_SIZE,
    temperature: float | None = None,
    reference: NoveltyReference | None = None,
    progress: Progress | None = None,
) -> BatchSummary:
    """Predict every image of `source` and write one CSV row each to `out`, batch by batch.

    Columns: `image` (its path in the folder or zip), `label`, `confidence`, `unlike_training` (only
    with a novelty `reference`, computed from the same model pass), `P(<class>)` for each class in
    class order, and `error` (why an image could not be read; the other columns then empty). With a
    `temperature` (the run's) the probabilities are calibrated as `deploy.predict` calibrates them.
    `progress(done, total)` is called after each batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1. Received: batch_size={batch_size!r}")
    from cnnlab.analysis.calibration import scale_probabilities
    from cnnlab.analysis.evaluate import class_probabilities

    writer = csv.writer(out, lineterminator="\n")
    flag_column = ["unlike_training"] if reference is not None else []
    writer.writerow(["image", "label", "confidence", *flag_column, *(f"P({c})" for c in class_names), "error"])
    start, done, unreadable = time.perf_counter(), 0, 0
    try:
        for batch in _decoded_batches(source.items(), config, batch_size):
            good = [array for _, array, _ in batch if array is not None]
            flags: list[str] = []
            if good:
                pixels = np.stack(good).astype(np.float32)
                if reference is None:
                    outputs = model.predict_on_batch(pixels)
                else:
                    from cnnlab.analysis.novelty import features_and_outputs

                    features, outputs = features_and_outputs(model, pixels)
                    flags = [str(f.novel) for f in reference.flags(features)]
                probs = class_probabilities(outputs)
                if temperature is not None:
                    probs = scale_probabilities(probs, temperature)
            rows = iter(range(len(good)))
            for name, array, error in batch:
                if array is None:
                    unreadable += 1
                    writer.writerow([name, "", "", *([""] * len(flag_column)), *([""] * len(class_names)), error])
                    continue
                i = next(rows)
                best = int(np.argmax(probs[i]))
                writer.writerow(
                    [
                        name,
                        class_names[best],
                        f"{probs[i][best]:.6f}",
                        *(flags[i : i + 1] if flag_column else []),
                        *(f"{p:.6f}" for p in probs[i]),
                        "",
                    ]
                )
            done += len(batch)
            if progress is not None:
                progress(done, source.total)
    finally:
        source.close()
    return BatchSummary(done, unreadable, source.skipped, time.perf_counter() - start, reference is not None)


def _decoded_batches(
    items: Iterable[BatchItem], config: ModelConfig, batch_size: int, workers: int | None = None
) -> Iterator[list[tuple[str, np.ndarray | None, str | None]]]:
    """Batches of (name, array or None, error or None), decoded `PREFETCH` batches ahead of the consumer."""
    workers = workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="cnnlab-decode")
    pending: deque[list[Future]] = deque()
    try:
        for chunk in _chunks(items, batch_size):
            # One task per worker and batch, not per image: a future per image costs as much as a small decode.
            step = -(-len(chunk) // workers)
            pending.append([pool.submit(_decode_all, chunk[i : i + step], config) for i in range(0, len(chunk), step)])
            if len(pending) > PREFETCH:
                yield [row for f in pending.popleft() for row in f.result()]
        while pending:
            yield [row for f in pending.popleft() for row in f.result()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(items: Iterable[BatchItem], size: int) -> Iterator[list[BatchItem]]:
    chunk: list[BatchItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decode_all(items: list[BatchItem], config: ModelConfig) -> list[tuple[str, np.ndarray | None, str | None]]:
    return [_decode(item, config) for item in items]


def _decode(item: BatchItem, config: ModelConfig) -> tuple[str, np.ndarray | None, str | None]:
    if item.source is None:
        return item.name, None, item.error or "not readable"
    try:
        array = images.load_array(item.source, config.image_size, config.color_mode, config.resize_mode, name=item.name)
    except images.ImageError as exc:
        return item.name, None, str(exc)
    return item.name, array, None


def _walk(folder: Path) -> Iterator[Path]:
    """Files under `folder` in sorted order, depth first, hidden entries and `__MACOSX` left out."""
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered:
        if entry.name.startswith(".") or entry.name in SKIPPED_FOLDERS:
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


def _check_some(total: int, skipped: int, name: str) -> None:
    if total == 0:
        raise ValueError(
            f"No images found ({skipped} other files); give a folder or zip of "
            f"{', '.join(sorted(images.SUPPORTED_EXTENSIONS))} files. Received: source={name!r}"
        )
