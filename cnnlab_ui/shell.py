"""The app shell: what `streamlit_app.py` does on every rerun (error display, Keras session,
clean-up, the page run with the server's warm-up around it), and the guard each page calls first
so that it always runs inside `streamlit_app.py`."""

from __future__ import annotations

import runpy
import threading
import time
from typing import Any

import streamlit as st
from streamlit.navigation.page import StreamlitPage
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cnnlab.server import hosting, jobs, warmup
from cnnlab_ui.loaders import forget_models
from cnnlab_ui.state import datasets_dir, remember_settings, remember_visitor, server_store, session_id, settings

# What a hosted visitor sees of an unexpected error: its type and Streamlit's "details are in the
# logs" line, never its message or traceback, which name the server's files and folders.
HOSTED_ERROR_DETAILS = "type"


def hide_error_details() -> None:
    """In hosted mode, show visitors no message or traceback of an unexpected error; call it before anything else.

    Locally the option is left as it is: Streamlit's default ("full") suits a person running the
    app on their own machine. The server log keeps the whole traceback either way, and a hosting
    operator's own stricter `client.showErrorDetails` ("none") is kept.
    """
    if settings().hosted and st.get_option("client.showErrorDetails") not in (HOSTED_ERROR_DETAILS, "none"):
        st.set_option("client.showErrorDetails", HOSTED_ERROR_DETAILS)


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


@st.cache_resource
def _last_cleanup() -> dict[str, Any]:
    """Process-wide time of the last clean-up (so it runs at start-up, then at most once a minute) and its lock."""
    return {"at": 0.0, "lock": threading.Lock()}


def housekeeping() -> None:
    """Keep this person's id (in their browser) and settings for a reload; mark a hosted visitor alive;
    at start-up and then once a minute, remove what killed work left behind, keep the decoded-image
    cache within its budget and (hosted) remove what ended visitors left."""
    remember_visitor()
    remember_settings()
    config = settings()
    if config.hosted:
        hosting.touch_session(config.cache_dir, session_id())
    last = _last_cleanup()
    if time.time() - last["at"] > 60 and last["lock"].acquire(blocking=False):
        try:
            last["at"] = time.time()
            hosting.tidy(config.cache_dir, config.models_dir, config.max_cache_mb)
            if config.hosted and hosting.cleanup_ended_sessions(
                config.cache_dir, server_store(), busy=jobs.busy_owners(), datasets=config.datasets_dir
            ):
                forget_models()  # the ended sessions' runs are gone; their cached models go too
        finally:
            last["lock"].release()


def run_page(page: StreamlitPage) -> None:
    """Run the page `st.navigation` chose, then start the server's warm-up (`cnnlab.server.warmup`) once per
    server process, unless `CNNLAB_WARM_UP` turns it off.

    The warm-up starts after the first page run, whose page the browser has been sent by then, so it
    never delays a first page; it then generates the sample and imports TensorFlow while the visitor
    reads. The default page (Home) imports no TensorFlow and runs at once; any other page first waits
    for a running warm-up rather than doing the same work beside it (see `warmup.wait_for_warm_up`).
    """
    future = warmup.warm_up_future()
    if page.url_path != "" and future is not None and not future.done():
        with st.spinner("Getting the server ready (first visit only)..."):
            warmup.wait_for_warm_up()
    try:
        page.run()
    finally:  # also after a page that ended with st.stop or st.rerun
        config = settings()
        if config.warm_up and future is None:
            # Hosted, each visitor has their own dataset versions: only the scan of the sample is shared.
            warmup.start_warm_up(config.cache_dir, config.models_dir, None if config.hosted else datasets_dir())


def require_app_shell() -> None:
    """Run the page inside `streamlit_app.py` when Streamlit ran it on its own; call it first in a page.

    Streamlit (1.67) sees a `pages/` folder beside the entry script and, until some session has
    called `st.navigation`, serves a page URL by running that file alone (its legacy multipage
    mode): no page config, no navigation, no per-rerun set-up. `st.navigation` turns that mode off
    for the whole server. Here we turn it off the same way, run the shell in this same script run
    (so a click that started it is not lost), which runs this page inside it (a page's id is its URL
    path in both modes), and end the stand-alone run.
    """
    if not PagesManager.uses_pages_directory:
        return
    PagesManager.uses_pages_directory = False
    ctx = get_script_run_ctx()
    if ctx is None:  # not inside a Streamlit script run: nothing to hand over to
        return
    runpy.run_path(str(ctx.pages_manager.main_script_path), run_name="__main__")
    st.stop()
