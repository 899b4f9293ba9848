"""Train: configure the CNN in the sidebar, see its plan, start training, watch it learn live, stop at any time."""

import pandas as pd
import streamlit as st

from cnnlab import charts
from cnnlab.server import jobs
from cnnlab_ui.datasets import chosen_version, version_data
from cnnlab_ui.live import job_figure, live_job
from cnnlab_ui.loaders import scan
from cnnlab_ui.messages import show_error
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import session_busy, settings, watched_job
from cnnlab_ui.training import augmented_images, learning_rate_curve, plan_training, show_plan, start_training
from cnnlab_ui.widgets import model_config_sidebar, train_config_sidebar, use_learning_rate

require_app_shell()

st.title("Train")
try:
    model_config = model_config_sidebar(allow_weights_file=not settings().hosted)
    train_config = train_config_sidebar(backbone=model_config.backbone)
except ValueError as exc:
    show_error(exc)
    st.stop()

picked = chosen_version()
chosen, number, report = picked
st.caption(f"Dataset: {picked.description}. Change it on the Data page.")

try:
    plan = plan_training(chosen.path, model_config, train_config, number)
    plan.check()
except ValueError as exc:
    show_error(exc)
    st.stop()
show_plan(plan)

with st.expander("Augmentation preview: what training sees", expanded=True):
    pick = st.number_input(f"Training image (1 to {len(report.files)})", 1, len(report.files), 1, key="preview_image")
    rel = report.files[pick - 1]
    seed = st.session_state.get("preview_seed", 0)
    try:
        shown = augmented_images(model_config, str(report.path_of(rel)), seed)
    except ValueError as exc:
        show_error(exc)
    else:
        captions = [f"original: {rel}", *[f"augmented {i}" for i in range(1, 9)]]
        for col, image, caption in zip(st.columns(9), shown, captions, strict=True):
            col.image(image.squeeze(), caption=caption, width="stretch", clamp=True)
    if st.button("New random draws", icon=":material/casino:"):
        st.session_state.preview_seed = seed + 1
        st.rerun()


with st.expander("Learning-rate finder", expanded="lr_found" in st.session_state):
    st.caption("A short run whose rate grows from 1e-6 to 1 batch by batch; the loss curve shows which rates learn.")
    if st.button("Find a learning rate", disabled=session_busy(), icon=":material/search:"):
        st.session_state.lr_found = (chosen.path, model_config, train_config, number)
    if "lr_found" in st.session_state:
        try:
            found = learning_rate_curve(*st.session_state.lr_found)
        except ValueError as exc:
            show_error(exc)
        else:
            rate = found["suggested_learning_rate"]
            st.plotly_chart(
                charts.lr_find_figure(found["learning_rates"], found["smoothed_losses"], rate), key="lr-find"
            )
            st.button(
                f"Use the suggested rate ({rate:.2g})",
                on_click=use_learning_rate,
                args=(rate,),
                icon=":material/check:",
            )

job = watched_job()  # after a reload too: jobs belong to the server, not to the browser session
if st.button(
    "Start training", key="start-training", type="primary", disabled=session_busy(), icon=":material/play_arrow:"
):
    try:
        job = start_training(plan)
    except ValueError as exc:
        show_error(exc)
    else:
        st.session_state.job = job
        st.session_state.pop("watch", None)
        st.rerun()


def progress_panel(job: jobs.Job) -> None:
    """Progress bar, timing and the live training curves."""
    st.caption(f"Run {job.run_id}")
    if job.status == "queued":
        st.info(job.message or "Waiting to start...", icon=":material/hourglass_top:")
        return
    p = job.progress
    if "download_bytes" in p:
        st.info(f"Downloading the ImageNet weights: {p['download_bytes'] / 2**20:.1f} MB so far...")
        return
    fraction = 1.0 if job.done and job.status == "completed" else p.get("fraction", 0.0)
    detail = (
        f"Epoch {p.get('epoch', 1)} of {job.info['epochs']}, batch {p.get('batch', 0)} of {p.get('steps', '?')}"
        if p
        else "Preparing data..."
    )
    if job.history:  # the charts redraw every few epochs at most; this line says where the last one ended
        last = job.history[-1]
        accuracy = last.get("val_accuracy", last.get("accuracy"))
        detail += f" · epoch {last['epoch']}: {'validation ' if 'val_accuracy' in last else ''}accuracy {accuracy:.1%}"
    st.progress(min(fraction, 1.0), text=f"{detail} · elapsed {job.elapsed:.0f}s · ETA {p.get('eta_s', 0):.0f}s")
    figure = job_figure(job, "curves", lambda: charts.training_curves_figure(job.history))
    st.plotly_chart(figure, key=f"curves-{job.id}")
    if job.message and not job.done:  # once done, the outcome below says what happened
        st.caption(job.message)


def unreadable_panel(run) -> None:
    """The files left out of a run because their image data failed to decode, and why."""
    dataset = run.record.dataset
    if not dataset.num_unreadable:
        return
    scan.clear(chosen.path)  # so the Data page lists them among the skipped files from now on
    version_data.clear()
    st.warning(
        f"{dataset.num_unreadable} file(s) could not be decoded (truncated or corrupt image data) and were left "
        "out of this training; the Data page lists them with the skipped files. Replace or remove them.",
        icon=":material/broken_image:",
    )
    with st.expander("Files left out"):
        st.dataframe(pd.DataFrame(dataset.unreadable), hide_index=True)


if job is None:
    st.info("Set the model and training options in the sidebar, then press **Start training**.")
elif not job.done:
    live_job(job, "Stop", progress_panel)
else:
    progress_panel(job)
    if job.result is not None:
        unreadable_panel(job.result)
    if job.status == "failed":
        show_error(ValueError(job.error or "Training failed."))
    elif job.result is not None and not job.result.model_path.exists():
        st.warning(
            f"Run **{job.result.name}** stopped before its first epoch ended, so no model was saved and nothing "
            "was selected on the Evaluate and Predict pages; press **Start training** to train again.",
            icon=":material/warning:",
        )
    elif job.result is not None:
        run = job.result
        metrics = run.record.metrics
        st.success(
            f"Run **{run.name}** {run.status} after {len(run.history)} epochs in {run.record.duration_s or 0:.0f}s. It is selected on the Evaluate and Predict pages.",
            icon=":material/check_circle:",
        )
        if run.record.team is not None and not run.record.team.published:
            st.warning(
                "The team tracking server could not be reached, so this run is not shared yet; press **Sync** on "
                "the Runs page once the server is back.",
                icon=":material/cloud_off:",
            )
        cols = st.columns(5)
        cols[0].metric("Best validation accuracy", f"{metrics.best_val_accuracy or 0:.1%}")
        for col, value, label in (
            (cols[1], metrics.test_accuracy, "Test accuracy"),
            (cols[2], metrics.test_balanced_accuracy, "Balanced accuracy"),
            (cols[3], metrics.test_macro_f1, "Macro F1"),
        ):
            col.metric(label, f"{value:.1%}" if value is not None else "n/a")
        cols[4].metric("Best epoch", run.record.best_epoch or 0)
