"""The app's settings and this browser session's state: its id, dataset, jobs and selected run."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import streamlit as st

from cnnlab.checks import one_line
from cnnlab.quota import DiskUsage, session_usage
from cnnlab.runs import RunStore
from cnnlab.settings import Settings, load_settings


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset the session works on: where it is and how to name it."""

    path: str
    label: str


def settings() -> Settings:
    """Settings from the environment, with `CNNLAB_*` Streamlit secrets taking precedence.

    A bad setting stops the page with its one-line message (an operator's mistake, not a crash).
    """
    try:
        return load_settings({**os.environ, **_secrets()})
    except ValueError as exc:
        st.error(one_line(exc), icon=":material/error:")  # not show_error, which needs the settings
        st.stop()


def _secrets() -> dict[str, str]:
    try:
        return {k: str(v) for k, v in st.secrets.items() if k.startswith("CNNLAB_")}
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}


def session_id() -> str:
    """A random id for this browser session (owner of its runs in hosted mode)."""
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex[:12]
    return st.session_state.session_id


def store() -> RunStore:
    """The run store configured for this server."""
    return RunStore(settings().models_dir)


def owner() -> str | None:
    """The owner tag for new runs and the filter for listing them (hosted mode only)."""
    return session_id() if settings().hosted else None


def disk_usage() -> DiskUsage | None:
    """This visitor's disk use against their budget (hosted mode only)."""
    config = settings()
    if config.max_session_mb is None:
        return None
    return session_usage(config.cache_dir, store(), session_id(), config.max_session_mb)


def dataset() -> DatasetChoice:
    """The session's dataset; the built-in sample until the user picks another on the Data page."""
    if "dataset" not in st.session_state:
        from cnnlab.sample import sample_dir

        with st.spinner("Generating the built-in sample dataset (first time only)..."):
            st.session_state.dataset = DatasetChoice(str(sample_dir(settings().cache_dir)), "Built-in sample (shapes)")
    return st.session_state.dataset


def session_busy() -> bool:
    """Whether this session's training or sweep is still queued or running: one at a time per session."""
    jobs = (st.session_state.get(key) for key in ("job", "sweep_job"))
    return any(job is not None and not job.done for job in jobs)


def selected_run_id() -> str | None:
    """The run chosen for Evaluate and Predict, if any."""
    return st.session_state.get("run_id")


def select_run(run_id: str) -> None:
    """Make a run the one Evaluate and Predict open."""
    st.session_state.run_id = run_id


def select_finished_training() -> None:
    """Select a finished training's run once, wherever the user was when it ended.

    Called by the run picker, so the next Evaluate or Predict view opens on the new run, while a
    pick the user makes afterwards is not undone.
    """
    job = st.session_state.get("job")
    if job is not None and job.done and job.result is not None and st.session_state.get("selected_job") != job.id:
        st.session_state.selected_job = job.id
        if job.result.model_path.exists():  # stopped before its first epoch: nothing to open
            select_run(job.result.id)
