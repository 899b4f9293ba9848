"""The dataset-building panels: a new dataset from class names, the version shown, adding images by
upload or camera, and the versions (table, difference, export, train), on the Data page; adding a
Predict page image to the dataset its run trained on."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from cnnlab.data import edits, versions
from cnnlab.runs.store import Run
from cnnlab_ui.datasets import Added, add_images, added_room_mb, use_version, zip_bytes
from cnnlab_ui.gallery import thumbnails
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import run_version
from cnnlab_ui.state import DatasetChoice, datasets_dir, settings

IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"]
STRIP = 8  # latest shots shown under the camera
DIFF_SHOWN = 24  # thumbnails per kind of change
LATEST = 0  # the version picker's "latest" (versions count from 1)


def new_dataset_form() -> DatasetChoice | None:
    """A form for a new, empty dataset: its name and class names. The dataset made, once submitted."""
    with st.form("new-dataset", clear_on_submit=True):
        name = st.text_input("Name", placeholder="my-shapes", key="new-dataset-name")
        classes = st.text_input("Class names, separated by commas", placeholder="circle, square", key="new-classes")
        if not st.form_submit_button("Make the dataset", icon=":material/add:"):
            return None
    made = versions.new_dataset(name.strip(), [c for c in classes.split(",") if c.strip()], datasets_dir())
    return DatasetChoice(made.name, f"{made.name} (made in CNN Lab)")


def own_datasets_picker() -> DatasetChoice | None:
    """A pick among the datasets this person made in CNN Lab, once opened."""
    names = [d.name for d in versions.list_datasets(datasets_dir()) if d.source is None]
    if not names:
        st.caption("You have made no dataset yet: choose **New dataset**.")
        return None
    name = st.selectbox("Your dataset", names, key="own-dataset")
    if not st.button("Open it", key="open-own-dataset"):
        return None
    return DatasetChoice(name, f"{name} (made in CNN Lab)")


def version_picker(dataset: versions.Dataset, choice: DatasetChoice) -> int:
    """The version shown (and trained on): the latest unless another was picked. Its number."""
    numbers = dataset.version_numbers()
    # LATEST, not None, stands for "the latest": a selectbox shows a None value as no choice at all.
    st.session_state["dataset-version"] = choice.version if choice.version in numbers else LATEST
    st.selectbox(
        "Version",
        [LATEST, *reversed(numbers)],
        format_func=lambda v: f"latest (version {numbers[-1]})" if v == LATEST else f"version {v}",
        key="dataset-version",
        on_change=lambda: use_version(choice, st.session_state["dataset-version"] or None),
        help="Every saved change makes a new version; the Train page trains on the one chosen here.",
    )
    return choice.version if choice.version in numbers else numbers[-1]


def add_images_panel(dataset: versions.Dataset, manifest: versions.Manifest, choice: DatasetChoice) -> None:
    """Add images to a class by upload or by the camera, each batch or shot saved as the next
    version as it arrives; what was refused, and the latest shots, stay shown."""
    label = st.selectbox("Class", manifest.classes, key="add-class")
    upload, camera = st.tabs(["Upload images", "Camera"])
    with upload:
        files = st.file_uploader(
            "Images",
            type=IMAGE_TYPES,
            accept_multiple_files=True,
            max_upload_size=settings().max_upload_mb,
            key="add-files",
        )
        _add_new(dataset, manifest, choice, label, files or [])
    with camera:
        shot = st.camera_input(
            "Take photo after photo: each is added to the class as it is taken (Clear photo, then take the next)",
            key="add-camera",
        )
        _add_new(dataset, manifest, choice, label, [shot] if shot is not None else [])
    if adding_to(dataset):
        _show_added(st.session_state.added[1])
    shots = st.session_state.get("shots", {}).get(str(dataset.folder), [])
    if shots:
        st.caption("Latest images added")
        thumbnails(dataset.image_path, [p for p, _ in shots[-STRIP:]], [c for _, c in shots[-STRIP:]], columns=STRIP)


def adding_to(dataset: versions.Dataset) -> bool:
    """Whether the images this session added last (or tried to) went to `dataset`."""
    added = st.session_state.get("added")
    return added is not None and added[0] == str(dataset.folder)


def _add_new(
    dataset: versions.Dataset,
    manifest: versions.Manifest,
    choice: DatasetChoice,
    label: str,
    files: list[UploadedFile],
) -> None:
    """Add the files not handled yet in this session, then show the new version. The widgets keep
    their files across reruns (and a switch to another dataset) under the same id; a new photo or
    upload gets a new one (and one whose content is in the dataset already is refused, saying so)."""
    seen = st.session_state.setdefault("seen-images", set())
    new = [f for f in files if f.file_id not in seen]
    if not new:
        return
    seen.update(f.file_id for f in new)
    added = add_images(dataset, manifest.version, [(f.getvalue(), f.name) for f in new], label, added_room_mb(dataset))
    st.session_state.added = (str(dataset.folder), added)
    if added.version is not None:
        st.session_state.setdefault("shots", {}).setdefault(str(dataset.folder), []).extend(
            (path, label) for path in added.paths
        )
        use_version(choice, None)
        st.rerun()  # the counts and versions from the new version


def add_to_run_dataset(run: Run, data: bytes, name: str, predicted: str, *, key: str) -> None:
    """The "Add to the run's dataset" toggle: this image added under a chosen class (the predicted one first) to the
    dataset `run` trained on, as the version after its latest, checked as an upload is and counted
    against a hosted visitor's disk budget. The dataset is opened only once the toggle is on."""
    if not st.toggle("Add to the run's dataset", key=f"add-toggle-{key}"):
        return
    try:
        dataset, trained_on = run_version(run)
    except ValueError as exc:
        show_error(exc)
        return
    classes = dataset.manifest().classes
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    label = left.selectbox(
        "Class", classes, index=classes.index(predicted) if predicted in classes else 0, key=f"add-to-class-{key}"
    )
    if right.button("Add", key=f"add-to-{key}", icon=":material/add_photo_alternate:"):
        _show_added(add_images(dataset, dataset.latest(), [(data, name)], label, added_room_mb(dataset)))
    # The run's dataset rather than the session's: the model's classes are its classes, and the
    # latest version keeps the fixes made since the run, so a retraining learns from this image too.
    st.caption(
        f"Adds to {dataset.name}, the dataset this run trained on (version {trained_on}), after its latest "
        f"version ({dataset.latest()}), so that training on it again learns from this image; the image files "
        "already there are never changed."
    )


def _show_added(added: Added) -> None:
    if added.version is not None:
        count = len(added.paths)
        st.success(f"Added {count} image{'s' * (count > 1)} as version {added.version}.", icon=":material/check:")
    for reason in added.refused:
        show_error(ValueError(reason))


def versions_panel(dataset: versions.Dataset, choice: DatasetChoice) -> None:
    """The dataset's versions: a table, the difference between any two, a zip of any, training on any."""
    manifests = dataset.manifests()
    st.dataframe(pd.DataFrame([_row(m) for m in reversed(manifests)]), hide_index=True, key="versions-table")
    numbers = [m.version for m in reversed(manifests)]
    shown = (str(dataset.folder), numbers[0])
    if st.session_state.get("versions-shown") != shown:
        # A new version, or another dataset: compare and act on the newest, not on what was picked before.
        st.session_state.update(
            {"diff-new": numbers[0], "diff-old": numbers[min(1, len(numbers) - 1)], "version-action": numbers[0]}
        )
        st.session_state["versions-shown"] = shown
    if len(numbers) > 1:
        left, right = st.columns(2)
        new = left.selectbox("Compare version", numbers, key="diff-new")
        old = right.selectbox("with version", numbers, key="diff-old")
        show_diff(dataset, edits.diff(dataset, old, new))
    number = st.selectbox("Version to export or train on", numbers, key="version-action")
    left, right = st.columns(2)
    left.download_button(
        f"Export version {number} as a zip",
        lambda: zip_bytes(dataset, number),
        file_name=f"{dataset.name}-v{number}.zip",
        mime="application/zip",
        on_click="ignore",
        key="export-version",
        icon=":material/download:",
    )
    if right.button(f"Train on version {number}", key="train-version", icon=":material/model_training:"):
        use_version(choice, number)
        st.rerun()
    if choice.version is not None:
        st.page_link(
            "pages/train.py",
            label=f"Open the Train page: it trains on version {choice.version}",
            icon=":material/arrow_forward:",
        )


def _row(manifest: versions.Manifest) -> dict:
    return {
        "version": manifest.version,
        "parent": "" if manifest.parent is None else str(manifest.parent),
        "created": manifest.created.replace("T", " ").removesuffix("+00:00"),
        "images": len(manifest.included),
        "per class": ", ".join(f"{name} {n}" for name, n in manifest.counts.items()),
        "change": manifest.change,
    }


def show_diff(dataset: versions.Dataset, diff: edits.VersionDiff) -> None:
    """What changed from one version to the other, with thumbnails of what was relabelled, excluded and added."""
    st.caption(f"From version {diff.old} to version {diff.new}: {diff.summary}.")
    after = {e.path: e for e in dataset.manifest(diff.new).entries}
    groups = {
        "Relabelled": ([p for p, _, _ in diff.relabelled], [f"{old} → {new}" for _, old, new in diff.relabelled]),
        "Excluded": (list(diff.excluded), [after[p].reason for p in diff.excluded]),
        "Restored": (list(diff.restored), [after[p].label for p in diff.restored]),
        "Added": (list(diff.added), [after[p].label for p in diff.added]),
    }
    for title, (paths, captions) in groups.items():
        if paths:
            more = f" (the first {DIFF_SHOWN})" if len(paths) > DIFF_SHOWN else ""
            st.markdown(f"**{title}: {len(paths)}**{more}")
            thumbnails(dataset.image_path, paths[:DIFF_SHOWN], captions[:DIFF_SHOWN])
