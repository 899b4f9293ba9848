"""The unfamiliar-image flag on the pages: its reference (fitted once per run and model file), the line
shown with a prediction, and the Evaluate page's check of how well it separates strangers."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from cnnlab.analysis.novelty import MAX_REFERENCE, QUANTILE, NoveltyFlag, NoveltyReference, flag_images, run_reference
from cnnlab.analysis.novelty_check import NUM_STRANGERS, novelty_separation
from cnnlab.deploy.prediction import Prediction
from cnnlab.runs.store import Run
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import get_run
from cnnlab_ui.state import settings

UNAVAILABLE = (
    "No unfamiliar-image flag for this run: its training images are not readable here to compare with "
    "(the dataset is not on this machine, or it changed)."
)


@st.cache_resource(
    show_spinner="Fitting the unfamiliar-image flag: one pass over the run's images, kept with the run...",
    max_entries=8,
)
def _reference(run_id: str, model_mtime: float) -> NoveltyReference | None:
    """One reference per run and model file, shared by all sessions; None when it cannot be fitted here."""
    try:
        return run_reference(get_run(run_id), cache=settings().cache_dir)
    except ValueError:
        return None


def novelty_reference(run: Run) -> NoveltyReference | None:
    """The run's reference, or None (with a caption saying why there is no flag)."""
    reference = _reference(run.id, run.model_path.stat().st_mtime)
    if reference is None:
        st.caption(UNAVAILABLE)
    return reference


def flags_for(model, reference: NoveltyReference | None, results: Sequence[Prediction]) -> list[NoveltyFlag | None]:
    """One flag per prediction (None for all when there is no reference)."""
    if reference is None:
        return [None] * len(results)
    return list(flag_images(model, reference, [r.image for r in results if r.image is not None]))


def with_flags(table: pd.DataFrame, flags: Sequence[NoveltyFlag | None]) -> pd.DataFrame:
    """The predictions table with an `unlike_training` column after the confidence (empty without a reference)."""
    table = table.copy()
    table.insert(3, "unlike_training", [None if f is None else f.novel for f in flags])
    return table


def show_flag(flag: NoveltyFlag | None) -> None:
    """The one line shown under a prediction: a warning when the image is unlike the training images."""
    if flag is None:
        return
    if flag.novel:
        st.warning(
            f"**Unlike the training images**: {flag.explanation.removeprefix('unlike the training images: ')} "
            f"(novelty {flag.score:.3f} > {flag.threshold:.3f}), so this prediction may mean little.",
            icon=":material/help:",
        )
    else:
        st.caption(f"Like the training images (novelty {flag.score:.3f} ≤ {flag.threshold:.3f}).")


@st.cache_data(show_spinner="Comparing the run's test images with images it has never seen...", max_entries=8)
def _separation(run_id: str, model_mtime: float) -> pd.DataFrame:
    return novelty_separation(get_run(run_id), cache=settings().cache_dir)


def separation_section(run: Run) -> None:
    """How well the flag tells the run's test images from other images: a table and a bar chart."""
    st.subheader("Unfamiliar images")
    st.caption(
        "Predict flags an image as unlike the training images when its features (the model's last layer before "
        f"the classifier) are farther from its 5 nearest training images than {QUANTILE:.0%} of validation images "
        f"are (cosine distance; at most {MAX_REFERENCE:,} training images are kept to compare with). Here it is "
        f"tried on {NUM_STRANGERS} images of another dataset and {NUM_STRANGERS} of noise. AUROC 1.0: every one "
        "scores above every test image; 0.5: no better than chance."
    )
    if not st.toggle("Check the flag", key="novelty-check", help="One pass over every image of the run, kept"):
        return
    try:
        table = _separation(run.id, run.model_path.stat().st_mtime)
    except ValueError as exc:
        show_error(exc)
        return
    left, right = st.columns([3, 2])
    left.dataframe(
        table,
        hide_index=True,
        column_config={
            "flagged": st.column_config.ProgressColumn("flagged", format="percent", min_value=0.0, max_value=1.0),
            "auroc": st.column_config.NumberColumn("AUROC vs. test", format="%.3f"),
        },
    )
    right.bar_chart(table, x="images", y="flagged", horizontal=True, height=200)
