"""Runs: every training, compared side by side and on shared test images; rename, delete, download and export."""

import pandas as pd
import streamlit as st

from cnnlab import charts
from cnnlab.server import jobs
from cnnlab.training.resuming import RESUMABLE
from cnnlab_ui.compare import compare_section
from cnnlab_ui.exports import benchmark_section, check_summary, quantize_choice
from cnnlab_ui.loaders import forget_models
from cnnlab_ui.messages import show_error
from cnnlab_ui.registry import registry_section
from cnnlab_ui.runs import compare_curves, describe_run, list_runs, parameters_chart, runs_table
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import job_settings, owner, select_run, session_busy, settings, store, watch
from cnnlab_ui.team import team_view


def open_in_evaluate(run) -> None:
    select_run(run.id)
    st.switch_page("pages/evaluate.py")


require_app_shell()

st.title("Runs")
tracking = settings().tracking
if tracking is not None:
    if st.toggle("Team view: every run of the team, from every machine", key="team-view"):
        team_view(tracking, open_in_evaluate)
        st.stop()
    if st.button("Sync", icon=":material/cloud_sync:", help="publish the runs not yet on the team server"):
        from cnnlab.team.tracking import sync_runs

        try:
            with st.spinner("Publishing runs to the team server..."):
                synced = sync_runs(tracking, store())
            st.success(f"Published {len(synced['published'])} run(s); {synced['up_to_date']} were already published.")
            for failure in synced["failed"]:
                st.warning(f"Run {failure['id']} was not published: {failure['error']}")
        except ValueError as exc:
            show_error(exc)
all_runs = list_runs()
if not all_runs:
    st.info("No runs yet. Train one on the **Train** page.")
    st.stop()

studies = sorted({r.record.sweep.study for r in all_runs if r.record.sweep})
study = (
    st.selectbox(
        "Show", [None, *studies], format_func=lambda s: "All runs" if s is None else f"Sweep: {s}", key="runs-filter"
    )
    if studies
    else None
)
runs = [r for r in all_runs if study is None or (r.record.sweep is not None and r.record.sweep.study == study)]
table = pd.DataFrame([r.summary() for r in runs])

st.caption("Select rows to compare their learning curves.")
by_id = {r.id: r for r in runs}
chosen = [by_id[i] for i in runs_table(table, "runs-table")] or runs[:5]
compare_curves({r.id: r.epoch_rows() for r in chosen}, {r.id: r.name for r in chosen}, "cmp")
parameters_chart(table, "parcoords")
if study:
    from cnnlab.sweep import study_importances

    importances = study_importances(study, store())
    if importances:
        st.plotly_chart(charts.importance_figure(importances), key="importance")
compare_section(runs)

st.subheader("Manage a run")
run = by_id[st.selectbox("Run", list(by_id), format_func=lambda i: describe_run(by_id[i]), key="manage-run")]
cols = st.columns(3)
if cols[0].button("Open in Evaluate and Predict", icon=":material/open_in_new:"):
    open_in_evaluate(run)
if run.model_path.exists():
    cols[1].download_button(
        "Download .keras model", run.model_path.read_bytes(), f"{run.name}.keras", icon=":material/download:"
    )


def start_and_watch(run_id: str, more_epochs: int | None = None) -> None:
    """Resume the run (or train it `more_epochs` more as a new run) and show it on the Train page."""
    try:
        job = jobs.resume_job(run_id, job_settings(), more_epochs=more_epochs).start()
    except ValueError as exc:
        show_error(exc)
        return
    watch(job)
    st.switch_page("pages/train.py")


job = jobs.find_job(run.id)
if run.status == "running" and job is not None and job.owner == owner():
    if st.button("Watch it train", icon=":material/monitoring:"):
        watch(job)
        st.switch_page("pages/train.py")
elif run.status == "running":
    st.caption("Training in another process (the command line, or another server); its curves grow as epochs end.")
elif run.status in RESUMABLE and not run.is_demo:
    st.caption(f"This run is {run.status}: resuming trains on from its last complete epoch, as if it never stopped.")
    if st.button("Resume", icon=":material/play_arrow:", disabled=session_busy()):
        start_and_watch(run.id)
elif run.status == "completed" and run.has_checkpoint:
    more = st.number_input("More epochs", 1, 200, 5, key="more-epochs")
    if st.button(f"Train {more} more epoch{'s' * (more > 1)}", icon=":material/add:", disabled=session_busy()):
        start_and_watch(run.id, int(more))

with st.expander("Export (Keras, SavedModel, TensorFlow Lite, ONNX)"):
    from cnnlab.deploy.export import EXPORT_FORMATS, export_archive, export_run, onnx_available, read_export

    fmt = st.radio("Format", EXPORT_FORMATS, horizontal=True)
    quantize = quantize_choice(fmt)
    missing_onnx = fmt == "onnx" and not onnx_available()
    if missing_onnx:
        st.info(
            "ONNX export needs tf2onnx, onnx and onnxruntime, which this installation lacks: `pip install 'cnnlab[onnx]'`."
        )
    if st.button("Export and check", disabled=missing_onnx):
        try:
            with st.spinner("Exporting and checking predictions against the Keras model..."):
                folder = export_run(run, fmt, cache=settings().cache_dir, quantize=quantize)
            st.success(
                f"Exported to {folder if not settings().hosted else folder.name}; its predictions match the Keras "
                f"model ({check_summary(read_export(folder))})."
            )
            st.download_button(
                f"Download the {fmt} export (zip)",
                export_archive(folder),
                f"{run.name}-{fmt}.zip",
                icon=":material/download:",
            )
        except ValueError as exc:
            show_error(exc)
    benchmark_section(run)

registry_section(run)

with st.expander("Rename or delete", expanded=False):
    locked = run.is_demo or run.status == "running"
    if locked:
        st.caption("The demo model and runs still training cannot be renamed or deleted.")
    new_name = st.text_input("New name", value=run.name, disabled=locked)
    if st.button("Rename", disabled=locked) and new_name != run.name:
        try:
            store().rename(run.id, new_name)
            st.rerun()
        except ValueError as exc:
            show_error(exc)
    sure = st.checkbox(f"Yes, delete '{run.name}' and its model for good", disabled=locked)
    if st.button("Delete run", type="primary", disabled=not sure or locked):
        try:
            store().delete(run.id)
        except ValueError as exc:
            show_error(exc)
            st.stop()
        forget_models()
        st.session_state.pop("run_id", None)
        st.rerun()
