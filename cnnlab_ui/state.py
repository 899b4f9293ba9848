"""The app's settings and this person's state: their id, settings, dataset, jobs and selected run.

What must outlive a reload (which starts a new Streamlit session) is kept outside
`st.session_state`: the visitor id in a cookie of their browser, the sidebar settings in a
server-side cache, the jobs in `cnnlab.server.jobs`' registry.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from cnnlab.common.checks import one_line
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.server import hosting, jobs
from cnnlab.server.jobs import Job
from cnnlab.server.quota import DiskUsage, session_usage
from cnnlab.settings import DEMO_RUN_DIR, Settings, load_settings


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset the session works on: where it is (a class folder, or the name of a dataset made in
    CNN Lab), how to name it, and which of its versions to use (None: the latest)."""

    path: str
    label: str
    version: int | None = None


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


VISITOR_COOKIE = "cnnlab_visitor"
_VISITOR_ID = re.compile(r"[0-9a-f]{16}")
# Longer than any visitor's work lasts: hosted mode deletes what a visitor left after an hour idle.
VISITOR_COOKIE_DAYS = 30


def session_id() -> str:
    """This visitor's id (owner of their runs and jobs in hosted mode): the one their browser keeps
    in a cookie (`remember_visitor` sets it), so a reload, a new tab or a typed address in the same
    browser keeps it, while a page address shared with someone else hands them nothing.

    A browser without a valid one (a first visit, a private window) gets a new random id.
    """
    if "visitor" not in st.session_state:
        kept = _cookie(VISITOR_COOKIE)
        st.session_state.visitor = kept if _VISITOR_ID.fullmatch(kept) else secrets.token_hex(8)
    return st.session_state.visitor


def remember_visitor() -> None:
    """Have the browser keep this visitor's id in a cookie, unless it sent that cookie already.

    Streamlit only reads cookies (`st.context.cookies`, as the browser sent them when the session
    connected), so a script in the page sets it (`st.html` runs scripts when told to).
    """
    visitor = session_id()
    if _cookie(VISITOR_COOKIE) != visitor:
        cookie = f"{VISITOR_COOKIE}={visitor}; path=/; max-age={VISITOR_COOKIE_DAYS * 86400}; samesite=strict"
        st.html(
            f"<script>document.cookie = '{cookie}' + (location.protocol === 'https:' ? '; secure' : '');</script>",
            unsafe_allow_javascript=True,  # nothing in it but our own random hex id
        )


def _cookie(name: str) -> str:
    """The cookie `name` as the browser sent it when the session connected ("" when it sent none)."""
    value = st.context.cookies.get(name)
    return value if isinstance(value, str) else ""  # AppTest's sessions give a stand-in object, not cookies


@st.cache_resource
def _remembered() -> dict[str, dict[str, Any]]:
    """Each person's sidebar settings and dataset, kept by the server: a reload starts a new session."""
    return {}


_KEPT_KEYS = {"dataset"}


def restore_setting(key: str) -> None:
    """Before its widget is drawn in a new session (after a reload), give `key` the person's last value."""
    _KEPT_KEYS.add(key)
    saved = _remembered().get(_person(), {})
    if key not in st.session_state and key in saved:
        st.session_state[key] = saved[key]


def remember_settings() -> None:
    """Keep this session's current settings (widget values as they are now) for a reload."""
    current = {key: st.session_state[key] for key in _KEPT_KEYS if key in st.session_state}
    if current:  # merged: a page without the sidebar has only some of them
        remembered = _remembered()
        remembered[_person()] = {**remembered.get(_person(), {}), **current}


def _person() -> str:
    return owner() or "local"


def server_store() -> RunStore:
    """Every run in this server's models folder, whoever owns it (for the server's own clean-up only)."""
    return RunStore(settings().models_dir, demo=DEMO_RUN_DIR)


def store() -> RunStore:
    """The run store configured for this server, with the demo model shipped with the app; a hosted
    visitor's view of it, which holds only their own runs (and the demo)."""
    return RunStore(settings().models_dir, demo=DEMO_RUN_DIR, owner=owner())


def job_settings() -> jobs.JobSettings:
    """What this person's jobs work with: this server's run store, cache and limits, their owner tag, the team server."""
    config = settings()
    workspace = Workspace(
        store=store(),
        cache=config.cache_dir,
        max_training_mb=config.max_training_mb,
        max_cache_mb=config.max_cache_mb,
        tracking=config.tracking,
        owner=owner(),
        datasets=datasets_dir(),
        devices=config.devices,
    )
    return jobs.JobSettings(workspace, limit=config.max_concurrent_trainings)


def datasets_dir() -> Path:
    """Where this person's dataset versions live: the server's datasets folder, or a hosted visitor's own
    part of it, so that no visitor sees another's edits."""
    config = settings()
    return hosting.visitor_datasets_dir(config.datasets_dir, session_id()) if config.hosted else config.datasets_dir


def owner() -> str | None:
    """The owner tag for new runs and the filter for listing them (hosted mode only)."""
    return session_id() if settings().hosted else None


def disk_usage() -> DiskUsage | None:
    """This visitor's disk use against their budget (hosted mode only)."""
    config = settings()
    if config.max_session_mb is None:
        return None
    return session_usage(config.cache_dir, store(), session_id(), config.max_session_mb, datasets=datasets_dir())


def dataset() -> DatasetChoice:
    """The session's dataset; the built-in sample until the user picks another on the Data page."""
    restore_setting("dataset")
    if "dataset" not in st.session_state:
        from cnnlab.data.sample import sample_dir

        with st.spinner("Generating the built-in sample dataset (first time only)..."):
            st.session_state.dataset = DatasetChoice(str(sample_dir(settings().cache_dir)), "Built-in sample (shapes)")
    return st.session_state.dataset


def session_busy() -> bool:
    """Whether this person (everyone, when not hosted) has a training or sweep queued or running in
    any tab: one at a time."""
    return any(not job.done for job in jobs.visible_jobs(owner()))


def watched_job(kind: str = "training") -> Job | None:
    """The job a page shows: for a training, the run picked on the Runs page; else this person's
    newest queued or running one (a reloaded tab finds it again); else the one this session started."""
    key = "job" if kind == "training" else "sweep_job"
    picked = jobs.find_job(st.session_state.get("watch", "")) if kind == "training" else None
    active = [job for job in jobs.visible_jobs(owner(), kind) if not job.done]
    if picked is not None and picked.owner == owner():
        st.session_state[key] = picked
    elif active:
        st.session_state[key] = active[0]
    return st.session_state.get(key)


def watch(job: Job) -> None:
    """Show this training on the Train page (the Runs page's Watch, Resume and Train more)."""
    st.session_state.watch = job.key
    st.session_state.job = job


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
