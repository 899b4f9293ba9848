"""The live view of a background job (a training or a sweep): redrawn every two seconds, with Stop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from cnnlab import hosting
from cnnlab.jobs import Job
from cnnlab_ui.state import session_id, settings


def job_figure(job: Job, name: str, build: Callable[[], Any]) -> Any:
    """A figure of a live job's results, built again only when the job has new epochs or items.

    The live panel redraws every poll while the job shares the interpreter with it, and building
    a Plotly figure takes 50-150 ms here; most polls nothing it shows has changed.
    """
    memo = st.session_state.get("job_figures")
    if memo is None or memo["job"] != job.id:
        memo = st.session_state.job_figures = {"job": job.id}
    version = (len(job.history), len(job.items))
    if name not in memo or memo[name][0] != version:
        memo[name] = (version, build())
    return memo[name][1]


@st.fragment(run_every=2.0)
def live_job(job: Job, stop_label: str, panel: Callable[[Job], None]) -> None:
    """Redraw `panel(job)` every two seconds with a Stop button, and the whole page once the job ends.

    The job's thread never touches Streamlit; this fragment polls the state it keeps. Every poll
    costs the training CPU in the server and in the browser (bench_server.py: the browser's share
    fell by a fifth from one poll a second to one every two); a click on Stop reruns it at once.
    """
    config = settings()
    if config.hosted:  # a visitor watching a long training is still here
        hosting.touch_session(config.cache_dir, session_id())
    if st.button(stop_label, key="stop-job", icon=":material/stop:", disabled=job.done):
        job.stop()
    panel(job)
    if job.done:
        st.rerun(scope="app")
