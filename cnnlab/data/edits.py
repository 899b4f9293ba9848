"""Editing a dataset version: relabel, exclude, restore and add images, saved together as the next version.

Edits never touch the user's files: a relabel or exclusion is a changed manifest entry, and an
added image is stored in the dataset's own folder (`.added/`), named by its content hash. Saving
reads the parent manifest and writes the new one, nothing else: no scan, no decoding.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cnnlab.common.checks import MB, megabytes, short_repr
from cnnlab.common.files import atomic_path, folder_bytes
from cnnlab.data import images
from cnnlab.data.scanning import ADDED
from cnnlab.data.versions import (
    Dataset,
    Entry,
    Manifest,
    check_class_names,
    hash_part,
    timestamp,
    write_manifest,
)

FORMAT_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp",
                 "TIFF": ".tif"}  # fmt: skip


@dataclass(frozen=True)
class Relabel:
    """Give the image at `path` the class `label` (with `new_class`, a class the dataset does not have yet)."""

    path: str
    label: str
    new_class: bool = False


@dataclass(frozen=True)
class Exclude:
    """Leave the image at `path` out of training and evaluation, saying why."""

    path: str
    reason: str = "excluded by hand"


@dataclass(frozen=True)
class Restore:
    """Include again an image that an earlier version excluded."""

    path: str


@dataclass(frozen=True)
class Add:
    """A new image (its file's bytes and name, as uploaded or taken) for class `label`."""

    data: bytes
    name: str
    label: str
    new_class: bool = False


Edit = Relabel | Exclude | Restore | Add


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version `old` to version `new`: paths relabelled (with both labels),
    excluded, restored, added and removed."""

    old: int
    new: int
    relabelled: tuple[tuple[str, str, str], ...]
    excluded: tuple[str, ...]
    restored: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def summary(self) -> str:
        """One line: "3 relabelled, 2 excluded, 40 added" (only the kinds that happened)."""
        return change_log(
            relabelled=len(self.relabelled),
            excluded=len(self.excluded),
            restored=len(self.restored),
            added=len(self.added),
            removed=len(self.removed),
        )


def save_version(
    dataset: Dataset, edits: Sequence[Edit], *, parent: int | None = None, max_added_mb: int | None = None
) -> Manifest:
    """Apply `edits` to version `parent` (default: the latest) and save the result as the next version.

    Every edit is checked first and the first bad one is a ValueError (nothing is saved): an image
    not in the version, a relabel to its own class or to an unknown class without `new_class`, an
    added image that is not a usable image or is there already. Added images are counted against
    `max_added_mb` (a hosted visitor's disk budget for the dataset's stored images).
    """
    base = dataset.manifest(parent)
    if not edits:
        raise ValueError(f"There are no edits to save; relabel, exclude or add images first. Received: edits={0}")
    entries = {e.path: e for e in base.entries}
    classes = set(base.classes)
    counts = dict.fromkeys(("relabelled", "excluded", "restored", "added"), 0)
    stored: list[tuple[Path, bytes]] = []
    for edit in edits:
        classes |= _new_classes(edit, classes)
        if isinstance(edit, Add):
            entry, data = _added_entry(edit, base, entries)
            stored.append((dataset.folder / entry.path, data))
            entries[entry.path] = entry
            counts["added"] += 1
            continue
        entry = _existing(base, entries, edit.path)
        kind, entries[edit.path] = _apply(edit, entry)
        counts[kind] += 1
    _check_budget(dataset, stored, max_added_mb)
    for path, data in stored:
        _store(path, data)
    manifest = replace(
        base,
        version=dataset.latest() + 1,
        parent=base.version,
        created=timestamp(),
        change=change_log(**counts),
        classes=tuple(sorted(classes)),
        entries=tuple(sorted(entries.values(), key=lambda e: e.path)),
    )
    return write_manifest(dataset, manifest)


def check_added(data: bytes, name: str) -> str:
    """The stored file suffix for an image to add, or a one-line ValueError saying why it is refused
    (checked as an upload is: a supported, complete image within the pixel cap)."""
    try:
        with images.open_image(data, name=Path(name).name) as img:
            return FORMAT_SUFFIX[str(img.format or "PNG")]
    except images.ImageError as exc:
        raise ValueError(str(exc)) from None


def change_log(**counts: int) -> str:
    """One line such as "3 relabelled, 2 excluded, 40 added", leaving out kinds that did not happen."""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "no change"


def diff(dataset: Dataset, old: int, new: int) -> VersionDiff:
    """What changed between two versions of a dataset (either order)."""
    before = {e.path: e for e in dataset.manifest(old).entries}
    after = {e.path: e for e in dataset.manifest(new).entries}
    both = sorted(before.keys() & after.keys())
    return VersionDiff(
        old,
        new,
        relabelled=tuple((p, before[p].label, after[p].label) for p in both if before[p].label != after[p].label),
        excluded=tuple(p for p in both if after[p].excluded and not before[p].excluded),
        restored=tuple(p for p in both if before[p].excluded and not after[p].excluded),
        added=tuple(sorted(p for p in after.keys() - before.keys() if not after[p].excluded)),
        removed=tuple(sorted(p for p in before.keys() - after.keys() if not before[p].excluded)),
    )


def export_zip(dataset: Dataset, out: Path, version: int | None = None) -> Path:
    """Write a version's included images as a zip of class folders (the format CNN Lab uploads take).

    Images keep their file names, prefixed with a short content hash where two of a class share one;
    the zip is written whole or not at all.
    """
    manifest = dataset.manifest(version)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for entry in manifest.included:
            name = f"{entry.label}/{Path(entry.path).name}"
            if name in names:
                name = f"{entry.label}/{entry.sha256[:8]}-{Path(entry.path).name}"
            names.add(name)
            zf.write(dataset.image_path(entry.path), name)
    return out


def _new_classes(edit: Edit, classes: set[str]) -> set[str]:
    """The class an edit introduces (none for an exclusion or restore); ValueError for an unknown
    class without `new_class`, so that a typo never makes a class."""
    if isinstance(edit, (Exclude, Restore)) or edit.label in classes:
        return set()
    if not edit.new_class:
        raise ValueError(
            f"There is no class {edit.label!r} in this dataset (its classes: {', '.join(sorted(classes))}); "
            f"pick one of them, or ask for a new class (--new-class). Received: label={short_repr(edit.label)}"
        )
    return set(check_class_names([edit.label]))


def _existing(base: Manifest, entries: dict[str, Entry], path: str) -> Entry:
    if path in entries:
        return entries[path]
    return base.entry(path)  # raises, naming the version and a valid path


def _apply(edit: Relabel | Exclude | Restore, entry: Entry) -> tuple[str, Entry]:
    """The kind of change and the entry after a relabel, exclusion or restore; ValueError when it changes nothing."""
    if isinstance(edit, Relabel):
        if edit.label == entry.label:
            raise ValueError(
                f"{entry.path!r} is already labelled {entry.label!r}; choose another class. "
                f"Received: label={short_repr(edit.label)}"
            )
        return "relabelled", replace(entry, label=edit.label)
    if isinstance(edit, Exclude):
        if entry.excluded:
            raise ValueError(f"{entry.path!r} is excluded already. Received: image={short_repr(entry.path)}")
        return "excluded", replace(entry, excluded=True, reason=edit.reason.strip() or "excluded by hand")
    if not entry.excluded:
        raise ValueError(
            f"{entry.path!r} is not excluded, so there is nothing to restore. Received: image={entry.path!r}"
        )
    return "restored", replace(entry, excluded=False, reason="")


def _added_entry(edit: Add, base: Manifest, entries: dict[str, Entry]) -> tuple[Entry, bytes]:
    """The entry of an image to add (its split from its content hash), and its bytes to store."""
    suffix = check_added(edit.data, edit.name)
    sha = hashlib.sha256(edit.data).hexdigest()
    path = f"{ADDED}{sha[:20]}{suffix}"
    twin = next((e for e in entries.values() if e.sha256 == sha and not e.excluded), None)
    if twin is not None:
        raise ValueError(
            f"{Path(edit.name).name!r} is already in the dataset as {twin.path!r} (class {twin.label!r}); "
            f"relabel that one instead. Received: image={short_repr(Path(edit.name).name)}"
        )
    part = hash_part(sha, base.validation_split, base.test_split)
    return Entry(path, sha, edit.label, part, size=len(edit.data)), edit.data


def _check_budget(dataset: Dataset, stored: list[tuple[Path, bytes]], max_added_mb: int | None) -> None:
    if max_added_mb is None or not stored:
        return
    used = folder_bytes(dataset.folder / ADDED) if (dataset.folder / ADDED).is_dir() else 0
    new = sum(len(data) for path, data in stored if not path.exists())
    if used + new > max_added_mb * MB:
        raise ValueError(
            f"Adding these images would store {megabytes(used + new)} for this dataset, over the "
            f"{max_added_mb} MB this server allows; exclude or export older images, or add fewer. "
            f"Received: images={len(stored)}"
        )


def _store(path: Path, data: bytes) -> None:
    """Store an added image under its content name (an image stored before is the same bytes)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
