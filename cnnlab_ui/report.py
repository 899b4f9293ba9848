"""The Evaluate page's one-file report: the model card's two fields and a download button."""

from __future__ import annotations

import streamlit as st

from cnnlab.runs.store import Run
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import settings


def report_section(run: Run) -> None:
    """Intended use and limitations in, one self-contained HTML file out (built when asked)."""
    st.subheader("One-file report")
    st.caption(
        "One HTML file that opens offline in any browser: the dataset, every setting, the curves, the test results, "
        "likely label errors and the export checks, with your model card fields."
    )
    intended_use = st.text_area("Intended use", key="report-intended-use", placeholder="What is this model for?")
    limitations = st.text_area("Limitations", key="report-limitations", placeholder="Where should it not be used?")
    built = st.session_state.get("report-built")
    fields = (run.id, intended_use, limitations)
    if st.button("Build the report", icon=":material/description:", key="build-report"):
        from cnnlab.deploy.report import report_html

        config = settings()
        try:
            with st.spinner("Writing the report..."):
                text = report_html(
                    run,
                    cache=config.cache_dir,
                    intended_use=intended_use,
                    limitations=limitations,
                    max_cache_mb=config.max_cache_mb,
                )
        except ValueError as exc:
            show_error(exc)
            return
        built = st.session_state["report-built"] = (fields, text.encode("utf-8"))
    if built is not None and built[0] == fields:
        st.download_button(
            "Download the report (HTML)",
            built[1],
            f"{run.name}-report.html",
            mime="text/html",
            icon=":material/download:",
            key="download-report",
        )
