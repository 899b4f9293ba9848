"""What `streamlit_app.py` does on every rerun before the page runs: Keras session, clean-up."""

from __future__ import annotations

import threading
import time
from typing import Any

import streamlit as st

from cnnlab import hosting
from cnnlab_ui.loaders import forget_models
from cnnlab_ui.state import session_id, settings, store


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
    """Mark a hosted session alive; at start-up and then once a minute, remove what killed work left
    behind, keep the decoded-image cache within its budget and (hosted) remove what ended sessions left."""
    config = settings()
    if config.hosted:
        hosting.touch_session(config.cache_dir, session_id())
    last = _last_cleanup()
    if time.time() - last["at"] > 60 and last["lock"].acquire(blocking=False):
        try:
            last["at"] = time.time()
            hosting.tidy(config.cache_dir, config.models_dir, config.max_cache_mb)
            if config.hosted and hosting.cleanup_ended_sessions(config.cache_dir, store()):
                forget_models()  # the ended sessions' runs are gone; their cached models go too
        finally:
            last["lock"].release()
