"""The Runs page's comparison of two runs on the test images both held out: what retraining on
corrected labels (or any other change) did, image by image."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from cnnlab import charts
from cnnlab.analysis.compare import RunComparison, compare_runs
from cnnlab.runs.store import Run
from cnnlab_ui.gallery import thumbnails
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import describe_run, get_run
from cnnlab_ui.state import settings

MAX_SHOWN = 32  # thumbnails per gallery; the rest are counted

PER_CLASS_COLUMNS = {
    "support": st.column_config.NumberColumn("shared images"),
    "recall_before": st.column_config.NumberColumn("recall before", format="%.3f"),
    "recall_after": st.column_config.NumberColumn("recall after", format="%.3f"),
    "change": st.column_config.NumberColumn("change", format="%+.3f"),
    "fixed": st.column_config.NumberColumn("wrong → right"),
    "broken": st.column_config.NumberColumn("right → wrong"),
}


@st.cache_data(show_spinner="Comparing the runs on their shared test images...", max_entries=8)
def comparison_of(before_id: str, before_mtime: float, after_id: str, after_mtime: float) -> RunComparison:
    """The two runs compared (their model files' times make a retrained model a new comparison)."""
    config = settings()
    return compare_runs(get_run(before_id), get_run(after_id), cache=config.cache_dir, max_cache_mb=config.max_cache_mb)


def compare_section(runs: list[Run]) -> None:
    """Two runs picked (the newer one's labels used) and, once asked, their comparison on shared test images."""
    st.subheader("Compare on shared test images")
    trained = {r.id: r for r in runs if r.model_path.exists()}
    if len(trained) < 2:
        st.caption("Train two runs (say, before and after correcting labels) to compare them image by image.")
        return
    ids = list(trained)
    left, right = st.columns(2)
    before = trained[
        left.selectbox("Before", ids, index=1, format_func=lambda i: describe_run(trained[i]), key="shared-before")
    ]
    after = trained[
        right.selectbox(
            "After (its labels are the ones scored)",
            ids,
            format_func=lambda i: describe_run(trained[i]),
            key="shared-after",
        )
    ]
    if not st.toggle("Compare them", key="shared-show", help="each run predicts its test images once, then it is kept"):
        return
    if before.id == after.id:
        st.info("Choose two different runs.")
        return
    try:
        comparison = comparison_of(
            before.id, before.model_path.stat().st_mtime, after.id, after.model_path.stat().st_mtime
        )
    except ValueError as exc:
        show_error(exc)
        return
    show_comparison(comparison)


def show_comparison(comparison: RunComparison) -> None:
    """The figures side by side, recall per class, and the images that flipped each way."""
    st.caption(
        f"{comparison.num_shared} test images both runs held out (matched by content), both scored against "
        f"{comparison.label_source}; {comparison.num_relabelled} of them are labelled otherwise in "
        f"{comparison.before_source}. Test images only one run held out: {comparison.num_only_before} before, "
        f"{comparison.num_only_after} after."
    )
    cols = st.columns(4)
    cols[0].metric("Shared test images", comparison.num_shared)
    cols[1].metric("Accuracy before", f"{comparison.accuracy_before:.1%}")
    change = comparison.accuracy_after - comparison.accuracy_before
    cols[2].metric(
        "Accuracy after",
        f"{comparison.accuracy_after:.1%}",
        delta=f"{change:+.1%}",
        delta_color="normal" if change else "off",
    )
    cols[3].metric(
        "Flipped", f"+{len(comparison.fixed)} / -{len(comparison.broken)}", help="wrong → right / right → wrong"
    )
    names = (f"before: {comparison.before_name}", f"after: {comparison.after_name}")
    st.plotly_chart(charts.recall_change_figure(comparison.per_class, *names), key="shared-recall")
    st.dataframe(comparison.per_class, hide_index=True, column_config=PER_CLASS_COLUMNS, key="shared-per-class")
    images = comparison.images
    relabelled = images[images["label"] != images["label_before"]]
    for title, frame in (
        ("Relabelled", relabelled),
        ("Wrong → right", comparison.fixed),
        ("Right → wrong", comparison.broken),
    ):
        st.markdown(f"**{title}** ({len(frame)})")
        if not frame.empty:
            image_gallery(frame)


def image_gallery(frame: pd.DataFrame) -> None:
    """Thumbnails of shared images, captioned with the label (the older one first, when it changed) and
    the two runs' predictions."""
    shown = frame.head(MAX_SHOWN)
    files = list(shown["file"])
    # Named relative to the folder they share, so a missing file's message names no server path.
    root = Path(os.path.commonpath([Path(f).parent for f in files])) if files else Path()
    captions = [
        f"{f'{r.label_before} → ' if r.label_before != r.label else ''}{r.label} · predicted {r.predicted_before}, "
        f"then {r.predicted_after}"
        for r in shown.itertuples()
    ]
    thumbnails(root, [str(Path(f).relative_to(root)) for f in files], captions)
    if len(frame) > MAX_SHOWN:
        st.caption(f"and {len(frame) - MAX_SHOWN} more")
