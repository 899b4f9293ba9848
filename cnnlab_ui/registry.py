"""The Runs page's "Register" section: the selected run registered as a version of a named model
(MLflow's registry: the team's tracking server when set, else SQLite in the models folder), a
model's versions listed, and an alias moved to another version."""

from __future__ import annotations

import importlib.util
from typing import Any

import pandas as pd
import streamlit as st

from cnnlab.runs.store import Run
from cnnlab.settings import REGISTRY_FILE
from cnnlab.team.tracking import TrackingConfig
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import settings

COLUMNS = ["version", "aliases", "run_id", "run_name", "dataset", "dataset_version", "test_accuracy", "created"]


@st.cache_data(ttl=15, show_spinner=False)
def versions(registry: TrackingConfig, name: str) -> list[dict[str, Any]]:
    """The model's versions, newest first (cached for 15 s; cleared by a registration or an alias move here)."""
    from cnnlab.deploy.registry import model_versions

    return model_versions(registry, name)


def registry_section(run: Run) -> None:
    """The whole section, in an expander, for the run chosen under "Manage a run"."""
    config = settings()
    with st.expander("Register in the model registry (MLflow)"):
        if config.hosted:
            st.caption("The model registry is for a local or team installation; download the model instead.")
            return
        if importlib.util.find_spec("mlflow") is None:
            st.info("The model registry needs MLflow, which this installation lacks: `pip install mlflow==3.17.2`.")
            return
        where = "the team's tracking server" if config.tracking_uri else "the local registry in the models folder"
        st.caption(
            f"Each registration is a new version of the named model in {where}; an alias (such as `champion`) "
            "names the version to use: `python -m cnnlab serve models:/NAME@ALIAS` serves it."
        )
        registry = config.registry
        cols = st.columns(2)
        name = cols[0].text_input("Model name", key="registry-name", placeholder="e.g. shapes-classifier").strip()
        alias = cols[1].text_input("Alias (optional)", "champion", key="registry-alias").strip()
        completed = run.status == "completed" and run.model_path.is_file()
        if st.button("Register this run", icon=":material/approval:", disabled=not (name and completed)):
            from cnnlab.deploy.registry import register_run

            try:
                with st.spinner("Saving the model for MLflow and registering it..."):
                    row = register_run(registry, run, name, alias or None, cache=config.cache_dir)
                versions.clear()
                named = f" as @{alias}" if alias else ""
                st.success(f"Registered run {run.name!r} as {name} version {row['version']}{named}.")
            except ValueError as exc:
                show_error(exc)
        if not completed:
            st.caption("Only a completed run with a saved model can be registered.")
        if name:
            _versions_and_alias(registry, name, local_missing=not config.tracking_uri and not _local_registry(config))


def _local_registry(config) -> bool:
    return (config.models_dir / REGISTRY_FILE).is_file()


def _versions_and_alias(registry: TrackingConfig, name: str, local_missing: bool) -> None:
    """The model's versions as a table, and a form to point an alias at one of them."""
    from cnnlab.deploy.registry import set_alias

    if local_missing:  # never make an empty registry just by looking
        st.caption(f"No model named {name!r} is registered yet.")
        return
    try:
        rows = versions(registry, name)
    except ValueError as exc:
        if "No registered model named" in str(exc):
            st.caption(f"No model named {name!r} is registered yet.")
        else:
            show_error(exc)
        return
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["aliases"] = table["aliases"].map(lambda a: ", ".join(f"@{x}" for x in a))
    table["created"] = pd.to_datetime(table["created"], unit="ms", utc=True)
    st.dataframe(table, hide_index=True)
    cols = st.columns(2)
    alias = cols[0].text_input("Alias to move", "champion", key="registry-move-alias").strip()
    version = cols[1].selectbox("To version", [r["version"] for r in rows], key="registry-move-version")
    if st.button("Point the alias at this version", icon=":material/label:", disabled=not alias):
        try:
            set_alias(registry, name, alias, int(version))
            versions.clear()
            st.rerun()
        except ValueError as exc:
            show_error(exc)
