"""Cached loaders shared by the pages: dataset scans (per session data) and models (per server)."""

from __future__ import annotations

import streamlit as st

from cnnlab import data
from cnnlab.runs.store import Run
from cnnlab_ui.state import settings


@st.cache_data(ttl=60, show_spinner="Scanning the dataset...")
def scan(path: str) -> data.DatasetReport:
    """Scan a dataset folder (cached briefly; the scanner has its own on-disk cache too)."""
    return data.scan(path, cache=settings().cache_dir)


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def load_model(model_path: str, modified: float, _run: Run):
    """One loaded Keras model per run file, shared by all sessions; `modified` invalidates it."""
    return _run.load_model()


def run_model(run: Run):
    """The run's model from the shared cache; a missing or unreadable file is `Run.load_model`'s ValueError."""
    modified = run.model_path.stat().st_mtime if run.model_path.exists() else 0.0
    return load_model(str(run.model_path), modified, run)


def forget_models() -> None:
    """Release cached models (after a run is deleted)."""
    load_model.clear()
