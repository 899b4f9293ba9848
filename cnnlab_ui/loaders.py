"""Cached loaders shared by the pages: dataset scans (per session data) and models (per server)."""

from __future__ import annotations

import streamlit as st

from cnnlab import data
from cnnlab.runs import Run
from cnnlab_ui.state import settings


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
