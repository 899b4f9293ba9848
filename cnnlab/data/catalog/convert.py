"""Converting a catalog entry's downloaded files into class folders, one converter per file format.

The conversion writes into a temporary folder renamed into place at the end, so a failure never
leaves a half-converted dataset behind.
"""

from __future__ import annotations

import gzip
import pickle
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from cnnlab.common.checks import one_line
from cnnlab.common.files import build_folder
from cnnlab.data.catalog.entries import CatalogEntry


def convert_atomically(entry: CatalogEntry, paths: list[Path], target: Path) -> None:
    """Convert the downloaded `paths` into class folders at `target`, whole or not at all."""

    def fill(folder: Path) -> None:
        try:
            for class_name in entry.class_names:
                (folder / class_name).mkdir()
            CONVERTERS[entry.file_format](entry, paths, folder)
        except (
            KeyError,
            ValueError,
            EOFError,
            OSError,
            zipfile.BadZipFile,
            tarfile.TarError,
            pickle.UnpicklingError,
            zlib.error,
        ) as exc:
            raise ValueError(
                f"The download of {entry.title} could not be converted ({type(exc).__name__}: {one_line(exc)}); "
                f"delete {target.parent / 'downloads'} and try again. Received: name={entry.name!r}"
            ) from None

    build_folder(target, fill, keep_existing=True)


def _save_arrays(images: np.ndarray, labels: np.ndarray, entry: CatalogEntry, out: Path) -> None:
    """Write the first `max_per_class` images of each class as PNGs, in their original order."""
    limit = entry.max_per_class or len(labels)
    for label, class_name in enumerate(entry.class_names):
        for i in np.flatnonzero(labels == label)[:limit]:
            Image.fromarray(images[i]).save(out / class_name / f"{class_name}_{i:05d}.png")


def _convert_mnist(entry: CatalogEntry, paths: list[Path], out: Path) -> None:
    with np.load(paths[0], allow_pickle=False) as data:
        images = np.concatenate([data["x_train"], data["x_test"]])
        labels = np.concatenate([data["y_train"], data["y_test"]])
    _save_arrays(images.astype(np.uint8), labels, entry, out)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file (labels: magic 2049, images: magic 2051) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    found, count = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    if found != magic:
        raise KeyError(f"{path.name} is not an IDX file with magic {magic}")
    if magic == 2049:
        return np.frombuffer(raw, np.uint8, count=count, offset=8)
    rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
    return np.frombuffer(raw, np.uint8, count=count * rows * cols, offset=16).reshape(count, rows, cols)


def _convert_fashion(entry: CatalogEntry, paths: list[Path], out: Path) -> None:
    train_labels, train_images, test_labels, test_images = paths
    images = np.concatenate([_read_idx(train_images, 2051), _read_idx(test_images, 2051)])
    labels = np.concatenate([_read_idx(train_labels, 2049), _read_idx(test_labels, 2049)])
    _save_arrays(images, labels, entry, out)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only, never arbitrary callables."""

    ALLOWED = {
        ("_codecs", "encode"),  # how Python 3 writes bytes into protocol-2 pickles
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _convert_cifar10(entry: CatalogEntry, paths: list[Path], out: Path) -> None:
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    found: dict[str, dict] = {}
    for parts, file in _tar_files(paths[0]):
        if parts[-1] in batches:
            found[parts[-1]] = _ArrayUnpickler(file, encoding="bytes").load()
    data = [found[name] for name in batches]  # KeyError names a missing batch
    images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in data])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in data])
    _save_arrays(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels, entry, out)


def _copy_member(data: bytes, out: Path, class_name: str, file_name: str) -> None:
    # Our own file name, never the archive's path, so nothing can land outside `out`.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", file_name).lstrip(".") or "image.jpg"
    (out / class_name / safe).write_bytes(data)


def _convert_cats_dogs(entry: CatalogEntry, paths: list[Path], out: Path) -> None:
    with zipfile.ZipFile(paths[0]) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if info.is_dir() or len(parts) < 3 or parts[-3] not in ("train", "validation"):
                continue
            if parts[-2] in entry.class_names and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
                _copy_member(zf.read(info), out, parts[-2], f"{parts[-3]}_{parts[-1]}")


def _tar_files(path: Path) -> Iterator[tuple[list[str], IO[bytes]]]:
    """Each regular file of a .tar.gz: its path parts and its contents, read as the archive streams by."""
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            file = tar.extractfile(member) if member.isfile() else None
            if file is not None:
                yield member.name.split("/"), file


def _convert_flowers(entry: CatalogEntry, paths: list[Path], out: Path) -> None:
    for parts, file in _tar_files(paths[0]):
        if len(parts) >= 2 and parts[-2] in entry.class_names and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
            _copy_member(file.read(), out, parts[-2], parts[-1])


CONVERTERS: dict[str, Callable[[CatalogEntry, list[Path], Path], None]] = {
    "mnist_npz": _convert_mnist,
    "fashion_idx": _convert_fashion,
    "cifar10_tar": _convert_cifar10,
    "cats_dogs_zip": _convert_cats_dogs,
    "flowers_tgz": _convert_flowers,
}
