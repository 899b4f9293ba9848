"""Sweep: search hyperparameters with Optuna; every trial is a saved run."""

import pandas as pd
import streamlit as st

from cnnlab import charts
from cnnlab.model.backbones import BACKBONE_NAMES
from cnnlab.server import hosting, jobs, quota
from cnnlab.sweep import OBJECTIVES, SweepConfig, default_storage, follow_study, space_from_dict
from cnnlab_ui.datasets import chosen_version
from cnnlab_ui.live import job_figure, live_job
from cnnlab_ui.messages import show_error
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import disk_usage, job_settings, session_busy, session_id, settings, store, watched_job

require_app_shell()

st.title("Sweep")
st.caption(
    "Pick the hyperparameters to search and their ranges; Optuna proposes configurations, prunes "
    "hopeless trials after each epoch, and every trial is saved as a run (see the Runs page)."
)
picked = chosen_version()
st.caption(f"Every trial trains on {picked.description}. Change it on the Data page.")

# (field, label, kind, options, default selection): "range" picks low/high, "choices" a subset.
SEARCHABLE = [
    ("backbone", "Backbone (pretrained)", "choices", list(BACKBONE_NAMES), ["none", "mobilenet_v3_small"]),
    ("conv_blocks", "Conv blocks", "range", [1, 2, 3, 4], (1, 3)),
    ("filters", "Filters in the first block", "choices", [8, 16, 32, 64], [16, 32]),
    ("kernel_size", "Kernel size", "choices", [3, 5, 7], [3, 5]),
    ("dropout", "Dropout", "range", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], (0.0, 0.4)),
    ("dense_units", "Dense units", "choices", [0, 32, 64, 128, 256], [64, 128]),
    ("image_size", "Image size", "choices", [32, 48, 64, 96], [48, 64]),
    ("learning_rate", "Learning rate (log scale)", "range", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], (3e-4, 3e-3)),
    ("batch_size", "Batch size", "choices", [16, 32, 64], [32]),
    ("batch_norm", "Batch normalisation", "choices", [True, False], [True, False]),
    ("rotation", "Rotation augmentation", "choices", [0.0, 0.1, 0.2], [0.0, 0.1]),
    ("optimizer", "Optimizer", "choices", ["adam", "sgd", "rmsprop"], ["adam"]),
]


def space_widgets() -> dict:
    """Widgets for the search space; returns the space as the sweep file format."""
    params = {}
    for name, label, kind, options, default in SEARCHABLE:
        left, right = st.columns([1, 3])
        if not left.checkbox(label, value=name in ("conv_blocks", "filters", "learning_rate"), key=f"use-{name}"):
            continue
        if kind == "range":
            low, high = right.select_slider(
                label, options, value=default, key=f"range-{name}", label_visibility="collapsed"
            )
            params[name] = {"low": low, "high": high, "log": name == "learning_rate"}
        else:
            params[name] = right.multiselect(
                label, options, default=default, key=f"choices-{name}", label_visibility="collapsed"
            )
    return params


with st.sidebar:
    st.header("Sweep")
    objective = st.radio("Objective", ["val_accuracy", "val_loss"], horizontal=True)
    trials = st.number_input("Trials", 1, 200, 8, key="sweep-trials")
    minutes = st.number_input("Time budget (minutes, 0 = none)", 0, 600, 10, key="sweep-minutes")
    epochs = st.number_input("Epochs per trial", 1, 50, 5, key="sweep-epochs")
    study = st.text_input("Study name (blank: derived from the space)")
    storage = (
        default_storage(store())
        if settings().hosted
        else st.text_input(
            "Storage (SQLAlchemy URL)",
            value=default_storage(store()),
            help="SQLite in the models folder by default; a PostgreSQL URL lets a team share one study",
        )
    )

st.subheader("Search space")
try:
    space = space_from_dict({"objective": objective, "params": space_widgets(), "fixed": {"epochs": int(epochs)}})
except ValueError as exc:
    show_error(exc)
    st.stop()


def check_disk_budget() -> None:
    """Refuse (hosted mode) a sweep whose trials would take this visitor over their disk budget."""
    if (usage := disk_usage()) is not None:
        cache = settings().cache_dir
        uploads = hosting.uploads_dir(cache, session_id())
        needed = quota.sweep_bytes(picked.report, space, int(trials), cache=cache, uploads=uploads)
        quota.check_room(
            usage, needed, f"A sweep of {int(trials)} trials", "choose fewer trials or smaller image sizes"
        )


job = watched_job("sweep")  # after a reload too
if st.button("Start sweep", key="start-sweep", type="primary", disabled=session_busy(), icon=":material/play_arrow:"):
    try:
        check_disk_budget()
        config = SweepConfig(
            trials=int(trials), timeout=minutes * 60 or None, storage=storage, study_name=study or None
        )
    except ValueError as exc:
        show_error(exc)
    else:
        st.session_state.sweep_job = jobs.sweep_job(
            picked.choice.path, space, config, job_settings(), dataset_version=picked.number
        ).start()
        st.rerun()


def trials_panel(job: jobs.Job) -> None:
    """The live table of trials and the objective-by-trial chart."""
    if job.status == "queued":
        st.info(job.message or "Waiting to start...", icon=":material/hourglass_top:")
        return
    target = job.info["objective"]
    latest = (
        f" · trial {job.history[-1]['trial']}, epoch {job.history[-1]['epoch']}" if job.history and not job.done else ""
    )
    st.caption(f"{len(job.items)} trial(s) finished · elapsed {job.elapsed:.0f}s{latest}")
    if job.items:
        frame = pd.json_normalize(job.items)  # one column per parameter ("params.filters", ...)
        figure = job_figure(job, "trials", lambda: charts.sweep_figure(frame, target, OBJECTIVES[target]))
        st.plotly_chart(figure, key=f"sweep-{job.id}-{len(job.items)}")
        st.dataframe(frame, hide_index=True)
    if job.status == "failed":
        show_error(ValueError(job.error or "The sweep failed."))
    elif job.done and job.result is not None and job.result.best_value is None:
        st.info("No trial completed, so there is no best trial yet; run more trials or widen the time budget.")
    elif job.done and job.result is not None:
        st.success(
            f"Best trial: {job.result.best_value:.4f} ({target}) with {job.result.best_params}. Its run is on the Runs page."
        )


if job is not None and not job.done:
    live_job(job, "Stop sweep", trials_panel)
elif job is not None:
    trials_panel(job)


@st.fragment(run_every=3.0)
def follow_panel(study_name: str, storage_url: str) -> None:
    """A shared study's trials from every worker (running ones too), re-read every 3 seconds."""
    try:
        result = follow_study(study_name, storage_url)
    except ValueError as exc:
        show_error(exc)
        return
    frame = pd.json_normalize(result.trials)
    if frame.empty:
        st.info("No trial yet: start workers with `python -m cnnlab sweep --storage URL --study NAME`.")
        return
    states = frame["state"].value_counts().to_dict()
    best = "none yet" if result.best_value is None else f"{result.best_value:.4f}"
    st.caption(
        f"{len(frame)} trials ({', '.join(f'{n} {s}' for s, n in states.items())}) · best {result.objective} {best}"
    )
    st.plotly_chart(charts.sweep_figure(frame, result.objective, result.direction))
    st.dataframe(frame, hide_index=True)


if not settings().hosted:
    with st.expander("Follow a shared study: every worker's trials, live, from any machine"):
        followed = st.text_input(
            "Study name", key="follow-study", help="the --study name the workers were started with"
        )
        if followed:
            follow_panel(followed.strip(), storage)
