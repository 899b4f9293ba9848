"""The runs this session may see, the run picker that Evaluate and Predict open on, and the runs
table and comparison charts that the Runs page shows for local and team runs alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

from cnnlab import charts
from cnnlab.data.versions import Dataset
from cnnlab.runs.dataset import run_dataset
from cnnlab.runs.store import HYPERPARAMETERS, Run, RunStore
from cnnlab_ui.state import (
    datasets_dir,
    select_finished_training,
    select_run,
    selected_run_id,
    settings,
    store,
)


def list_runs(sweep: str | None = None) -> list[Run]:
    """Runs this session may see: all of them locally, its own plus the demo when hosted."""
    return store().list(sweep=sweep)


def team_copies() -> RunStore:
    """Teammates' runs opened on this server (read-only copies in the cache folder)."""
    from cnnlab.team.remote import team_store

    return team_store(settings().cache_dir)


def opened_team_runs() -> list[Run]:
    """Teammates' runs opened here, offered by the run picker when team tracking is on."""
    return team_copies().list() if settings().tracking is not None else []


def get_run(run_id: str) -> Run:
    """A run by id: a local one, else a teammate's run opened here."""
    try:
        return store().get(run_id)
    except ValueError:
        return team_copies().get(run_id)


def run_version(run: Run) -> tuple[Dataset, int]:
    """The dataset version `run` trained on (`cnnlab.runs.dataset.run_dataset`), opened once per session:
    the first time, a run trained on a folder as it was has its folder's versions made (its images hashed)."""
    opened = st.session_state.setdefault("run-versions", {})
    if run.id not in opened:
        with st.spinner("Opening the versions of the run's dataset..."):
            opened[run.id] = run_dataset(run, datasets_dir(), cache=settings().cache_dir)
    return opened[run.id]


def opened_version(run: Run) -> tuple[Dataset, int] | None:
    """The dataset version `run` trained on, when this session opened it already (to fix its labels)."""
    return st.session_state.get("run-versions", {}).get(run.id)


def run_picker(label: str = "Run", with_model: bool = True) -> Run:
    """A select box of runs showing the selected run, else the newest, else the demo model.

    The box shows the session's selection even when it changed elsewhere (a training that ended,
    a pick on another page); the user's own pick becomes the selection through `on_change`.
    """
    select_finished_training()
    runs = [r for r in [*list_runs(), *opened_team_runs()] if r.model_path.exists() or not with_model]
    if not runs:
        st.info("No trained model yet. Train one on the **Train** page.")
        st.stop()
    by_id = {r.id: r for r in runs}
    chosen = selected_run_id()
    if chosen not in by_id:
        chosen = runs[0].id
        select_run(chosen)
    st.session_state.picked_run = chosen
    st.selectbox(
        label,
        list(by_id),
        key="picked_run",
        format_func=lambda i: describe_run(by_id[i]),
        on_change=lambda: select_run(st.session_state.picked_run),
    )
    return by_id[chosen]


def describe_run(run: Run) -> str:
    """A one-line label for a run in pickers."""
    accuracy = run.record.metrics.test_accuracy
    score = f", test acc {accuracy:.1%}" if accuracy is not None else ""
    tag = " (demo)" if run.is_demo else " (team)" if run.is_team_copy else ""
    version = run.record.dataset.version
    data = f", data v{version}" if version is not None else ""  # runs before and after a fix tell apart
    return f"{run.name}{tag} [{run.status}{score}{data}]"


RUN_COLUMNS = {
    "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.3f"),
    "test_accuracy": st.column_config.NumberColumn("test acc", format="%.3f"),
    "test_balanced_accuracy": st.column_config.NumberColumn("balanced acc", format="%.3f"),
    "test_macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
    "duration_s": st.column_config.NumberColumn("seconds", format="%.0f"),
}


def runs_table(frame: pd.DataFrame, key: str, columns: Sequence[str] | None = None) -> list[str]:
    """A table of runs (one row each, with an `id` column) to select rows in; returns the selected runs' ids.

    The table's selection is by position, so it is kept by run id instead: when rows come, go or
    move between reruns (a filter changed, a teammate's new run listed first), the selected runs
    stay selected where they are still shown, and no other run is selected in their place.
    """
    ids = [str(i) for i in frame["id"]]
    shown_before, state = st.session_state.get(f"{key}-ids"), st.session_state.get(key)
    if shown_before is not None and state is not None and shown_before != ids:
        kept = [shown_before[i] for i in state["selection"]["rows"] if i < len(shown_before)]
        st.session_state[key] = {"selection": {"rows": [ids.index(i) for i in kept if i in ids]}}
    st.session_state[f"{key}-ids"] = ids
    event = st.dataframe(
        frame,
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key=key,
        column_order=[c for c in columns if c in frame] if columns is not None else None,
        column_config={name: config for name, config in RUN_COLUMNS.items() if name in frame},
    )
    return [ids[i] for i in event.selection.rows if i < len(ids)]


def compare_curves(histories: Mapping[str, Sequence[Mapping]], names: Mapping[str, str], key: str) -> None:
    """Accuracy and loss of several runs (keyed by id, shown by `names`), side by side."""
    left, right = st.columns(2)
    left.plotly_chart(charts.compare_figure(histories, "accuracy", names), key=f"{key}-acc")
    right.plotly_chart(charts.compare_figure(histories, "loss", names), key=f"{key}-loss")


def parameters_chart(frame: pd.DataFrame, key: str) -> None:
    """Parallel coordinates of the runs' hyperparameters and best validation accuracy (two scored runs or more)."""
    scored = frame.dropna(subset=["best_val_accuracy"])
    params = [p for p in HYPERPARAMETERS if p in scored]
    if len(scored) >= 2 and params:
        st.plotly_chart(charts.parallel_coordinates_figure(scored, params, "best_val_accuracy"), key=key)
