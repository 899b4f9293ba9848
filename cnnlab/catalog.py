"""Well-known datasets, downloaded on demand, checked, and converted into class folders.

Files are fetched with `keras.utils.get_file`, from the addresses `keras.datasets` and the Keras
tutorials use; it verifies each against its published SHA-256 (files with none published are
checked by size) and reuses a verified file rather than fetching it again. The conversion writes
into a temporary folder renamed into place at the end, so a failure never leaves a
half-converted dataset behind, and a second call finds the finished folder and downloads nothing.
"""

from __future__ import annotations

import gzip
import http.client
import pickle
import re
import socket
import tarfile
import threading
import time
import urllib.error
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.checks import check_choice, one_line
from cnnlab.files import build_folder

Progress = Callable[[int, int], None]

CATALOG_VERSION = 1
# How often a download's progress is reported, and how long it may go without a byte arriving.
POLL_S = 0.2
STALL_S = 30.0
DEFAULT_MAX_PER_CLASS = 500

KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable dataset: where its files are, how to check them, what it becomes.

    `urls`, `file_sizes` and `sha256` run in parallel, one item per file; a `None` checksum means
    none is published and the file is checked by its size instead. `num_images` counts the
    original dataset; `max_per_class` (None: all) is how many images per class the conversion
    keeps, so large sets stay quick to prepare and train on.
    """

    name: str
    title: str
    description: str
    license: str
    urls: tuple[str, ...]
    file_sizes: tuple[int, ...]
    sha256: tuple[str | None, ...]
    file_format: str
    class_names: tuple[str, ...]
    num_images: int
    max_per_class: int | None = None

    @property
    def size_bytes(self) -> int:
        """Total download size."""
        return sum(self.file_sizes)

    @property
    def num_classes(self) -> int:
        """How many class folders the conversion writes."""
        return len(self.class_names)

    @property
    def file_names(self) -> tuple[str, ...]:
        """The last path part of each URL, which is also the name asked of `base_url`."""
        return tuple(url.rsplit("/", 1)[-1] for url in self.urls)


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="cats_vs_dogs",
            title="Cats vs dogs (filtered)",
            description=(
                "3,000 photos of cats and dogs (the filtered subset Keras and TensorFlow tutorials use), "
                "train and validation merged into cats/ and dogs/; JPEGs are kept as they are."
            ),
            license=(
                "Subset of the Kaggle Dogs vs. Cats data from Microsoft Research's Asirra project; no licence "
                "is stated, so use it for learning and research only. No SHA-256 is published for this file: "
                "it is checked by its exact size."
            ),
            urls=("https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",),
            file_sizes=(68_606_236,),
            sha256=(None,),
            file_format="cats_dogs_zip",
            class_names=("cats", "dogs"),
            num_images=3_000,
        ),
        CatalogEntry(
            name="flowers",
            title="Flowers (5 classes)",
            description=(
                "3,670 flower photos in 5 classes (daisy, dandelion, roses, sunflowers, tulips), the set used "
                "by the TensorFlow image tutorials; JPEGs are kept as they are."
            ),
            license=(
                "Flickr photos under Creative Commons licences (CC BY 2.0); the archive's LICENSE.txt credits "
                "each photographer."
            ),
            urls=("https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",),
            file_sizes=(228_813_984,),
            sha256=("4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",),
            file_format="flowers_tgz",
            class_names=FLOWER_CLASSES,
            num_images=3_670,
        ),
        CatalogEntry(
            name="mnist",
            title="MNIST digits",
            description=(
                f"70,000 handwritten digits, 28x28 grayscale; the first {DEFAULT_MAX_PER_CLASS} of each digit "
                "(train and test merged) are written as PNGs into folders 0-9."
            ),
            license=(
                "Copyright Yann LeCun and Corinna Cortes; available under the Creative Commons "
                "Attribution-Share Alike 3.0 licence."
            ),
            urls=(KERAS_DATASETS + "mnist.npz",),
            file_sizes=(11_490_434,),
            sha256=("731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",),
            file_format="mnist_npz",
            class_names=tuple(str(d) for d in range(10)),
            num_images=70_000,
            max_per_class=DEFAULT_MAX_PER_CLASS,
        ),
        CatalogEntry(
            name="fashion_mnist",
            title="Fashion-MNIST",
            description=(
                f"70,000 28x28 grayscale photos of 10 kinds of clothing; the first {DEFAULT_MAX_PER_CLASS} "
                "of each class (train and test merged) are written as PNGs."
            ),
            license="Copyright Zalando SE; MIT licence.",
            urls=tuple(
                KERAS_DATASETS + name
                for name in (
                    "train-labels-idx1-ubyte.gz",
                    "train-images-idx3-ubyte.gz",
                    "t10k-labels-idx1-ubyte.gz",
                    "t10k-images-idx3-ubyte.gz",
                )
            ),
            file_sizes=(29_515, 26_421_880, 5_148, 4_422_102),
            sha256=(
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            file_format="fashion_idx",
            class_names=FASHION_CLASSES,
            num_images=70_000,
            max_per_class=DEFAULT_MAX_PER_CLASS,
        ),
        CatalogEntry(
            name="cifar10",
            title="CIFAR-10",
            description=(
                f"60,000 32x32 colour photos in 10 classes; the first {DEFAULT_MAX_PER_CLASS} of each class "
                "(train and test merged) are written as PNGs."
            ),
            license=(
                'No licence is stated by its authors; cite Alex Krizhevsky, "Learning Multiple Layers of '
                'Features from Tiny Images", 2009.'
            ),
            urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            file_sizes=(170_498_071,),
            sha256=("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",),
            file_format="cifar10_tar",
            class_names=CIFAR10_CLASSES,
            num_images=60_000,
            max_per_class=DEFAULT_MAX_PER_CLASS,
        ),
    )
}


def dataset_folder(name: str, cache: Path) -> Path:
    """Where `download(name)` puts the converted class folders."""
    check_choice("name", name, tuple(CATALOG))
    return Path(cache) / "catalog" / f"{name}-v{CATALOG_VERSION}"


def download(
    name: str,
    cache: Path,
    *,
    on_progress: Progress | None = None,
    base_url: str | None = None,
) -> Path:
    """Download, check and convert catalog dataset `name`; return its class-folder root.

    A dataset converted before is returned at once. `on_progress(bytes_done, bytes_total)` is
    called as the files arrive. `base_url` fetches the same file names from another server (a
    mirror, or a local test server). Raises ValueError when offline, on an HTTP error and when a
    file does not match its published checksum; nothing half-done is left in the cache.
    """
    target = dataset_folder(name, cache)
    if target.is_dir():
        return target
    entry = CATALOG[name]
    downloads = target.parent / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    paths = _fetch_all(entry, downloads, on_progress, base_url)
    _convert_atomically(entry, paths, target)
    for path in paths:
        path.unlink(missing_ok=True)
    return target


def _fetch_all(entry: CatalogEntry, folder: Path, on_progress: Progress | None, base_url: str | None) -> list[Path]:
    total = entry.size_bytes
    done = 0

    def report(received: int) -> None:
        if on_progress is not None:
            on_progress(min(done + received, total), total)

    report(0)
    paths = []
    for url, file_name, size, sha256 in zip(entry.urls, entry.file_names, entry.file_sizes, entry.sha256, strict=True):
        if base_url:
            url = base_url.rstrip("/") + "/" + file_name
        paths.append(_fetch(entry, url, folder / f"{entry.name}-{file_name}", size, sha256, report))
        done += size
    return paths


def _fetch(
    entry: CatalogEntry, url: str, path: Path, size: int, sha256: str | None, report: Callable[[int], None]
) -> Path:
    """Fetch one file with `keras.utils.get_file`, which verifies the SHA-256 and reuses a verified file.

    get_file reports progress only by printing a bar, so it runs in a worker thread while this
    one reports the file's growing size (keeping `report`, which may draw a Streamlit progress
    bar, on the caller's thread) and gives up when no byte has arrived for STALL_S seconds.
    """
    import keras

    outcome: dict[str, object] = {}

    def fetch() -> None:
        # Keras's setting is per thread: only this worker's printed bar is silenced, as `report` replaces it.
        keras.config.disable_interactive_logging()
        try:
            outcome["path"] = keras.utils.get_file(
                path.name, url, file_hash=sha256, hash_algorithm="sha256", cache_dir=str(path.parent), cache_subdir=""
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which explains it
            outcome["error"] = exc

    worker = threading.Thread(target=fetch, name=f"download-{path.name}", daemon=True)
    worker.start()
    received, last_change = -1, time.monotonic()
    while worker.is_alive():
        worker.join(POLL_S)
        now_received = _size(path)
        if now_received != received:
            received, last_change = now_received, time.monotonic()
            report(min(received, size))
        elif time.monotonic() - last_change > STALL_S:
            path.unlink(missing_ok=True)  # the stalled worker may go on writing, but only to this unlinked file
            raise _cannot_download(entry, f"no data arrived for {STALL_S:g} s", "Check the network and try again")
    if "error" in outcome:
        path.unlink(missing_ok=True)
        raise _download_error(entry, outcome["error"], path, url) from None
    _check_size(entry, Path(outcome["path"]), size)
    report(size)
    return Path(outcome["path"])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _download_error(entry: CatalogEntry, exc: BaseException, path: Path, url: str) -> ValueError:
    """The one-line message for a failed get_file call."""
    if isinstance(exc, ValueError) and "hash does not match" in str(exc):
        return _mismatch(entry, url.rsplit("/", 1)[-1], "SHA-256 checksum", f"file={path.name!r}")
    # get_file re-raises HTTP and URL errors as a bare Exception; the original is its context.
    cause = exc.__context__ if type(exc) is Exception and exc.__context__ is not None else exc
    if isinstance(cause, urllib.error.HTTPError):
        return _cannot_download(entry, f"the server answered HTTP {cause.code} ({cause.reason})", "Try again later")
    if isinstance(cause, (urllib.error.ContentTooShortError, ConnectionError, http.client.HTTPException)):
        return _cannot_download(entry, f"the connection broke off ({_reason(cause)})", "Try again")
    if isinstance(cause, (urllib.error.URLError, socket.timeout, TimeoutError)):
        return _cannot_download(
            entry, f"no network connection ({_reason(cause)})", "Download it on a machine with internet access"
        )
    if isinstance(cause, OSError):
        return ValueError(
            f"Could not save the download of {entry.title} ({_reason(cause)}); check that {path.parent} is writable "
            f"and has space. Received: name={entry.name!r}"
        )
    # Anything else is about the address itself (a mistyped mirror, an unknown scheme).
    return ValueError(
        f"Could not download {entry.title} from {url} ({_reason(cause)}); check the address (CNNLAB_DATASETS_URL or "
        f"--base-url). Received: url={url!r}"
    )


def _check_size(entry: CatalogEntry, path: Path, size: int) -> None:
    """Files with no published checksum are checked by their size."""
    received = _size(path)
    if received != size:
        path.unlink(missing_ok=True)
        raise _mismatch(entry, path.name, "size", f"bytes={received}")


def _cannot_download(entry: CatalogEntry, what: str, retry: str) -> ValueError:
    """Why a download failed and what to do: `retry`, or fall back on data the app already has."""
    return ValueError(
        f"Could not download {entry.title}: {what}. {retry}, or use the built-in sample or a folder/zip "
        f"instead. Received: name={entry.name!r}"
    )


def _mismatch(entry: CatalogEntry, file_name: str, what: str, received: str) -> ValueError:
    """A downloaded file that is not the published one (`what`: its checksum or its size)."""
    return ValueError(
        f"The download of {entry.title} ({file_name}) does not match its published {what}: the transfer was "
        f"corrupted or the file changed on the server, so it was deleted; try again later. Received: {received}"
    )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, socket.gaierror):
        return "the server name could not be resolved"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "the connection timed out"
    return one_line(reason) if isinstance(reason, BaseException) else str(reason)


def _convert_atomically(entry: CatalogEntry, paths: list[Path], target: Path) -> None:
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

    build_folder(target, fill)


# --- Converters: one per file format, each writing images into `out/<class name>/`. ---


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
    with tarfile.open(paths[0], "r:gz") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in batches:
                found[base] = _ArrayUnpickler(tar.extractfile(member), encoding="bytes").load()
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


def _tar_files(path: Path) -> Iterator[tuple[list[str], tarfile.TarFile, tarfile.TarInfo]]:
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                yield member.name.split("/"), tar, member


def _convert_flowers(entry: CatalogEntry, paths: list[Path], out: Path) -> None:
    for parts, tar, member in _tar_files(paths[0]):
        if len(parts) >= 2 and parts[-2] in entry.class_names and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
            _copy_member(tar.extractfile(member).read(), out, parts[-2], parts[-1])


CONVERTERS: dict[str, Callable[[CatalogEntry, list[Path], Path], None]] = {
    "mnist_npz": _convert_mnist,
    "fashion_idx": _convert_fashion,
    "cifar10_tar": _convert_cifar10,
    "cats_dogs_zip": _convert_cats_dogs,
    "flowers_tgz": _convert_flowers,
}
