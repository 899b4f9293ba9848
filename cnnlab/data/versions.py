"""Dataset versions: immutable manifests of a dataset's images, labels, exclusions and splits.

A versioned dataset is a folder of its own (under the datasets folder) holding `versions/v0001.json`,
`v0002.json`... and the images added in CNN Lab (`.added/`); the class folder it describes, when
there is one, is never written to. Version 1 of a class folder is the folder as it is; each saved
set of edits (`cnnlab.data.edits`) makes the next version. A folder that changed since its latest
version gets a new version when it is next opened, carrying the edits over to the files still there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.common.checks import short_repr
from cnnlab.common.files import temporary_path, write_json
from cnnlab.data.scanning import ADDED, DatasetReport, SkippedFile, build_report, known_unreadable, scan, without
from cnnlab.data.splits import check_fractions, split

FORMAT = "cnnlab-dataset-version"
SCHEMA = 1
PARTS = ("train", "validation", "test")
VERSIONS = "versions"
SOURCE_FILE = "source.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Entry:
    """One image of a version: its `path` under the dataset root (or `ADDED`... for a stored copy),
    its content's SHA-256, label, split part, and whether it is excluded and why.

    `size` and `mtime_ns` are the file's when the version was made: a file that changed since is
    no longer the image the version describes.
    """

    path: str
    sha256: str
    label: str
    split: str
    excluded: bool = False
    reason: str = ""
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class Manifest:
    """A dataset version: every image with its label, exclusion and split, and where it came from.

    `parent` is the version it was made from (None for version 1); `change` the one-line change log;
    `classes` every class, sorted, including classes no included image has yet; the split fractions
    and seed made version 1's split, and a new image's part follows from its content hash.
    `source_fingerprint` is the scan fingerprint of the class folder it was made from (None for a
    dataset made in CNN Lab).
    """

    version: int
    parent: int | None
    created: str
    change: str
    classes: tuple[str, ...]
    entries: tuple[Entry, ...]
    validation_split: float = 0.15
    test_split: float = 0.15
    seed: int = 1337
    source_fingerprint: str | None = None

    @property
    def included(self) -> tuple[Entry, ...]:
        """The images a training on this version uses."""
        return tuple(e for e in self.entries if not e.excluded)

    @property
    def counts(self) -> dict[str, int]:
        """Included images per class, every class listed."""
        totals = dict.fromkeys(self.classes, 0)
        for entry in self.included:
            totals[entry.label] += 1
        return totals

    def entry(self, path: str) -> Entry:
        """The entry of the image at `path`, or a ValueError naming what to give instead."""
        for entry in self.entries:
            if entry.path == path:
                return entry
        raise ValueError(
            f"No image at that path in version {self.version}; give the path under the dataset root that "
            f"`cnnlab scan` and the CSVs print, such as {self.entries[0].path if self.entries else 'cat/001.jpg'!r}. "
            f"Received: image={short_repr(path)}"
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to its file."""
        # Not `asdict`: its deep copy of every entry takes most of a second on 20,000 images.
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        entries = [dict(vars(entry)) for entry in self.entries]
        return {"format": FORMAT, "schema": SCHEMA, **fields, "classes": list(self.classes), "entries": entries}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Read a manifest written by `to_json`; ValueError for another file or a later schema."""
        if data.get("format") != FORMAT or data.get("schema") != SCHEMA:
            raise ValueError(
                f"Not a dataset version this CNN Lab can read; update CNN Lab or remove the file. "
                f"Received: schema={data.get('schema')!r}"
            )
        fields = {k: v for k, v in data.items() if k not in ("format", "schema")}
        fields["classes"] = tuple(fields["classes"])
        fields["entries"] = tuple(Entry(**e) for e in fields["entries"])
        return cls(**fields)


@dataclass(frozen=True)
class Dataset:
    """A versioned dataset: its own `folder` (versions and added images), its `name`, and the class
    folder it overlays (`source`; None for a dataset made in CNN Lab, whose images are all added)."""

    folder: Path
    name: str
    source: Path | None = None

    @property
    def root(self) -> Path:
        """The folder the images' paths are relative to."""
        return self.source or self.folder

    def version_numbers(self) -> list[int]:
        """The versions saved so far, oldest first."""
        names = (p.name for p in (self.folder / VERSIONS).glob("v*.json"))
        return sorted(int(n[1:-5]) for n in names if n[1:-5].isdigit())

    def latest(self) -> int:
        """The newest version's number (0 when none is saved yet)."""
        numbers = self.version_numbers()
        return numbers[-1] if numbers else 0

    def manifest(self, version: int | None = None) -> Manifest:
        """A version's manifest (default: the latest); ValueError for a version that does not exist."""
        number = self.latest() if version is None else version
        path = manifest_path(self, number)
        if not path.is_file():
            raise ValueError(
                f"Dataset '{self.name}' has no version {number}; its versions are "
                f"{', '.join(map(str, self.version_numbers())) or 'none yet'}. Received: version={version!r}"
            )
        return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))

    def manifests(self) -> list[Manifest]:
        """Every version's manifest, oldest first."""
        return [self.manifest(n) for n in self.version_numbers()]

    def image_path(self, rel: str) -> Path:
        """Where the image of a manifest entry's `path` is on disk."""
        return (self.folder if rel.startswith(ADDED) else self.root) / rel


@dataclass(frozen=True)
class VersionData:
    """A version as a training uses it: the report of its included images that are still there,
    and each image's split part by path."""

    dataset: Dataset
    manifest: Manifest
    report: DatasetReport
    parts_by_path: dict[str, str] = field(default_factory=dict)

    def parts(self, report: DatasetReport | None = None) -> dict[str, np.ndarray]:
        """The split as index arrays into `report`'s files (default: this report; give the one
        `prepare` returned, which may have left out files that failed to decode)."""
        files = (report or self.report).files
        return {
            part: np.asarray([i for i, rel in enumerate(files) if self.parts_by_path.get(rel) == part], dtype=np.int64)
            for part in PARTS
        }


def open_dataset(
    ref: str | Path,
    datasets: Path,
    *,
    cache: Path | None = None,
    validation_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 1337,
) -> Dataset:
    """The versioned dataset of a dataset made with `new_dataset` (a name) or of a class folder (a path).

    A class folder's versions are kept under `datasets`, never in the folder; its version 1 is made
    on first use, split with the fractions and seed given, and a new version when the folder changed
    since the latest (its edits carried over to the files still there). `cache` is the scan cache.
    A `ref` that cannot be a dataset name (`/data/pets`, `~/pets`) is a folder, and a missing one is
    the scan's one-line error.
    """
    name = str(ref)
    folder = Path(datasets) / name
    # A made dataset's name wins over a folder of that name where the program runs (an app visitor's
    # dataset named "docs" must never open the server's docs folder); write ./docs for the folder.
    if NAME_PATTERN.match(name) and (folder / VERSIONS).is_dir() and not (folder / SOURCE_FILE).exists():
        return Dataset(folder, name)
    path = Path(ref)
    if path.is_dir() or not NAME_PATTERN.match(str(ref)):
        report = scan(path, cache=cache)
        root = report.root
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        dataset = Dataset(Path(datasets) / f"{_slug(root.name)}-{digest}", root.name, root)
        source_file = dataset.folder / SOURCE_FILE
        if not source_file.is_file():  # written once, whole: `list_datasets` may be reading it
            dataset.folder.mkdir(parents=True, exist_ok=True)
            write_json(source_file, {"source": str(root)})
        _follow_folder(dataset, report, validation_split, test_split, seed)
        return dataset
    raise ValueError(
        "No such dataset folder or dataset name; give a folder of class sub-folders, or the name of a dataset "
        f"made with `cnnlab dataset new` (see `cnnlab dataset list`). Received: dataset={short_repr(name)}"
    )


def new_dataset(
    name: str,
    classes: Iterable[str],
    datasets: Path,
    *,
    validation_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 1337,
) -> Dataset:
    """Make an empty dataset called `name` with these classes; its images are added in CNN Lab."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            "A dataset name is 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit; "
            f"choose another. Received: name={short_repr(name)}"
        )
    names = check_class_names(classes)
    check_fractions(validation_split, test_split)
    dataset = Dataset(Path(datasets) / name, name)
    if dataset.folder.exists():
        raise ValueError(f"A dataset called {name!r} exists already; choose another name. Received: name={name!r}")
    manifest = Manifest(1, None, timestamp(), f"made with classes {', '.join(names)}", names, (),
                        validation_split, test_split, seed)  # fmt: skip
    write_manifest(dataset, manifest)
    return dataset


def list_datasets(datasets: Path) -> list[Dataset]:
    """Every versioned dataset under `datasets` (class folders that no longer exist included), by name."""
    found = []
    for folder in sorted(Path(datasets).glob("*/")) if Path(datasets).is_dir() else []:
        if not (folder / VERSIONS).is_dir():
            continue
        source_file = folder / SOURCE_FILE
        if source_file.exists():
            source = Path(json.loads(source_file.read_text(encoding="utf-8"))["source"])
            found.append(Dataset(folder, source.name, source))
        else:
            found.append(Dataset(folder, folder.name))
    return sorted(found, key=lambda d: d.name)


def check_class_names(classes: Iterable[str]) -> tuple[str, ...]:
    """Class names, sorted: each a valid folder name, no two the same; ValueError otherwise."""
    names = [str(c).strip() for c in classes]
    for name in names:
        if not name or name.startswith(".") or "/" in name or "\\" in name or len(name) > 64:
            raise ValueError(
                "A class name is 1-64 characters, without '/' or '\\', not starting with '.'; rename it. "
                f"Received: class={short_repr(name)}"
            )
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"Give one or more class names, each once. Received: classes={short_repr(names)}")
    return tuple(sorted(names))


def version_data(dataset: Dataset, version: int | None = None, *, cache: Path | None = None) -> VersionData:
    """A version as a training uses it (default: the latest). Included images whose file is gone or
    changed since the version was saved are skipped, with the reason, and so are those a training's
    decoding found corrupt (remembered in `cache`); fewer than two classes with images is a ValueError."""
    manifest = dataset.manifest(version)
    classes = list(manifest.classes)
    kept: list[Entry] = []
    skipped: list[SkippedFile] = []
    for entry in manifest.included:
        reason = file_changed(dataset, entry)
        if reason:
            skipped.append(SkippedFile(entry.path, f"{reason} since version {manifest.version} was saved"))
        else:
            kept.append(entry)
    skipped += [SkippedFile(e.path, f"excluded: {e.reason}") for e in manifest.entries if e.excluded]
    report = build_report(
        dataset.root,
        classes,
        [e.path for e in kept],
        [classes.index(e.label) for e in kept],
        [(0, 0)] * len(kept),
        skipped,
        hashes=[e.sha256 for e in kept],
        added_root=dataset.folder,
    )
    if cache is not None:
        report = without(report, known_unreadable(report, cache))
    return VersionData(dataset, manifest, report, {e.path: e.split for e in kept})


def write_manifest(dataset: Dataset, manifest: Manifest) -> Manifest:
    """Save a new version; its file is written whole and never replaced (another writer's version of
    the same number wins, and this one is a ValueError to try again on the newer version)."""
    if not _publish(dataset, manifest):
        raise ValueError(
            f"Version {manifest.version} of dataset '{dataset.name}' was saved meanwhile by someone else; "
            f"reload it and make your edits again. Received: version={manifest.version}"
        )
    return manifest


def _publish(dataset: Dataset, manifest: Manifest) -> bool:
    """Write a version's file whole, unless that version exists already (then False)."""
    path = manifest_path(dataset, manifest.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporary_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(_manifest_text(manifest))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, path)  # fails when the version exists: a saved version is never overwritten
        except FileExistsError:
            return False
    return True


def _manifest_text(manifest: Manifest) -> str:
    """A manifest's file: its fields on the first line, then one entry a line, so that two versions
    compare line by line (and json's fast encoder writes it: an `indent` turns that encoder off)."""
    data = manifest.to_json()
    entries = ",\n".join(json.dumps(entry) for entry in data.pop("entries"))
    return f'{json.dumps(data)[:-1]}, "entries": [\n{entries}\n]}}\n'


def manifest_path(dataset: Dataset, version: int) -> Path:
    """Where a version's manifest is kept."""
    return dataset.folder / VERSIONS / f"v{version:04d}.json"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_part(sha256: str, validation_split: float, test_split: float) -> str:
    """The split part of a new image, from its content hash: the same image always lands in the same part."""
    position = int(sha256[:12], 16) / 16**12
    if position < test_split:
        return "test"
    return "validation" if position < test_split + validation_split else "train"


def _follow_folder(
    dataset: Dataset, report: DatasetReport, validation_split: float, test_split: float, seed: int
) -> None:
    """Make version 1 of a class folder (scanned as `report`), or a new version when it changed since the latest.

    Two programs opening one folder at once (two sweep workers) race to record it; the loser finds
    the winner's version and takes it when it records the same folder state, so neither fails.
    """
    while True:
        latest = dataset.latest()
        if latest and dataset.manifest(latest).source_fingerprint == report.fingerprint:
            return
        manifest = _folder_manifest(dataset, report, latest, validation_split, test_split, seed)
        if _publish(dataset, manifest):
            return


def _folder_manifest(
    dataset: Dataset, report: DatasetReport, latest: int, validation_split: float, test_split: float, seed: int
) -> Manifest:
    """The version recording the class folder as scanned: version 1 split with the fractions and seed
    given, or the version after `latest`."""
    if latest:
        return _folder_change(dataset, dataset.manifest(latest), report)
    check_fractions(validation_split, test_split)
    parts = split(report.labels, validation_split, test_split, seed)
    part_of = {int(i): part for part, indices in parts.items() for i in indices}
    entries = tuple(
        _entry(dataset, rel, report.class_names[label], part_of[i])
        for i, (rel, label) in enumerate(zip(report.files, report.labels, strict=True))
    )
    return Manifest(1, None, timestamp(), "the class folder as it was", _classes(report), entries,
                    validation_split, test_split, seed, report.fingerprint)  # fmt: skip


def _folder_change(dataset: Dataset, parent: Manifest, report: DatasetReport) -> Manifest:
    """The next version after the class folder changed: new files added (split by hash), gone ones
    dropped, and the edits of files still there (same content) kept."""
    previous = {e.path: e for e in parent.entries}
    entries, added, changed = [], 0, 0
    for rel, label in zip(report.files, report.labels, strict=True):
        old = previous.pop(rel, None)
        entry = _entry(dataset, rel, report.class_names[label], "", old)
        if old is not None and old.sha256 == entry.sha256:
            entries.append(replace(old, size=entry.size, mtime_ns=entry.mtime_ns))
            continue
        entries.append(replace(entry, split=hash_part(entry.sha256, parent.validation_split, parent.test_split)))
        added, changed = (added + 1, changed) if old is None else (added, changed + 1)
    kept_added = [e for e in previous.values() if e.path.startswith(ADDED)]
    removed = len(previous) - len(kept_added)
    entries += kept_added
    change = f"the class folder changed: {added} added, {changed} changed, {removed} removed"
    classes = tuple(sorted({*parent.classes, *_classes(report)}))
    return Manifest(parent.version + 1, parent.version, timestamp(), change, classes,
                    tuple(sorted(entries, key=lambda e: e.path)), parent.validation_split,
                    parent.test_split, parent.seed, report.fingerprint)  # fmt: skip


def _entry(dataset: Dataset, rel: str, label: str, part: str, old: Entry | None = None) -> Entry:
    """A folder image's entry, hashing it only when its size or time changed since `old`."""
    stat = dataset.image_path(rel).stat()
    if old is not None and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        sha = old.sha256
    else:
        sha = file_sha256(dataset.image_path(rel))
    return Entry(rel, sha, label, part, size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def file_changed(dataset: Dataset, entry: Entry) -> str | None:
    """Why an entry's file is no longer the image the version describes (None when it still is)."""
    try:
        stat = dataset.image_path(entry.path).stat()
    except OSError:
        return "file gone"
    if entry.path.startswith(ADDED):  # stored by content hash, written once: its time means nothing
        return None
    if (stat.st_size, stat.st_mtime_ns) != (entry.size, entry.mtime_ns):
        return "file changed"
    return None


def _classes(report: DatasetReport) -> tuple[str, ...]:
    return tuple(sorted({*report.class_names, *report.empty_classes}))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "dataset"


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
