"""The Evaluate page's likely label errors: from the run's validation and test predictions, or from a
cross-validated pass over all its images that the person starts as a background job."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from cnnlab.analysis.crossval import MAX_FOLDS, CrossValidatedIssues, saved_issues
from cnnlab.data.versions import Dataset
from cnnlab.runs.store import Run
from cnnlab.server import jobs
from cnnlab_ui.fixes import gallery, pending_edits, working_version
from cnnlab_ui.live import live_job
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import get_run, opened_version, run_version
from cnnlab_ui.state import job_settings, owner, session_busy, settings
from cnnlab_ui.training import retrain

SHOWN = 24


def label_issues_section(run: Run, root: Path | Callable[[str], Path]) -> None:
    """Two tabs: the held-out images checked on demand, and every image checked by a cross-validated pass;
    then the edits made to the run's dataset on this page, and a retraining on the corrected version."""
    st.subheader("Likely label errors")
    st.caption(
        "Images whose given label a model that never trained on them doubts most (confident learning). Fix labels "
        "relabels or excludes them: your edits are saved as a new version of the dataset, and the image files are "
        "never moved or changed."
    )
    held_out, every = st.tabs(["Validation and test images", "All images (cross-validated)"])
    with held_out:
        if st.toggle("Look for likely label errors", key="find_label_issues"):
            try:
                issues = _held_out_issues(run.id, run.model_path.stat().st_mtime)
            except ValueError as exc:
                show_error(exc)
            else:
                _gallery(run, root, issues, "this run's model's predictions on its validation and test images", "")
    with every:
        _cross_validated_tab(run, root)
    if (opened := opened_version(run)) is not None:
        dataset, version = opened
        pending_edits(dataset, key="evaluate", about="the one this run trained on")
        _retrain(run, dataset, version)


def _retrain(run: Run, dataset: Dataset, version: int) -> None:
    """Once this session saved a corrected version of the run's dataset: a training with the run's settings on it."""
    corrected = working_version(dataset, version)
    if corrected == version:
        return
    st.caption(
        f"Retraining trains this run's model with its settings on version {corrected}; the Runs page then "
        "compares the two runs on the test images they share."
    )
    if st.button(
        f"Retrain on version {corrected}",
        key="retrain",
        type="primary",
        disabled=session_busy(),
        icon=":material/model_training:",
        help=f"A new training with this run's model and training settings on version {corrected}, in the background",
    ):
        try:
            st.session_state.job = retrain(run, dataset, corrected)
        except ValueError as exc:
            show_error(exc)
        else:
            st.success(f"Training on version {corrected} started.", icon=":material/model_training:")
            left, right = st.columns(2)
            left.page_link("pages/train.py", label="Watch it on the Train page", icon=":material/monitoring:")
            right.page_link("pages/runs.py", label="Compare the runs once it ends", icon=":material/compare:")


@st.cache_data(show_spinner="Looking for likely label errors in the validation and test images...", max_entries=8)
def _held_out_issues(run_id: str, model_mtime: float) -> pd.DataFrame:
    """Likely label errors among the run's held-out images (never moves or changes a file)."""
    from cnnlab.analysis.label_issues import run_label_issues

    return run_label_issues(get_run(run_id), cache=settings().cache_dir)


def _cross_validated_tab(run: Run, root: Path | Callable[[str], Path]) -> None:
    st.caption(
        "The validation and test images are only part of the data: a mislabelled training image is never checked "
        "there. This pass trains a few fresh models with this run's settings, each on all folds of the images but "
        "one, and checks every image with the model that did not train on it. It takes about as long as that many "
        "trainings (fewer epochs are quicker)."
    )
    job = _label_check(run)
    if job is not None and not job.done:
        live_job(job, "Stop", _progress)
        return
    planned = run.train_config().epochs
    left, right = st.columns(2)
    folds = left.number_input("Folds (models)", 2, MAX_FOLDS, 3, key="cv_folds")
    epochs = right.number_input("Epochs per model", 1, planned, planned, key="cv_epochs")
    demo = (
        " The demo model's folder takes no results: train a run of your own to check its labels." if run.is_demo else ""
    )
    if st.button(
        "Check every image",
        key="start-label-check",
        disabled=session_busy() or run.is_demo,
        icon=":material/fact_check:",
        help=f"{folds} models of {epochs} epoch(s) each, one training at a time.{demo}",
    ):
        jobs.label_check_job(run, job_settings(), folds=int(folds), epochs=int(epochs)).start()
        st.rerun()
    saved = saved_issues(run)
    if job is not None:
        _outcome(job, saved is not None)
    if saved is not None:
        _gallery(run, root, saved.issues, _source(saved), "-cv")


def _label_check(run: Run) -> jobs.Job | None:
    """The newest cross-validated pass over this run that this person may see (a reload finds it again)."""
    return next((job for job in jobs.visible_jobs(owner(), jobs.LABEL_CHECK) if job.info["run_id"] == run.id), None)


def _progress(job: jobs.Job) -> None:
    if job.status == "queued":
        st.info(job.message or "Waiting to start...", icon=":material/hourglass_top:")
        return
    p = job.progress
    detail = (
        f"Fold {p['fold']} of {p['folds']}, epoch {p['epoch']}, batch {p['batch']} of {p['steps']}"
        if "fold" in p
        else "Preparing data..."
    )
    eta = f" · ETA {p['eta_s']:.0f}s" if "eta_s" in p else ""
    st.progress(min(p.get("fraction", 0.0), 1.0), text=f"{detail} · elapsed {job.elapsed:.0f}s{eta}")


def _outcome(job: jobs.Job, kept: bool) -> None:
    """What became of the last pass when it did not complete."""
    earlier = " The list below is from an earlier pass." if kept else ""
    if job.status == "failed":
        show_error(ValueError(job.error or "The cross-validated pass failed."))
    elif job.status in ("stopped", "cancelled"):
        st.info(f"The pass was stopped before every model was trained, so nothing was saved.{earlier}")


def _source(result: CrossValidatedIssues) -> str:
    return (
        f"a {result.folds}-fold cross-validated pass over all {result.num_images} images (training, validation and "
        f"test), {result.epochs} epoch(s) per model, made {result.created.replace('T', ' ')} UTC"
    )


def _gallery(run: Run, root: Path | Callable[[str], Path], issues: pd.DataFrame, source: str, suffix: str) -> None:
    """The likely label errors, most likely first, saying where the probabilities come from, to view or fix,
    with a CSV download."""
    st.caption(f"Probabilities from {source}.")
    if issues.empty:
        st.success("No likely label error among these images.")
        return
    shown = issues.head(SHOWN)
    captions = [
        f"given {given} ({p:.0%}) → suggested {suggested} · {split}"
        for given, p, suggested, split in zip(
            shown["given_label"],
            shown["given_label_probability"],
            shown["suggested_label"],
            shown["split"],
            strict=True,
        )
    ]
    paths = shown["path"].tolist()
    gallery(root, paths, captions, key=f"label-issues{suffix}", target=partial(run_version, run), columns=6)
    st.download_button(
        f"Download all {len(issues)} as CSV",
        issues.to_csv(index=False),
        f"{run.name}{suffix}-label-issues.csv",
        icon=":material/download:",
        key=f"download-{run.name}{suffix}",
    )
