"""Well-known datasets, downloaded on demand, checked, and converted into class folders.

`entries` lists the datasets, `fetch` downloads and verifies their files (`keras.utils.get_file`
with the published SHA-256), `convert` turns each file format into class folders, written into
a temporary folder renamed into place, so a failure never leaves a half-converted dataset
behind, and a second call finds the finished folder and downloads nothing.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.common.checks import check_choice
from cnnlab.data.catalog.convert import CONVERTERS, convert_atomically
from cnnlab.data.catalog.entries import CATALOG, CIFAR10_CLASSES, FASHION_CLASSES, FLOWER_CLASSES, CatalogEntry
from cnnlab.data.catalog.fetch import Progress, fetch_all

__all__ = [
    "CATALOG",
    "CATALOG_VERSION",
    "CIFAR10_CLASSES",
    "CONVERTERS",
    "FASHION_CLASSES",
    "FLOWER_CLASSES",
    "CatalogEntry",
    "dataset_folder",
    "download",
]

CATALOG_VERSION = 1


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
    paths = fetch_all(entry, downloads, on_progress, base_url)
    convert_atomically(entry, paths, target)
    for path in paths:
        path.unlink(missing_ok=True)
    return target
