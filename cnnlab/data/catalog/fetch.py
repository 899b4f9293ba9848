"""Fetching a catalog entry's files: verified, with progress, and a one-line message for each way it fails.

Files are fetched with `keras.utils.get_file`, from the addresses `keras.datasets` and the Keras
tutorials use; it verifies each against its published SHA-256 (files with none published are
checked by size) and reuses a verified file rather than fetching it again.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

from cnnlab.common import background
from cnnlab.common.checks import one_line
from cnnlab.data.catalog.entries import CatalogEntry

Progress = Callable[[int, int], None]

# How often a download's progress is reported, and how long it may go without a byte arriving.
POLL_S = 0.2
STALL_S = 30.0


def fetch_all(entry: CatalogEntry, folder: Path, on_progress: Progress | None, base_url: str | None) -> list[Path]:
    """Fetch every file of `entry` into `folder` (from `base_url` when given); return their paths."""
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

    get_file reports progress only by printing a bar, so it runs in the background while this
    one reports the file's growing size (keeping `report`, which may draw a Streamlit progress
    bar, on the caller's thread) and gives up when no byte has arrived for STALL_S seconds.
    """
    import keras

    def fetch() -> Path:
        # Keras's setting is per thread: only this worker's printed bar is silenced, as `report` replaces it.
        keras.config.disable_interactive_logging()
        return Path(
            keras.utils.get_file(
                path.name, url, file_hash=sha256, hash_algorithm="sha256", cache_dir=str(path.parent), cache_subdir=""
            )
        )

    future = background.submit(fetch)
    received, last_change = -1, time.monotonic()
    while not future.done():
        futures.wait([future], timeout=POLL_S)
        now_received = _size(path)
        if now_received != received:
            received, last_change = now_received, time.monotonic()
            report(min(received, size))
        elif time.monotonic() - last_change > STALL_S:
            path.unlink(missing_ok=True)  # the stalled worker may go on writing, but only to this unlinked file
            raise _cannot_download(entry, f"no data arrived for {STALL_S:g} s", "Check the network and try again")
    try:
        fetched = future.result()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a one-line message
        path.unlink(missing_ok=True)
        raise _download_error(entry, exc, path, url) from None
    _check_size(entry, fetched, size)
    report(size)
    return fetched


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
