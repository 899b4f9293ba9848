"""Train: configure the CNN in the sidebar, start training, watch it learn live, stop at any time."""

import pandas as pd
import streamlit as st

from cnnlab import charts, hosting, jobs, quota
from cnnlab.model import check_trainable
from cnnlab_ui.live import live_job
from cnnlab_ui.loaders import scan
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import dataset, disk_usage, owner, session_busy, session_id, settings, store
from cnnlab_ui.widgets import model_config_sidebar, train_config_sidebar

st.title("Train")
try:
    model_config = model_config_sidebar()
    train_config = train_config_sidebar()
except ValueError as exc:
    show_error(exc)
    st.stop()

chosen = dataset()
try:
    report = scan(chosen.path)
except ValueError as exc:
    show_error(exc)
    st.info("Choose another dataset on the **Data** page.")
    st.stop()
st.caption(
    f"Dataset: **{chosen.label}** with {len(report.files)} images in {report.num_classes} classes ({', '.join(report.class_names)}). Change it on the Data page."
)


@st.cache_data(show_spinner="Building the model...")
def summary(config: dict, num_classes: int) -> tuple[pd.DataFrame, int]:
    """The model's layers for this config (built, never trained)."""
    from cnnlab.model import ModelConfig, build_model, model_summary

    rows = model_summary(build_model(ModelConfig.from_dict(config), num_classes))
    return pd.DataFrame(rows), sum(r["params"] for r in rows)


try:
    memory_mb = check_trainable(model_config, report.num_classes, train_config.batch_size, settings().max_training_mb)
    layers, params = summary(model_config.to_dict(), report.num_classes)
except ValueError as exc:
    show_error(exc)
    st.stop()
with st.expander(
    f"Model summary: {len(layers)} layers, {params:,} parameters, about {memory_mb:,.0f} MB per training step"
):
    st.dataframe(layers, hide_index=True)


def check_disk_budget() -> None:
    """Refuse (hosted mode) a training that would take this visitor over their disk budget."""
    if (usage := disk_usage()) is not None:
        cache = settings().cache_dir
        needed = quota.training_bytes(report, model_config, params, cache, hosting.uploads_dir(cache, session_id()))
        quota.check_room(usage, needed, "This training")


job = st.session_state.get("job")
if st.button("Start training", type="primary", disabled=session_busy(), icon=":material/play_arrow:"):
    config = settings()
    try:
        check_disk_budget()
    except ValueError as exc:
        show_error(exc)
    else:
        job = jobs.training_job(
            chosen.path,
            model_config,
            train_config,
            store=store(),
            cache=config.cache_dir,
            max_training_mb=config.max_training_mb,
            max_cache_mb=config.max_cache_mb,
            limit=config.max_concurrent_trainings,
            tags={"owner": owner()} if owner() else None,
        )
        st.session_state.job = job.start()
        st.rerun()


def progress_panel(job: jobs.Job) -> None:
    """Progress bar, timing and the two live charts."""
    if job.status == "queued":
        st.info(job.message or "Waiting to start...", icon=":material/hourglass_top:")
        return
    p = job.progress
    fraction = 1.0 if job.done and job.status == "completed" else p.get("fraction", 0.0)
    detail = (
        f"Epoch {p.get('epoch', 1)} of {job.info['epochs']}, batch {p.get('batch', 0)} of {p.get('steps', '?')}"
        if p
        else "Preparing data..."
    )
    st.progress(min(fraction, 1.0), text=f"{detail} · elapsed {job.elapsed:.0f}s · ETA {p.get('eta_s', 0):.0f}s")
    left, right = st.columns(2)
    left.plotly_chart(charts.history_figure(job.history, "loss"), key=f"loss-{job.id}")
    right.plotly_chart(charts.history_figure(job.history, "accuracy"), key=f"acc-{job.id}")
    if job.message and not job.done:  # once done, the outcome below says what happened
        st.caption(job.message)


if job is None:
    st.info("Set the model and training options in the sidebar, then press **Start training**.")
elif not job.done:
    live_job(job, "Stop", progress_panel)
else:
    progress_panel(job)
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
        metrics = run.record.get("metrics", {})
        st.success(
            f"Run **{run.name}** {run.status} after {len(run.history)} epochs in {run.record.get('duration_s', 0):.0f}s. It is selected on the Evaluate and Predict pages.",
            icon=":material/check_circle:",
        )
        cols = st.columns(3)
        cols[0].metric("Best validation accuracy", f"{metrics.get('best_val_accuracy', 0):.1%}")
        cols[1].metric(
            "Test accuracy", f"{metrics.get('test_accuracy', 0):.1%}" if "test_accuracy" in metrics else "n/a"
        )
        cols[2].metric("Best epoch", run.record.get("best_epoch", 0))
