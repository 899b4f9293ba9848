"""Data: choose or make the dataset and its version, add images, check what was found and skipped,
compare and export versions, and browse the images."""

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cnnlab import charts, data
from cnnlab.common.checks import shorten
from cnnlab.data import archive, catalog
from cnnlab.server import hosting
from cnnlab.settings import check_data_folder, check_upload_size
from cnnlab_ui.data_map import (
    duplicates_of,
    duplicates_section,
    duplicates_summary,
    duplicates_warning,
    map_of_dataset,
)
from cnnlab_ui.dataset_panels import (
    add_images_panel,
    adding_to,
    new_dataset_form,
    own_datasets_picker,
    version_picker,
    versions_panel,
)
from cnnlab_ui.datasets import image_sizes, open_choice, version_data
from cnnlab_ui.fixes import gallery, pending_edits
from cnnlab_ui.loaders import scan
from cnnlab_ui.messages import show_error
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import DatasetChoice, dataset, disk_usage, session_id, settings

require_app_shell()

PER_PAGE = 24

st.title("Data")
config = settings()


def choose(path: str, label: str) -> None:
    """Make a dataset the session's (its latest version) once it opens cleanly; a bad one keeps the previous choice."""
    choice = DatasetChoice(path, label)
    open_choice(choice)  # raises ValueError saying what is wrong with it
    st.session_state.dataset = choice


sources = ["Built-in sample", "Upload a zip", "Download a dataset", "New dataset", "Your datasets"]
sources += ["Server folder"] if config.data_roots else []
# Kept across pages, so that coming back shows where the dataset came from.
source = st.radio("Dataset source", sources, horizontal=True, key="dataset-source", persist_state="session")

try:
    if source == "Built-in sample":
        from cnnlab.data.sample import sample_dir

        if st.button("Use the built-in sample"):
            choose(str(sample_dir(config.cache_dir)), "Built-in sample (shapes)")
    elif source == "Upload a zip":
        st.caption(f"A zip of class folders (one folder per class), up to {config.max_upload_mb} MB.")
        upload = st.file_uploader(
            "Zip of class folders", type=["zip"], max_upload_size=config.max_upload_mb, key="zip-upload"
        )
        if upload is not None:
            content = upload.getvalue()
            check_upload_size(upload.name, len(content), config)
            digest, used = hashlib.sha256(content).hexdigest(), disk_usage()
            # The uploader keeps the file across reruns: a refused zip is refused again from memory, not
            # extracted again, until the visitor's disk use changes.
            refused = st.session_state.setdefault("refused_uploads", {})
            attempt = (digest, used.total if used is not None else 0)
            if attempt in refused:
                raise ValueError(refused[attempt])
            try:
                root = archive.open_upload(
                    content,
                    upload.name,
                    hosting.uploads_dir(config.cache_dir, session_id()),
                    max_total_bytes=config.max_extracted_bytes,
                    room_bytes=used.room if used is not None else None,
                    # The extracted upload must scan as a dataset within the decode budget before it is kept.
                    check=functools.partial(
                        data.scan, cache=config.cache_dir, max_total_pixels=config.max_dataset_pixels
                    ),
                )
                choose(str(root), f"Upload: {shorten(upload.name, 80)}")
            except ValueError as exc:
                refused[attempt] = str(exc)
                raise
    elif source == "Download a dataset":
        names = list(catalog.CATALOG)
        name = st.selectbox("Dataset", names, format_func=lambda n: catalog.CATALOG[n].title, key="catalog-dataset")
        entry = catalog.CATALOG[name]
        st.caption(f"{entry.description} About {entry.size_bytes / 2**20:.0f} MB to download. Licence: {entry.license}")
        if st.button(f"Download {entry.title}", key="download-dataset"):
            bar = st.progress(0.0, text="Downloading...")
            folder = catalog.download(
                name,
                config.cache_dir,
                base_url=config.datasets_url,
                on_progress=lambda done, total: bar.progress(
                    min(done / max(total, 1), 1.0), text=f"Downloading... {done / 2**20:.1f} MB"
                ),
            )
            choose(str(folder), entry.title)
    elif source == "New dataset":
        st.caption("An empty dataset of your own: name its classes, then add images by upload or camera below.")
        if (made := new_dataset_form()) is not None:
            st.session_state.dataset = made
    elif source == "Your datasets":
        if (picked := own_datasets_picker()) is not None:
            choose(picked.path, picked.label)
    else:
        typed = st.text_input(
            "Folder on the server", placeholder=str(config.data_roots[0]), key="server-folder", persist_state="session"
        )
        if typed and st.button("Use this folder"):
            choose(str(check_data_folder(typed, config)), f"Folder: {typed}")
except ValueError as exc:
    show_error(exc)

chosen = dataset()
if (used := disk_usage()) is not None:
    st.progress(used.fraction, text=f"Disk: {used.describe()}.")
    if used.uploads and st.button("Delete my other uploads", key="delete-uploads", icon=":material/delete:"):
        hosting.forget_uploads(config.cache_dir, session_id(), keep=Path(chosen.path))
        st.rerun()
try:
    versioned = open_choice(chosen)
    manifest = versioned.manifest(chosen.version)
except ValueError as exc:
    show_error(exc)
    st.stop()

st.subheader(chosen.label)
number = version_picker(versioned, chosen)
# Open for a dataset with no images yet, and kept open while images are being added (photo after photo).
with st.expander("Add images", expanded=not manifest.included or adding_to(versioned)):
    add_images_panel(versioned, manifest, chosen)


def versions_section() -> None:
    """The dataset's versions, in an expander."""
    with st.expander(f"Versions ({len(versioned.version_numbers())})"):
        versions_panel(versioned, chosen)


if sum(1 for n in manifest.counts.values() if n) < 2:
    st.info(
        "Add images to at least two classes to see the dataset and train on it (now "
        f"{', '.join(f'{name} {n}' for name, n in manifest.counts.items())}).",
        icon=":material/add_photo_alternate:",
    )
    versions_section()
    st.stop()
try:
    version = version_data(versioned, number)
except ValueError as exc:
    show_error(exc)
    versions_section()
    st.stop()
report = version.report
skipped = [*(scan(chosen.path).skipped if versioned.source is not None else ()), *report.skipped]
counts = report.counts
parts = version.parts()
cols = st.columns(4)
cols[0].metric("Images", len(report.files))
cols[1].metric("Classes", report.num_classes)
cols[2].metric("Skipped files", len(skipped))
cols[3].metric(
    "Train / val / test",
    "/".join(str(len(parts[k])) for k in ("train", "validation", "test")),
    help="this version's split: an image keeps its part in every version, a new image's part follows from its content",
)
for note in data.report_warnings(report):
    st.warning(note, icon=":material/warning:")

left, right = st.columns(2)
left.plotly_chart(charts.class_counts_figure(counts), key="counts")
sizes = image_sizes(versioned, number)
widths, heights = (list(axis) for axis in zip(*sizes, strict=True))
right.plotly_chart(charts.image_sizes_figure(widths, heights), key="sizes")
st.caption(
    f"Original sizes: width {min(widths)}-{max(widths)} px (median {np.median(widths):.0f}), "
    f"height {min(heights)}-{max(heights)} px (median {np.median(heights):.0f}). "
    "Every image is resized to the model's image size on the Train page."
)

with st.expander(f"Skipped files ({len(skipped)})", expanded=bool(skipped)):
    if skipped:
        st.dataframe(pd.DataFrame([{"file": s.path, "reason": s.reason} for s in skipped]), hide_index=True)
    else:
        st.caption("Every file was usable.")
    st.caption(
        "Files are checked from their headers here; one whose image data turns out truncated or corrupt is found "
        "when the images are first decoded for training, and listed here from then on. Excluded images are "
        "listed too."
    )

versions_section()

try:
    copies = duplicates_of(versioned, number)
except ValueError as exc:
    copies = None
    show_error(exc)
if copies is not None and (warning := duplicates_warning(copies)):
    st.warning(warning, icon=":material/content_copy:")
images_tab, duplicates_tab, map_tab = st.tabs(
    ["Images", f"Duplicates ({duplicates_summary(copies) if copies else '?'})", "Map"]
)
with images_tab:
    picked = st.multiselect("Classes", report.class_names, default=list(report.class_names))
    shuffled = np.random.default_rng(0).permutation(len(report.files))  # a mixed batch, like show_batch
    shown = [
        (report.files[i], report.class_names[report.labels[i]])
        for i in shuffled
        if report.class_names[report.labels[i]] in picked
    ]
    pages = max(1, math.ceil(len(shown) / PER_PAGE))
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1)
    window = shown[(page - 1) * PER_PAGE : page * PER_PAGE]
    gallery(
        report.path_of,
        [f for f, _ in window],
        [label for _, label in window],
        key="data",
        target=lambda: (versioned, number),
    )
with duplicates_tab:
    if copies is not None:  # else its one-line error is above
        duplicates_section(versioned, number, copies, report.path_of, key="data-duplicates")
with map_tab:
    map_of_dataset(versioned, number, report.path_of)
pending_edits(versioned, key="data")
