"""The live view of a background job (a training or a sweep): redrawn every three seconds, with Stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from cnnlab.server import hosting
from cnnlab.server.jobs import Job
from cnnlab_ui.state import session_id, settings

# Seconds between two polls of a running job, and at least between two redraws of its charts.
POLL_S = 3.0
REDRAW_EVERY_S = 10.0


def job_figure(job: Job, name: str, build: Callable[[], Any]) -> Any:
    """A figure of a live job's results, built again when the job has new epochs or items: at
    once for the first ones and when the job ends, otherwise at most every `REDRAW_EVERY_S`.

    Why so sparingly: a rebuilt figure reaches the browser as a new chart, which Streamlit mounts
    afresh and Plotly draws from scratch (0.05-0.25 CPU s in headless Chromium), and the browser
    shares the CPU with the training when both run on one machine: with the sample's 3-second
    epochs on 2 cores, redrawing every epoch kept the app's training at 0.90-0.93 of the command
    line's speed (bench/README.md). Building a figure also takes 50-150 ms in the server, which
    the memo saves on the polls where nothing changed.
    """
    memo = st.session_state.get("job_figures")
    if memo is None or memo["job"] != job.id:
        memo = st.session_state.job_figures = {"job": job.id}
    version, now = (len(job.history), len(job.items)), time.monotonic()
    drawn = memo.get(name)
    if drawn is None or (drawn[0] != version and (job.done or not any(drawn[0]) or now - drawn[1] >= REDRAW_EVERY_S)):
        memo[name] = drawn = (version, now, build())
    return drawn[2]


@st.fragment(run_every=POLL_S)
def live_job(job: Job, stop_label: str, panel: Callable[[Job], None]) -> None:
    """Redraw `panel(job)` every `POLL_S` seconds with a Stop button, and the whole page once the job ends.

    The job's thread never touches Streamlit; this fragment polls the state it keeps. Every poll
    costs the training CPU in the browser even when only a progress bar moved (its animation is
    drawn frame by frame), so the page polls no more often than a person needs; a click on Stop
    reruns it at once.
    """
    config = settings()
    if config.hosted:  # a visitor watching a long training is still here
        hosting.touch_session(config.cache_dir, session_id())
    if st.button(stop_label, key="stop-job", icon=":material/stop:", disabled=job.done):
        job.stop()
    panel(job)
    if job.done:
        st.rerun(scope="app")
