"""Evaluate: how a run does on its held-out test images, and where it goes wrong."""

import streamlit as st

from cnnlab import charts
from cnnlab.evaluate import Evaluation, evaluate_run
from cnnlab_ui.gallery import thumbnails
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import run_picker
from cnnlab_ui.state import settings, store

st.title("Evaluate")
run = run_picker()


@st.cache_data(show_spinner="Evaluating on the test split...", max_entries=8)
def evaluation_of(run_id: str, model_mtime: float) -> Evaluation:
    """The run's test evaluation (saved at the end of training, so usually instant)."""
    config = settings()
    return evaluate_run(store().get(run_id), cache=config.cache_dir, max_cache_mb=config.max_cache_mb)


try:
    evaluation = evaluation_of(run.id, run.model_path.stat().st_mtime)
except ValueError as exc:
    show_error(exc)
    st.stop()
root = run.dataset_root(settings().cache_dir)
if evaluation.predictions.empty:
    st.info(
        "This run has no test images: its classes are too small for a test split at the chosen fraction. "
        "Use more images per class or a larger test split on the Train page."
    )
    st.stop()

cols = st.columns(4)
cols[0].metric("Test accuracy", f"{evaluation.accuracy:.1%}")
cols[1].metric("Test loss", f"{evaluation.loss:.4f}")
cols[2].metric("Test images", len(evaluation.predictions))
cols[3].metric("ROC AUC", f"{evaluation.roc_auc:.3f}" if evaluation.roc_auc is not None else "n/a (multi-class)")

left, right = st.columns([3, 2])
with left:
    event = st.plotly_chart(
        charts.confusion_figure(evaluation.confusion, list(evaluation.class_names)),
        on_select="rerun",
        selection_mode="points",
        key="confusion",
        width="content",
    )
with right:
    st.subheader("Per class")
    st.dataframe(
        evaluation.per_class,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")},
    )

points = event.selection.points if event and event.selection else []
if points:
    # Cells are in row-major order (charts.confusion_figure).
    true_index, predicted_index = divmod(int(points[0]["point_index"]), len(evaluation.class_names))
    true_label, predicted_label = evaluation.class_names[true_index], evaluation.class_names[predicted_index]
    cell = evaluation.cell(true_label, predicted_label)
    st.subheader(f"True {true_label}, predicted {predicted_label}: {len(cell)} images")
    thumbnails(root, cell["path"].tolist(), [f"{c:.0%}" for c in cell["confidence"]])

st.subheader("Most confident mistakes")
mistakes = evaluation.most_confident_mistakes()
if mistakes.empty:
    st.success("No test image was misclassified.")
else:
    captions = [
        f"{t} → {p} ({c:.0%})"
        for t, p, c in zip(mistakes["true_label"], mistakes["predicted_label"], mistakes["confidence"], strict=True)
    ]
    thumbnails(root, mistakes["path"].tolist(), captions, columns=6)

st.subheader("Training curves")
left, right = st.columns(2)
left.plotly_chart(charts.history_figure(run.history, "loss"), key="eval-loss")
right.plotly_chart(charts.history_figure(run.history, "accuracy"), key="eval-acc")
