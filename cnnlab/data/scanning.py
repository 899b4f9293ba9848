"""Scanning a folder dataset: which files of its class sub-folders are usable images, and why not the others.

The header checks of a scan, and the files `prepare` found it could not decode, are remembered in
the cache's `scans/` folder, so scanning the same files again is instant and skips those files too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cnnlab.common.checks import shorten
from cnnlab.common.files import user_path, write_json
from cnnlab.data import images
from cnnlab.data.imbalance import imbalance_advice

CACHE_VERSION = 1
SUGGESTED_SIDE = 512
LINK_OUTSIDE = "symbolic link to outside the dataset folder (not followed)"
# Left by tools that unzip a Windows zip byte for byte; such a name cannot go into JSON, CSV or the app.
NOT_UTF8 = "name is not valid UTF-8 (shown with \\x escapes); rename it"
# The start of a file read to find its image header; a header running past it is read from the file.
HEADER_BYTES = 1 << 16
# The path prefix of images stored by a dataset version rather than found in a class folder; a class
# folder never starts with "." (hidden folders are never data), so no folder's image can look like one.
ADDED = ".added/"
T = TypeVar("T")


@dataclass(frozen=True)
class SkippedFile:
    """A file the scanner did not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class DatasetReport:
    """What a scan of a class-folder dataset found."""

    root: Path
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]
    skipped: tuple[SkippedFile, ...]
    fingerprint: str
    empty_classes: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()
    added_root: Path | None = None

    def path_of(self, rel: str) -> Path:
        """Where the image `files` names as `rel` is: under `root`, or, for an image added to a dataset
        version (a path starting with `ADDED`), under `added_root`."""
        if rel.startswith(ADDED) and self.added_root is not None:
            return self.added_root / rel
        return self.root / rel

    @property
    def num_classes(self) -> int:
        """How many classes have at least one usable image."""
        return len(self.class_names)

    @property
    def counts(self) -> dict[str, int]:
        """Usable images per class, in class order."""
        totals = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=self.num_classes)
        return {name: int(n) for name, n in zip(self.class_names, totals, strict=True)}

    def size_stats(self) -> dict[str, float]:
        """Min, median and max of the original widths and heights."""
        if not self.sizes:
            return {}
        sizes = np.asarray(self.sizes)
        stats: dict[str, float] = {}
        for axis, name in enumerate(("width", "height")):
            stats[f"min_{name}"] = int(sizes[:, axis].min())
            stats[f"median_{name}"] = float(np.median(sizes[:, axis]))
            stats[f"max_{name}"] = int(sizes[:, axis].max())
        return stats

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-file lists except the skipped files)."""
        return {
            "root": str(self.root),
            "classes": list(self.class_names),
            "counts": self.counts,
            "num_images": len(self.files),
            "size_stats": self.size_stats(),
            "empty_classes": list(self.empty_classes),
            "skipped": [asdict(s) for s in self.skipped],
            "fingerprint": self.fingerprint,
        }


def scan(
    data_dir: str | Path,
    max_pixels: int = images.MAX_PIXELS,
    cache: Path | None = None,
    max_total_pixels: int | None = None,
) -> DatasetReport:
    """Scan a folder of class sub-folders, checking every file's header, and report what can be used.

    Each image's header is read, not its pixels, so scanning is quick even for many files:
    non-images, unsupported formats and images over `max_pixels` are skipped here, while
    truncated or corrupt pixel data is found by `prepare`, which decodes every image anyway and
    remembers what failed in `cache`, so later scans skip those files too. With a `cache` folder,
    the header checks are cached by file name, size and modification time, so scanning again is
    instant. With `max_total_pixels`, a dataset whose images add up to more pixels is refused as
    soon as the headers read add up to more. Symbolic links are never followed out of the dataset
    folder: such a class folder or file is reported as skipped.
    """
    root = _check_dir(data_dir)
    class_dirs, candidates, skipped = _list_files(root)
    listing = _listing_fingerprint(root, [rel for rel, _ in candidates])
    key = f"scan-{listing}-{max_pixels}"
    checks = _cached_checks(cache, key)
    if checks is None:
        checks = _check_headers(root, candidates, max_pixels, max_total_pixels)
    files, labels, sizes = [], [], []
    for (rel, label), (size, reason) in zip(candidates, checks, strict=True):
        if reason:
            skipped.append(SkippedFile(rel, reason))
        else:
            files.append(rel)
            labels.append(label)
            sizes.append(tuple(size))
    report = build_report(root, [d.name for d in class_dirs], files, labels, sizes, skipped)
    if cache is not None:
        report = without(report, known_unreadable(report, cache))
    _store_checks(cache, key, checks)  # only once accepted: a refused dataset leaves nothing behind
    return report


def _list_files(root: Path) -> tuple[list[Path], list[tuple[str, int]], list[SkippedFile]]:
    """The class folders, the candidate images with their labels, and the files skipped at sight."""
    class_dirs: list[Path] = []
    candidates: list[tuple[str, int]] = []
    skipped: list[SkippedFile] = []
    for entry in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _leaves(entry, root):
            skipped.append(SkippedFile(_shown(entry.name), LINK_OUTSIDE))
        elif _shown(entry.name) != entry.name:
            skipped.append(SkippedFile(_shown(entry.name), f"folder {NOT_UTF8}"))
        else:
            class_dirs.append(entry)
    for label, class_dir in enumerate(class_dirs):
        for path, reason in _walk(class_dir, root):
            rel = path.relative_to(root).as_posix()
            reason = reason or (f"file {NOT_UTF8}" if _shown(rel) != rel else _quick_reject(path))
            if reason:
                skipped.append(SkippedFile(_shown(rel), reason))
            else:
                candidates.append((rel, label))
    skipped.extend(
        SkippedFile(_shown(p.name), "file outside any class folder") for p in sorted(root.iterdir()) if p.is_file()
    )
    return class_dirs, candidates, skipped


def _check_dir(data_dir: str | Path) -> Path:
    root = user_path(data_dir, "data_dir")
    if not root.is_dir():
        raise ValueError(
            f"Dataset folder not found; give a folder with one sub-folder of images per class. "
            f"Received: data_dir={_shown(str(data_dir))!r}"
        )
    root = root.resolve()
    if _shown(str(root)) != str(root):
        raise ValueError(
            f"The dataset folder's path is not valid UTF-8 (shown with \\x escapes); rename the folder. "
            f"Received: data_dir={_shown(str(root))!r}"
        )
    return root


def _shown(name: str) -> str:
    """`name` as text that JSON, CSV and the app can hold: bytes of it that are not UTF-8 become `\\xNN`.

    Python reads such bytes of a file name as lone surrogates, which no UTF-8 writer accepts.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _walk(class_dir: Path, root: Path) -> Iterable[tuple[Path, str | None]]:
    """Every file under a class folder, with the reason to skip it when it is a symbolic link.

    os.walk lists links to folders among the folders but never enters them; they are reported.
    """
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        folder = Path(dirpath)
        # Hidden folders (.git, .ipynb_checkpoints) are never data; hidden files are reported.
        links = [d for d in dirnames if not d.startswith(".") and (folder / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in links)
        for name in sorted([*links, *filenames]):
            path = folder / name
            yield path, _link_reason(path, root)


def _link_reason(path: Path, root: Path) -> str | None:
    """Why a symbolic link is skipped (none for anything else)."""
    if not path.is_symlink():
        return None
    return LINK_OUTSIDE if _leaves(path, root) else "symbolic link (not followed)"


def _leaves(path: Path, root: Path) -> bool:
    """Whether `path` is a symbolic link that resolves outside the dataset folder `root`."""
    if not path.is_symlink():
        return False
    target = path.resolve()
    return target != root and root not in target.parents


def _quick_reject(path: Path) -> str | None:
    if path.name.startswith("."):
        return "hidden file"
    suffix = path.suffix.lower()
    if suffix not in images.SUPPORTED_EXTENSIONS:
        return f"unsupported file type '{suffix or path.name}'"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    return None


def _check_headers(
    root: Path, candidates: list[tuple[str, int]], max_pixels: int, max_total_pixels: int | None
) -> list[list]:
    """[size, reason to skip or None] for each candidate, from its header alone, in one pass.

    With `max_total_pixels`, refuses the dataset as soon as the headers read add up to more pixels
    (files skipped for their own size count for nothing: they are never decoded). One thread: a
    header is a few small reads, which a pool would only slow down with its hand-offs.
    """
    checks: list[list] = []
    total, largest = 0, 0
    for rel, _ in candidates:
        size, reason = _check_header(root / rel, max_pixels)
        checks.append([size, reason])
        total += size[0] * size[1]
        largest = max(largest, *size)
        if max_total_pixels is not None and total > max_total_pixels:
            raise _over_budget(total, largest, len(checks) / len(candidates), max_total_pixels)
    return checks


def _check_header(path: Path, max_pixels: int) -> tuple[tuple[int, int], str | None]:
    size, reason = or_reason(lambda: _header_size(path, max_pixels))
    return size or (0, 0), reason


def _header_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """`images.header_size` from one read of the file's start, which holds most headers: on a busy
    server each system call can wait for the interpreter lock behind other sessions' threads."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, HEADER_BYTES)
    finally:
        os.close(fd)
    try:
        return images.header_size(head, max_pixels)
    except Exception:
        if len(head) < HEADER_BYTES:
            raise
        return images.header_size(path, max_pixels)  # the header runs on (a large EXIF block, a TIFF)


def or_reason(read: Callable[[], T]) -> tuple[T | None, str | None]:
    """What `read()` returns and no reason, or nothing and why the file cannot be used (one line)."""
    try:
        return read(), None
    except images.ImageError as exc:
        return None, _reason(str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a scan or a training
        return None, f"unreadable image ({type(exc).__name__})"


def _over_budget(total: int, largest: int, share_read: float, max_total_pixels: int) -> ValueError:
    """The refusal of a dataset over the decode budget, with the longest side that would fit."""
    # The headers read so far, scaled to every file, give the share of each side that fits;
    # beyond SUGGESTED_SIDE a CNN here gains nothing from the extra pixels anyway.
    share = max_total_pixels / (total / share_read)
    side = max(16, min(SUGGESTED_SIDE, int(largest * share**0.5)) // 16 * 16)
    return ValueError(
        f"The images add up to over {total / 1e6:,.0f} megapixels, more than the {max_total_pixels / 1e6:,.0f} "
        f"this server decodes per dataset; shrink them to a longest side of {side} px or less, or upload "
        f"fewer, then try again. Received: megapixels>={total / 1e6:.0f}"
    )


def _reason(message: str) -> str:
    """The part of an ImageError worth a table cell: drop the file name and the 'Received' tail."""
    text = message.split(" Received:")[0]
    return text.split("' ", 1)[1] if text.startswith("'") and "' " in text else text


def build_report(
    root: Path,
    class_names: list[str],
    files: list[str],
    labels: list[int],
    sizes: list[tuple[int, int]],
    skipped: list[SkippedFile],
    *,
    hashes: list[str] | None = None,
    added_root: Path | None = None,
) -> DatasetReport:
    """The report of usable `files` whose `labels` index `class_names` (every class, in order).

    A scan identifies files by name, size and time; a dataset version gives each file's content
    `hashes` (SHA-256), which then make the fingerprint, and the folder of its added images.
    """
    used = sorted(set(labels))
    empty = tuple(name for i, name in enumerate(class_names) if i not in set(used))
    # Renumber labels so that classes with no usable image do not become phantom outputs.
    remap = {old: new for new, old in enumerate(used)}
    report = DatasetReport(
        root=root,
        class_names=tuple(class_names[i] for i in used),
        files=tuple(files),
        labels=tuple(remap[label] for label in labels),
        sizes=tuple(sizes),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        fingerprint=_hash_fingerprint(hashes, labels)
        if hashes is not None
        else _content_fingerprint(root, files, labels),
        empty_classes=empty,
        hashes=tuple(hashes or ()),
        added_root=added_root,
    )
    if report.num_classes < 2:
        found = ", ".join(f"{k}={v}" for k, v in report.counts.items()) or "none"
        raise ValueError(
            "A classifier needs at least two classes with usable images; put each class's images in its own "
            f"sub-folder of the dataset folder. Received: classes={shorten(found, 120)}, skipped={len(skipped)}"
        )
    return report


def without(report: DatasetReport, unusable: Iterable[SkippedFile]) -> DatasetReport:
    """`report` with the `unusable` files among its images moved to its skipped files, with their reasons.

    The result is the report a scan that had skipped those files would give, fingerprint included;
    a class left with no image becomes an empty class, and fewer than two classes is a ValueError.
    """
    present = set(report.files)
    gone = {s.path: s for s in unusable if s.path in present}
    if not gone:
        return report
    # Every class folder in folder order, so the labels are those a fresh scan would give.
    names = sorted([*report.class_names, *report.empty_classes])
    number = {name: names.index(name) for name in report.class_names}
    kept = [i for i, rel in enumerate(report.files) if rel not in gone]
    return build_report(
        report.root,
        names,
        [report.files[i] for i in kept],
        [number[report.class_names[report.labels[i]]] for i in kept],
        [report.sizes[i] for i in kept],
        [*report.skipped, *gone.values()],
        hashes=[report.hashes[i] for i in kept] if report.hashes else None,
        added_root=report.added_root,
    )


def _listing_fingerprint(root: Path, rels: list[str]) -> str:
    digest = hashlib.sha256(str(CACHE_VERSION).encode())
    for rel in rels:
        stat = (root / rel).stat()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _content_fingerprint(root: Path, files: list[str], labels: list[int]) -> str:
    """Identifies the usable data (names, sizes, times, labels) independently of where it lives."""
    digest = hashlib.sha256()
    for rel, label in zip(files, labels, strict=True):
        stat = (root / rel).stat()
        digest.update(f"{rel}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _hash_fingerprint(hashes: list[str], labels: list[int]) -> str:
    """Identifies a dataset version's usable data by content and label, wherever its files live."""
    digest = hashlib.sha256(b"hashes\n")
    for sha, label in zip(hashes, labels, strict=True):
        digest.update(f"{sha}\0{label}\n".encode())
    return digest.hexdigest()[:20]


def known_unreadable(report: DatasetReport, cache: Path) -> list[SkippedFile]:
    """The files of `report` (usable or already skipped) that a `prepare` of the same files failed to decode."""
    try:
        found = json.loads(_unreadable_path(cache, report.fingerprint).read_text())
        present = set(report.files) | {s.path for s in report.skipped}
        return [SkippedFile(str(rel), str(reason)) for rel, reason in found if rel in present]
    except (OSError, ValueError, TypeError):  # none known, or a damaged record: decoding finds them again
        return []


def remember_unreadable(cache: Path, fingerprint: str, failed: list[SkippedFile]) -> None:
    """Record the files that failed to decode for the content with `fingerprint`, so scans skip them."""
    path = _unreadable_path(cache, fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, [[s.path, s.reason] for s in failed])


def _unreadable_path(cache: Path, fingerprint: str) -> Path:
    return Path(cache) / "scans" / f"unreadable-{fingerprint}.json"


def _cached_checks(cache: Path | None, key: str) -> list | None:
    """A scan's cached file checks (none without a `cache` folder, or when damaged)."""
    if cache is None:
        return None
    try:
        return json.loads((cache / "scans" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def _store_checks(cache: Path | None, key: str, checks: list) -> None:
    if cache is None:
        return
    path = cache / "scans" / f"{key}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, checks)


def report_warnings(report: DatasetReport, min_per_class: int = 20) -> list[str]:
    """Plain-language warnings about a dataset: too few images, strong class imbalance, skips."""
    counts = report.counts
    notes = [
        f"Class '{name}' has only {n} images; aim for at least {min_per_class} per class."
        for name, n in counts.items()
        if n < min_per_class
    ]
    advice = imbalance_advice(counts)
    if advice:
        notes.append(advice)
    if report.empty_classes:
        notes.append(f"Empty class folders ignored: {', '.join(report.empty_classes)}.")
    return notes
