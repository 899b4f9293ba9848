"""The dataset as a whole: copies of one image (duplicates, leakage across the split, one image under
two labels) with a one-click fix, and the map of the images as a run's model sees them, with the
images least like their class. Fixes are saved as a new version; the image files are never changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import streamlit as st

from cnnlab import charts
from cnnlab.data import edits
from cnnlab.data.duplicates import DuplicateGroup, DuplicateReport, find_duplicates
from cnnlab.data.versions import Dataset
from cnnlab.runs.store import Run
from cnnlab_ui.fixes import Target, gallery, pending_of, record_saved, working_version
from cnnlab_ui.gallery import thumbnails
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import describe_run, get_run, list_runs
from cnnlab_ui.state import settings

MAX_GROUPS = 30  # groups listed; the one-click fix covers them all
MAX_SELECTED = 48


def duplicates_of(dataset: Dataset, version: int) -> DuplicateReport:
    """A saved version's duplicate groups, their near copies confirmed by the features of the newest run
    on that version whose map was drawn (a run's features veto pictures alike only in colour and layout)."""
    seen = next((r for r in runs_on(dataset) if r.record.dataset.version == version and _has_map(r)), None)
    return _duplicates(dataset, str(dataset.folder), version, seen.id if seen else None)


def runs_on(dataset: Dataset) -> list[Run]:
    """The runs with a model trained on a version of `dataset`, newest first."""
    folder = str(dataset.folder)
    return [r for r in list_runs() if r.record.dataset.versions_folder == folder and r.model_path.exists()]


def _has_map(run: Run) -> bool:
    from cnnlab.analysis.embedding import stored_embedding

    return stored_embedding(run, cache=settings().cache_dir) is not None


@st.cache_data(show_spinner="Looking for copies of the same image...", max_entries=16)
def _duplicates(_dataset: Dataset, folder: str, version: int, run_id: str | None) -> DuplicateReport:
    """Cached by version (which never changes) and the run whose features confirm near copies."""
    features = None
    if run_id is not None:
        from cnnlab.analysis.embedding import stored_embedding

        embedding = stored_embedding(get_run(run_id), cache=settings().cache_dir)
        features = embedding.features_by_path() if embedding is not None else None
    return find_duplicates(_dataset, version, cache=settings().cache_dir, features=features)


def duplicates_summary(found: DuplicateReport) -> str:
    """The groups in a few words, for a tab's title."""
    flagged = [f"{len(found.leaks)} leaking"] * bool(found.leaks) + [f"{len(found.conflicts)} with two labels"] * bool(
        found.conflicts
    )
    return f"{len(found.groups)} groups" + (f": {', '.join(flagged)}" if flagged else "")


def duplicates_warning(found: DuplicateReport) -> str | None:
    """One line when copies leak across the split or carry two labels (None when none do)."""
    if not found.leaks and not found.conflicts:
        return None
    return (
        f"Copies of one image: {len(found.leaks)} groups leak across the split (the held-out accuracy flatters the "
        f"model) and {len(found.conflicts)} carry two labels; keep one of each in the Duplicates tab below."
    )


def duplicates_section(
    dataset: Dataset, version: int, found: DuplicateReport, image_file: Callable[[str], Path], *, key: str
) -> None:
    """How many groups of copies version `version` has (`found`, from `duplicates_of`), how many leak
    across the split or carry two labels, each group's thumbnails with its labels and splits, and one
    click that keeps one image of each group (or of one group) and excludes the rest as the next version."""
    cols = st.columns(3)
    cols[0].metric("Groups of copies", len(found.groups), help="exact copies, or the same picture re-encoded, resized, "
                   "lightly cropped or recoloured")  # fmt: skip
    cols[1].metric("Leaking across the split", len(found.leaks), help="a training image with a copy among the "
                   "validation or test images: the held-out accuracy flatters the model")  # fmt: skip
    cols[2].metric("With two labels", len(found.conflicts), help="the same picture filed under two classes")
    if not found.groups:
        st.success(f"No two of the {found.num_images} images are copies of each other.")
        return
    excluded = found.exclusions()
    if st.button(
        f"Keep one of each group: exclude {len(excluded)} images as a new version",
        key=f"{key}-keep-all",
        type="primary",
        icon=":material/filter_none:",
        help="A training image is kept where there is one; the others are excluded (the files are not touched)",
    ):
        _save(dataset, version, excluded)
    for i, group in enumerate(found.groups[:MAX_GROUPS]):
        left, right = st.columns([6, 1], vertical_alignment="center")
        left.markdown(_title(group))
        if right.button("Keep one", key=f"{key}-keep-{i}", help=f"Keep {group.keep}, exclude the others"):
            _save(dataset, version, found.exclusions([group]))
        thumbnails(image_file, list(group.paths), _captions(group), columns=8)
    if len(found.groups) > MAX_GROUPS:
        st.caption(f"{len(found.groups) - MAX_GROUPS} more groups are not shown; the button above covers them too.")


def _title(group: DuplicateGroup) -> str:
    flags = [":red-badge[leaks across the split]"] * group.leak + [":orange-badge[two labels]"] * group.conflict
    return f"**{len(group.paths)} {group.kind} copies** {' '.join(flags)}"


def _captions(group: DuplicateGroup) -> list[str]:
    return [
        f"{label} · {split}" + (" · kept" if path == group.keep else "")
        for path, label, split in zip(group.paths, group.labels, group.splits, strict=True)
    ]


def _save(dataset: Dataset, version: int, excluded: Sequence[edits.Exclude]) -> None:
    """Save the exclusions as the next version of what this session made of `version`; say so, or why not."""
    parent = working_version(dataset, version)
    if pending_of(dataset).edits:
        st.info("Save or undo the pending edits first (under Pending edits), then keep one of each group.")
        return
    try:
        manifest = edits.save_version(dataset, list(excluded), parent=parent)
    except ValueError as exc:
        show_error(exc)
        return
    record_saved(dataset, manifest.version)
    st.rerun()


def map_of_dataset(dataset: Dataset, version: int, image_file: Callable[[str], Path]) -> None:
    """The map of a dataset as the model of a run trained on it sees it (the newest such run by default)."""
    trained = [
        r for r in list_runs() if r.record.dataset.versions_folder == str(dataset.folder) and r.model_path.exists()
    ]
    if not trained:
        st.info("Train a model on this dataset (Train page) to see the map of its images as the model sees them.")
        return
    by_id = {r.id: r for r in trained}
    run = by_id[st.selectbox("Seen by the model of", list(by_id), format_func=lambda i: describe_run(by_id[i]),
                             key="data-map-run")]  # fmt: skip
    if run.record.dataset.version != version:
        st.caption(f"This run trained on version {run.record.dataset.version}; the map shows that version's images.")
    if st.toggle("Show the map", key="data-show-map", help="One pass of the model over every image, kept with the run"):
        map_section(run, image_file, key="data", target=lambda: (dataset, run.record.dataset.version or version))


def map_section(run: Run, image_file: Callable[[str], Path], *, key: str, target: Callable[[], Target]) -> None:
    """The run's images in its model's feature space, projected to 2-D and coloured as chosen; a box or
    lasso selection shows the chosen images (to relabel or exclude), then the images least like their class."""
    from cnnlab.analysis.embedding import PROJECTIONS, projection_methods, run_embedding

    methods = projection_methods()
    left, right = st.columns(2)
    method = left.selectbox(
        "Projection",
        list(methods),
        key=f"{key}-projection",
        format_func=lambda m: PROJECTIONS[m] if methods[m] is None else f"{PROJECTIONS[m]} (not installed)",
        help="PCA keeps the directions of largest spread; t-SNE and UMAP keep neighbours together",
    )
    colour = right.segmented_control(
        "Colour by",
        list(charts.COLOR_BY),
        default="label",
        key=f"{key}-colour",
        format_func=lambda c: charts.COLOR_BY[c],
    )
    if methods[method] is not None:
        st.info(f"{methods[method]}; showing PCA.")
        method = "pca"
    bar = st.progress(0.0, text="Computing the model's features of every image...")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Computing the model's features: {done} of {total} images")

    try:
        embedding = run_embedding(run, cache=settings().cache_dir, progress=progress)
        xy = _projection(run.id, run.model_path.stat().st_mtime, method, embedding.features)
    except ValueError as exc:
        show_error(exc)
        return
    finally:
        bar.empty()
    frame = embedding.frame()
    event = st.plotly_chart(
        charts.embedding_figure(frame, xy, colour or "label"),
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        key=f"{key}-map",
    )
    rows = sorted(
        {int(np.ravel(p["customdata"])[0]) for p in (event.selection.points if event and event.selection else [])}
    )
    if rows:
        chosen = frame.iloc[rows[:MAX_SELECTED]]
        more = f" (the first {MAX_SELECTED} shown)" if len(rows) > MAX_SELECTED else ""
        st.subheader(f"{len(rows)} images selected{more}")
        gallery(image_file, chosen["path"].tolist(), _map_captions(chosen), key=f"{key}-selection", target=target)
    else:
        st.caption("Draw a box or a lasso around points (or click one) to see those images and fix their labels.")
    _outliers(embedding, image_file, key=key, target=target)


@st.cache_data(show_spinner="Projecting the features to two dimensions...", max_entries=8)
def _projection(run_id: str, model_mtime: float, method: str, _features: np.ndarray) -> np.ndarray:
    """The 2-D projection of a run's features (t-SNE takes a while, so it is computed once per model)."""
    from cnnlab.analysis.embedding import project

    return project(_features, method)


def _outliers(embedding, image_file: Callable[[str], Path], *, key: str, target: Callable[[], Target]) -> None:
    from cnnlab.analysis.outliers import outliers

    st.subheader("Least like their class")
    st.caption(
        "The images farthest from the rest of their class in the model's feature space: often a wrong label, an "
        "odd picture or one that belongs to no class."
    )
    table = outliers(embedding, top=12)
    gallery(image_file, table["path"].tolist(), _map_captions(table), key=f"{key}-outliers", target=target, columns=6)


def _map_captions(rows) -> list[str]:
    return [
        f"{label} → {prediction}" if label != prediction else f"{label} ({split})"
        for label, prediction, split in zip(rows["label"], rows["prediction"], rows["split"], strict=True)
    ]
