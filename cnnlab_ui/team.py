"""The Runs page's team view: every run of the team's experiment, filtered, compared and opened.

Reads go through short-lived caches, so reruns do not hammer the tracking server; a teammate's run
is opened (its model downloaded once) into a read-only copy that Evaluate and Predict pick up.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cnnlab.runs.store import HYPERPARAMETERS, Run, hyperparameters
from cnnlab.team.tracking import TrackingConfig
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import compare_curves, list_runs, parameters_chart, runs_table, team_copies
from cnnlab_ui.state import dataset, datasets_dir, settings

MAX_CURVES = 8
FILTERS = (("user", "User"), ("dataset", "Dataset"), ("sweep", "Sweep"))
COLUMNS = [
    "name",
    "user",
    "host",
    "status",
    "dataset",
    "sweep",
    "trial",
    "best_val_accuracy",
    "test_accuracy",
    *HYPERPARAMETERS,
]


@st.cache_data(ttl=15, show_spinner="Reading the team's runs...")
def team_rows(tracking: TrackingConfig) -> list[dict[str, Any]]:
    """Every run of the experiment (cached for 15 s)."""
    from cnnlab.team.remote import team_runs

    return team_runs(tracking)


@st.cache_data(ttl=15, show_spinner=False)
def team_curve(tracking: TrackingConfig, team_run_id: str) -> list[dict[str, Any]]:
    """One team run's per-epoch rows (cached for 15 s, so a live run's curve grows)."""
    from cnnlab.team.remote import team_history

    return team_history(tracking, team_run_id)


def team_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per team run, its hyperparameters as columns."""
    return pd.DataFrame(
        [{**{k: v for k, v in row.items() if k != "params"}, **hyperparameters(row["params"])} for row in rows]
    )


def filtered(frame: pd.DataFrame) -> pd.DataFrame:
    """Filter widgets for user, dataset and sweep (each offers every value of the team); the rows that pass all."""
    shown = frame
    for column, (field, label) in zip(st.columns(3), FILTERS, strict=True):
        options = sorted({str(v) for v in frame[field].dropna()})
        chosen = column.multiselect(label, options, key=f"team-filter-{field}", placeholder="All")
        if chosen:
            shown = shown[shown[field].astype(str).isin(chosen)]
    return shown


def team_view(tracking: TrackingConfig, on_open) -> None:
    """The whole team view; `on_open(run)` is called with a run once it is opened here."""
    try:
        rows = team_rows(tracking)
    except ValueError as exc:
        show_error(exc)
        return
    if not rows:
        st.info(f"No runs in the team experiment '{tracking.experiment}' yet: train one and it is published here.")
        return
    frame = filtered(team_frame(rows))
    st.caption(f"{len(frame)} of {len(rows)} team runs. Select rows to overlay their learning curves.")
    selected = runs_table(frame, "team-table", COLUMNS)
    chosen = frame.set_index("id").loc[selected[:MAX_CURVES]] if selected else frame.set_index("id").head(5)
    try:
        histories = {team_run_id: team_curve(tracking, team_run_id) for team_run_id in chosen.index}
    except ValueError as exc:
        show_error(exc)
        histories = {}
    compare_curves(histories, {i: f"{r['name']} ({r['user']})" for i, r in chosen.iterrows()}, "team")
    parameters_chart(frame, "team-parcoords")
    open_section(tracking, frame, on_open)


def open_section(tracking: TrackingConfig, frame: pd.DataFrame, on_open) -> None:
    """Pick a team run and open it: one's own run as the local run it is, a teammate's as a read-only copy."""
    st.subheader("Open a team run")
    by_id = {row["id"]: row for _, row in frame.iterrows()}
    picked = st.selectbox(
        "Team run",
        list(by_id),
        format_func=lambda i: f"{by_id[i]['name']} by {by_id[i]['user']} [{by_id[i]['status']}]",
        key="team-run",
    )
    if picked is None:
        return
    own = own_run(by_id[picked])
    if own is not None:
        st.caption("Your run, trained on this machine: it opens as it is, to manage on the Runs page's own view.")
    else:
        st.caption(
            f"{by_id[picked]['user']}'s run is read-only here: opening it downloads its model (once) to evaluate "
            "it or predict with it; only its owner can rename, resume or delete it."
        )
    if not st.button("Open in Evaluate and Predict", icon=":material/cloud_download:", key="open-team-run"):
        return
    if own is not None:
        on_open(own)
        return
    run = opened_copy(tracking, picked)
    if run is not None:
        on_open(run)


def own_run(row: pd.Series) -> Run | None:
    """The local run a team run is a copy of, when it was published from this machine's models folder."""
    local = {run.id: run for run in list_runs()}.get(str(row["local_run_id"]))
    if local is None or local.record.team is None or local.record.team.run_id != row["id"]:
        return None
    return local


def opened_copy(tracking: TrackingConfig, team_run_id: str) -> Run | None:
    """A teammate's run downloaded (once) into the read-only team copies, with its dataset found here if it can be."""
    from cnnlab.team.remote import attach_dataset, open_team_run

    try:
        with st.spinner("Downloading the model (once; it is kept in the cache folder)..."):
            run = open_team_run(tracking, team_run_id, team_copies())
    except ValueError as exc:
        show_error(exc)
        return None
    fingerprint = run.record.dataset.fingerprint
    cache = settings().cache_dir
    local = [r.dataset_root(cache) for r in list_runs() if r.record.dataset.fingerprint == fingerprint]
    with st.spinner("Looking for the run's dataset on this machine..."):
        attach_dataset(run, [dataset().path, *local], cache, datasets=datasets_dir())
    return run
