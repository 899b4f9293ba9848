"""The runs this session may see, and the run picker that Evaluate and Predict open on."""

from __future__ import annotations

import streamlit as st

from cnnlab.runs import Run, RunStore
from cnnlab_ui.state import owner, select_finished_training, select_run, selected_run_id, settings, store


def list_runs(sweep: str | None = None) -> list[Run]:
    """Runs this session may see: all of them locally, its own plus the demo when hosted."""
    return store().list(owner=owner(), sweep=sweep)


def team_copies() -> RunStore:
    """Teammates' runs opened on this server (read-only copies in the cache folder)."""
    from cnnlab.team import team_store

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
    accuracy = (run.record.get("metrics") or {}).get("test_accuracy")
    score = f", test acc {accuracy:.1%}" if accuracy is not None else ""
    team = run.record.get("team") or {}
    tag = " (demo)" if run.is_demo else " (team)" if team.get("opened") else ""
    return f"{run.name}{tag} [{run.status}{score}]"
