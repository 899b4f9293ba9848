"""The Runs page's team view: every run of the team's experiment, filtered, compared and opened.

Reads go through short-lived caches, so reruns do not hammer the tracking server; a teammate's run
is opened (its model downloaded once) into a read-only copy that Evaluate and Predict pick up.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cnnlab import charts
from cnnlab.tracking import TrackingConfig
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import list_runs, team_copies
from cnnlab_ui.state import dataset, settings

# Hyperparameters compared across runs (parallel coordinates, tables).
PARAMS = [
    "backbone",
    "conv_blocks",
    "filters",
    "kernel_size",
    "dense_units",
    "dropout",
    "optimizer",
    "learning_rate",
    "image_size",
    "batch_size",
]
MAX_CURVES = 8


@st.cache_data(ttl=15, show_spinner="Reading the team's runs...")
def team_rows(tracking: TrackingConfig) -> list[dict[str, Any]]:
    """Every run of the experiment (cached for 15 s)."""
    from cnnlab.team import team_runs

    return team_runs(tracking)


@st.cache_data(ttl=15, show_spinner=False)
def team_curve(tracking: TrackingConfig, team_run_id: str) -> list[dict[str, Any]]:
    """One team run's per-epoch rows (cached for 15 s, so a live run's curve grows)."""
    from cnnlab.team import team_history

    return team_history(tracking, team_run_id)


def team_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per team run, hyperparameters as columns (image size as "HxW")."""
    flat = []
    for row in rows:
        params = dict(row["params"])
        if isinstance(params.get("image_size"), list):
            params["image_size"] = "x".join(str(v) for v in params["image_size"])
        flat.append({**{k: v for k, v in row.items() if k != "params"}, **params})
    return pd.DataFrame(flat)


def filtered(frame: pd.DataFrame) -> pd.DataFrame:
    """Filter widgets for user, dataset and sweep; returns the rows that pass."""
    columns = st.columns(3)
    for column, (field, label) in zip(
        columns, (("user", "User"), ("dataset", "Dataset"), ("sweep", "Sweep")), strict=True
    ):
        options = sorted({str(v) for v in frame[field].dropna()})
        chosen = column.multiselect(label, options, key=f"team-filter-{field}", placeholder="All")
        if chosen:
            frame = frame[frame[field].astype(str).isin(chosen)]
    return frame


def team_view(tracking: TrackingConfig, on_open) -> None:
    """The whole team view; `on_open(run)` is called with a teammate's run once it is opened here."""
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
    shown = [
        c
        for c in [
            "name",
            "user",
            "host",
            "status",
            "dataset",
            "sweep",
            "trial",
            "best_val_accuracy",
            "test_accuracy",
            *PARAMS,
        ]
        if c in frame
    ]
    event = st.dataframe(
        frame[shown],
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key="team-table",
        column_config={
            "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.3f"),
            "test_accuracy": st.column_config.NumberColumn("test acc", format="%.3f"),
        },
    )
    chosen = frame.iloc[event.selection.rows[:MAX_CURVES]] if event.selection.rows else frame.head(5)
    try:
        histories = {f"{r['name']} ({r['user']})": team_curve(tracking, r["id"]) for _, r in chosen.iterrows()}
    except ValueError as exc:
        show_error(exc)
        histories = {}
    left, right = st.columns(2)
    left.plotly_chart(charts.compare_figure(histories, "accuracy"), key="team-acc")
    right.plotly_chart(charts.compare_figure(histories, "loss"), key="team-loss")
    scored = frame.dropna(subset=["best_val_accuracy"])
    params = [p for p in PARAMS if p in scored]
    if len(scored) >= 2 and params:
        st.plotly_chart(charts.parallel_coordinates_figure(scored, params, "best_val_accuracy"), key="team-parcoords")
    open_section(tracking, frame, on_open)


def open_section(tracking: TrackingConfig, frame: pd.DataFrame, on_open) -> None:
    """Pick a team run and open it (download its model once) for Evaluate and Predict."""
    st.subheader("Open a team run")
    st.caption("Teammates' runs are read-only here: open one to evaluate it or predict with its model.")
    by_id = {row["id"]: row for _, row in frame.iterrows()}
    picked = st.selectbox(
        "Team run",
        list(by_id),
        format_func=lambda i: f"{by_id[i]['name']} by {by_id[i]['user']} [{by_id[i]['status']}]",
    )
    if picked is None or not st.button("Open in Evaluate and Predict", icon=":material/cloud_download:"):
        return
    from cnnlab.team import attach_dataset, open_team_run

    try:
        with st.spinner("Downloading the model (once; it is kept in the cache folder)..."):
            run = open_team_run(tracking, picked, team_copies())
    except ValueError as exc:
        show_error(exc)
        return
    fingerprint = (run.record.get("dataset") or {}).get("fingerprint")
    cache = settings().cache_dir
    local = [
        r.dataset_root(cache) for r in list_runs() if (r.record.get("dataset") or {}).get("fingerprint") == fingerprint
    ]
    with st.spinner("Looking for the run's dataset on this machine..."):
        attach_dataset(run, [dataset().path, *local], cache)
    on_open(run)
