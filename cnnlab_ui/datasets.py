"""The session's dataset as versions: opening the chosen one, the version shown, images added as a
new version, and a version's zip. Versions live in this person's datasets folder (`datasets_dir`),
so the folders, downloads, uploads and sample they describe are never written to."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import streamlit as st

from cnnlab.common.checks import MB
from cnnlab.common.files import folder_bytes
from cnnlab.data import edits, images, versions
from cnnlab.data.scanning import ADDED, DatasetReport
from cnnlab_ui.loaders import scan
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import DatasetChoice, dataset, datasets_dir, disk_usage, settings


@st.cache_data(ttl=60, show_spinner="Reading the dataset's versions...")
def _opened(ref: str, datasets: str) -> versions.Dataset:
    """Cached briefly, as scans are: a class folder that changed gets its new version within a minute."""
    return versions.open_dataset(ref, Path(datasets), cache=settings().cache_dir)


def open_choice(choice: DatasetChoice) -> versions.Dataset:
    """The versioned dataset of a choice (a class folder's version 1 is made on first sight); a
    ValueError saying why it cannot be opened."""
    return _opened(choice.path, str(datasets_dir()))


def shown_version(dataset: versions.Dataset, choice: DatasetChoice) -> int:
    """The number of the version the choice uses (its own, or the latest)."""
    return choice.version or dataset.latest()


@st.cache_data(ttl=60, max_entries=16, show_spinner="Reading the version...")
def version_data(dataset: versions.Dataset, number: int) -> versions.VersionData:
    """A saved version's usable images, labels and split (its manifest never changes; whether its
    files are still there is checked again after a minute). ValueError for fewer than two classes with images."""
    return versions.version_data(dataset, number, cache=settings().cache_dir)


class ChosenVersion(NamedTuple):
    """The session's dataset at the version it trains on: the choice, the version's number and its usable images."""

    choice: DatasetChoice
    number: int
    report: DatasetReport

    @property
    def description(self) -> str:
        """The dataset, its version and its images in one line (Markdown)."""
        latest = "" if self.choice.version else " (the latest)"
        report = self.report
        return (
            f"**{self.choice.label}**, version {self.number}{latest}, with {len(report.files)} images in "
            f"{report.num_classes} classes ({', '.join(report.class_names)})"
        )


def chosen_version() -> ChosenVersion:
    """The session's dataset at the version that trainings, sweeps and the learning-rate finder use: the
    one picked on the Data page, else the latest. One that cannot be used stops the page, saying why."""
    chosen = dataset()
    try:
        versioned = open_choice(chosen)
        number = shown_version(versioned, chosen)
        return ChosenVersion(chosen, number, version_data(versioned, number).report)
    except ValueError as exc:
        show_error(exc)
        st.info("Choose another dataset, or add images to it, on the **Data** page.")
        st.stop()


@st.cache_data(ttl=60, max_entries=16, show_spinner=False)
def image_sizes(dataset: versions.Dataset, number: int) -> list[tuple[int, int]]:
    """The (width, height) of each image of a version, as their headers state: a class folder's from
    its scan, an added image's read here."""
    report = version_data(dataset, number).report
    scanned = scan(str(dataset.source)) if dataset.source is not None else None
    known = dict(zip(scanned.files, scanned.sizes, strict=True)) if scanned is not None else {}
    return [known[rel] if rel in known else images.header_size(report.path_of(rel)) for rel in report.files]


@dataclass(frozen=True)
class Added:
    """What adding images did: the version saved (None when nothing was), the stored paths of the
    images it added, and a one-line reason for each image (or batch) refused."""

    version: int | None
    paths: tuple[str, ...]
    refused: tuple[str, ...]


def add_images(
    dataset: versions.Dataset, parent: int, files: list[tuple[bytes, str]], label: str, max_added_mb: int | None
) -> Added:
    """Add the images `files` ((bytes, name) pairs) to class `label` of version `parent`, as the next
    version. Each is checked as an upload is; one not an image, or there already, is refused with
    the reason and the others are saved. Over `max_added_mb` nothing is saved, with the reason."""
    labels = {e.sha256: e.label for e in dataset.manifest(parent).included}
    accepted: dict[str, edits.Add] = {}
    refused = []
    for data, name in files:
        sha = hashlib.sha256(data).hexdigest()
        try:
            edits.check_added(data, name)
        except ValueError as exc:
            refused.append(str(exc))
            continue
        if sha in labels:
            refused.append(f"{Path(name).name!r} is already in the dataset (class {labels[sha]!r}).")
            continue
        labels[sha] = label
        accepted[sha] = edits.Add(data, name, label)
    if not accepted:
        return Added(None, (), tuple(refused))
    try:
        saved = edits.save_version(dataset, list(accepted.values()), parent=parent, max_added_mb=max_added_mb)
    except ValueError as exc:
        return Added(None, (), (*refused, str(exc)))
    new = tuple(e.path for e in saved.entries if e.sha256 in accepted and not e.excluded)
    return Added(saved.version, new, tuple(refused))


def added_room_mb(dataset: versions.Dataset) -> int | None:
    """How many MB this dataset's added images may take in all: what they take now and the room
    left of this visitor's disk budget (None: no budget, not hosted)."""
    usage = disk_usage()
    if usage is None:
        return None
    return (folder_bytes(dataset.folder / ADDED) + usage.room) // MB


def use_version(choice: DatasetChoice, number: int | None) -> None:
    """Make a version of the session's dataset the one shown and trained on (None: the latest)."""
    st.session_state.dataset = replace(choice, version=number)


def zip_bytes(dataset: versions.Dataset, number: int) -> bytes:
    """A version's images as a zip of class folders, made in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-export-") as tmp:
        return edits.export_zip(dataset, Path(tmp) / "export.zip", number).read_bytes()
