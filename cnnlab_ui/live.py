"""The live view of a background job (a training or a sweep): redrawn every second, with Stop."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from cnnlab import hosting
from cnnlab.jobs import Job
from cnnlab_ui.state import session_id, settings


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
