"""What the pages share: settings, session state, cached loaders and widget groups.

Widget groups return the values the user chose (config objects), so pages consume data, not
widgets. Nothing here imports TensorFlow at import time: the home page must stay fast.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from cnnlab import data, hosting, images
from cnnlab.checks import one_line
from cnnlab.jobs import Job
from cnnlab.runs import Run, RunStore
from cnnlab.settings import Settings, load_settings


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset the session works on: where it is and how to name it."""

    path: str
    label: str


def keep_keras_session() -> None:
    """Stop Streamlit from calling `keras.backend.clear_session()` after every script run.

    Streamlit does that to reset Keras between reruns, but here a training runs on in a background
    thread across reruns: a full garbage collection and a TensorFlow kernel-cache reset every
    second (the live fragment's rerun) made it about three times slower in the server than from
    the command line, and it swaps Keras's thread-local state under a running fit. Nothing here
    needs a fresh Keras session per rerun: models are built per training and cached per run.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if hasattr(script_runner, "_clean_problem_modules"):  # a private hook; absent, there is nothing to undo
        script_runner._clean_problem_modules = _no_clean_up


def _no_clean_up() -> None:
    """Replaces Streamlit's per-rerun clean-up (of Keras, and of matplotlib, which the app does not use)."""


def settings() -> Settings:
    """Settings from the environment, with `CNNLAB_*` Streamlit secrets taking precedence.

    The secrets are copied into the environment, so `cnnlab`'s own look-ups (the cache and models
    folders used by training and evaluation) see them too.
    """
    try:
        secrets = {k: str(v) for k, v in st.secrets.items() if k.startswith("CNNLAB_")}
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        secrets = {}
    os.environ.update(secrets)
    return load_settings()


def session_id() -> str:
    """A random id for this browser session (owner of its runs in hosted mode)."""
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex[:12]
    return st.session_state.session_id


@st.cache_resource
def _last_cleanup() -> dict[str, Any]:
    """Process-wide time of the last hosted clean-up (so it runs at most once a minute) and its lock."""
    return {"at": 0.0, "lock": threading.Lock()}


def housekeeping() -> None:
    """In hosted mode: mark this session alive and remove what ended sessions left behind."""
    config = settings()
    if not config.hosted:
        return
    hosting.touch_session(config.cache_dir, session_id())
    last = _last_cleanup()
    if time.time() - last["at"] > 60 and last["lock"].acquire(blocking=False):
        try:
            last["at"] = time.time()
            if hosting.cleanup_ended_sessions(config.cache_dir, store()):
                forget_models()  # the ended sessions' runs are gone; their cached models go too
        finally:
            last["lock"].release()


def store() -> RunStore:
    """The run store configured for this server."""
    return RunStore(settings().models_dir)


def owner() -> str | None:
    """The owner tag for new runs and the filter for listing them (hosted mode only)."""
    return session_id() if settings().hosted else None


def list_runs(sweep: str | None = None) -> list[Run]:
    """Runs this session may see: all of them locally, its own plus the demo when hosted."""
    return store().list(owner=owner(), sweep=sweep)


def team_copies() -> RunStore:
    """Teammates' runs opened on this server (read-only copies in the cache folder)."""
    from cnnlab.team import team_store

    return team_store(settings().cache_dir)


def opened_team_runs() -> list[Run]:
    """Teammates' runs opened here, offered by the run pickers when team tracking is on."""
    return team_copies().list() if settings().tracking is not None else []


def get_run(run_id: str) -> Run:
    """A run by id: a local one, else a teammate's run opened here."""
    try:
        return store().get(run_id)
    except ValueError:
        return team_copies().get(run_id)


def dataset() -> DatasetChoice:
    """The session's dataset; the built-in sample until the user picks another on the Data page."""
    if "dataset" not in st.session_state:
        from cnnlab.sample import sample_dir

        with st.spinner("Generating the built-in sample dataset (first time only)..."):
            st.session_state.dataset = DatasetChoice(str(sample_dir(settings().cache_dir)), "Built-in sample (shapes)")
    return st.session_state.dataset


@st.cache_data(ttl=60, show_spinner="Scanning the dataset...")
def scan(path: str) -> data.DatasetReport:
    """Scan a dataset folder (cached briefly; the scanner has its own on-disk cache too)."""
    return data.scan(path, cache=settings().cache_dir)


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def load_model(model_path: str, modified: float):
    """One loaded Keras model per run file, shared by all sessions; `modified` invalidates it."""
    import keras

    return keras.saving.load_model(model_path, compile=False)


def run_model(run: Run):
    """The run's model from the shared cache."""
    if not run.model_path.exists():
        raise ValueError(
            f"Run '{run.name}' has no saved model (it ended before its first epoch). Received: run={run.id!r}"
        )
    return load_model(str(run.model_path), run.model_path.stat().st_mtime)


def forget_models() -> None:
    """Release cached models (after a run is deleted)."""
    load_model.clear()


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
        select_run(job.result.id)


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
    select_run(selected_run_id() if selected_run_id() in by_id else runs[0].id)
    st.session_state.picked_run = selected_run_id()
    st.selectbox(
        label,
        list(by_id),
        key="picked_run",
        format_func=lambda i: describe_run(by_id[i]),
        on_change=lambda: select_run(st.session_state.picked_run),
    )
    return by_id[selected_run_id()]


def describe_run(run: Run) -> str:
    """A one-line label for a run in pickers."""
    accuracy = (run.record.get("metrics") or {}).get("test_accuracy")
    score = f", test acc {accuracy:.1%}" if accuracy is not None else ""
    team = run.record.get("team") or {}
    tag = " (demo)" if run.is_demo else " (team)" if team.get("opened") else ""
    return f"{run.name}{tag} [{run.status}{score}]"


def show_error(exc: Exception) -> None:
    """Show a bad-input error as one line, never a traceback."""
    st.error(one_line(exc), icon=":material/error:")


def thumbnails(root: Path, paths: list[str], captions: list[str], columns: int = 8) -> None:
    """A grid of small images with captions; a file gone or unreadable since the scan says so in its cell."""
    if not paths:
        st.caption("No images to show.")
        return
    for start in range(0, len(paths), columns):
        cols = st.columns(columns)
        for col, rel, caption in zip(
            cols, paths[start : start + columns], captions[start : start + columns], strict=False
        ):
            try:
                col.image(images.thumbnail(root / rel), caption=caption, width="stretch")
            except (images.ImageError, OSError):
                col.caption(f"{caption}: {rel} is missing or unreadable now")


@st.fragment(run_every=1.0)
def live_job(job: Job, stop_label: str, panel: Callable[[Job], None]) -> None:
    """Redraw `panel(job)` every second with a Stop button, and the whole page once the job ends.

    The job's thread never touches Streamlit; this fragment polls the state it keeps.
    """
    config = settings()
    if config.hosted:  # a visitor watching a long training is still here
        hosting.touch_session(config.cache_dir, session_id())
    if st.button(stop_label, icon=":material/stop:", disabled=job.done):
        job.stop()
    panel(job)
    if job.done:
        st.rerun(scope="app")
