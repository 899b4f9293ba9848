"""Evaluate: how a run does on its held-out test images, where it goes wrong, and fixing the labels it doubts."""

from functools import partial

import streamlit as st

from cnnlab import charts
from cnnlab.analysis.evaluate import Evaluation, evaluate_run, mistake_captions, reported_confidence
from cnnlab_ui.calibration import calibration_section, roc_section
from cnnlab_ui.data_map import map_section
from cnnlab_ui.fixes import gallery
from cnnlab_ui.label_issues import label_issues_section
from cnnlab_ui.messages import show_error
from cnnlab_ui.novelty import separation_section
from cnnlab_ui.report import report_section
from cnnlab_ui.runs import get_run, run_picker, run_version
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import settings
from cnnlab_ui.tta import tta_section

require_app_shell()

st.title("Evaluate")
run = run_picker()


@st.cache_data(show_spinner="Evaluating on the test split...", max_entries=8)
def evaluation_of(run_id: str, model_mtime: float) -> Evaluation:
    """The run's test evaluation (saved at the end of training, so usually instant)."""
    config = settings()
    return evaluate_run(get_run(run_id), cache=config.cache_dir, max_cache_mb=config.max_cache_mb)


try:
    evaluation = evaluation_of(run.id, run.model_path.stat().st_mtime)
except ValueError as exc:
    show_error(exc)
    st.stop()
root = run.dataset_root(settings().cache_dir)
image_file = partial(run.image_path, cache=settings().cache_dir)  # added images live beside the versions
trained_on = partial(run_version, run)  # the dataset version, opened when a gallery's "Fix labels" is first turned on
if not root.is_dir():
    st.info(
        "This run's dataset is not on this machine, so its images cannot be shown; the figures below are the "
        "ones saved when it was trained. Put the same dataset here (same files) to see them."
    )
for warning in evaluation.warnings:
    st.warning(warning)
if evaluation.predictions.empty:
    if not evaluation.num_missing:
        st.info(
            "This run has no test images: its classes are too small for a test split at the chosen fraction. "
            "Use more images per class or a larger test split on the Train page."
        )
    st.stop()

results, data_map = st.tabs(["Test results", "Data map"])
with results:
    cols = st.columns(6)
    cols[0].metric("Test accuracy", f"{evaluation.accuracy:.1%}")
    cols[1].metric("Balanced accuracy", f"{evaluation.balanced_accuracy:.1%}", help="mean recall over the classes")
    cols[2].metric("Macro F1", f"{evaluation.macro_f1:.1%}", help="mean F1 over the classes")
    cols[3].metric("Test loss", f"{evaluation.loss:.4f}")
    cols[4].metric("Test images", len(evaluation.predictions))
    cols[5].metric(
        "ROC AUC" if len(evaluation.class_names) == 2 else "Macro ROC AUC",
        f"{evaluation.roc_auc:.3f}" if evaluation.roc_auc is not None else "none",
        help="mean of the one-vs-rest areas (ROC curves below)"
        if evaluation.roc_auc is not None
        else "the test split has images of one class only",
    )
    if evaluation.num_leaked_test_images:
        st.warning(
            f"{evaluation.num_leaked_test_images} of the {len(evaluation.predictions)} test images are copies of "
            f"training images, which flatters the test accuracy: without them it is "
            f"**{evaluation.accuracy_without_leaks:.1%}**. Keep one of each group on the Data page (Duplicates tab).",
            icon=":material/content_copy:",
        )
    tta_section(run)

    figure = charts.confusion_figure(evaluation.confusion, list(evaluation.class_names))
    # A large matrix takes the full width, its tables go below it; a small one has them beside it.
    left, right = st.columns([3, 2]) if figure.layout.width else (st.container(), st.container())
    with left:
        event = st.plotly_chart(
            figure,
            on_select="rerun",
            selection_mode="points",
            key="confusion",
            width="content" if figure.layout.width else "stretch",
        )
    with right:
        st.subheader("Most frequent confusions")
        st.dataframe(
            evaluation.top_confusions(),
            hide_index=True,
            column_config={
                "true_label": "true",
                "predicted_label": "predicted",
                "share": st.column_config.NumberColumn("share of true class", format="percent"),
            },
        )
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
        confidences = [f"{c:.0%}" for c in reported_confidence(cell)]
        gallery(image_file, cell["path"].tolist(), confidences, key="confusion-cell", target=trained_on)

    st.subheader("Most confident mistakes")
    mistakes = evaluation.most_confident_mistakes()
    if mistakes.empty:
        st.success("No test image was misclassified.")
    else:
        captions = mistake_captions(mistakes)
        gallery(image_file, mistakes["path"].tolist(), captions, key="mistakes", target=trained_on, columns=6)

    calibration_section(evaluation)
    roc_section(evaluation)

    label_issues_section(run, image_file)
    separation_section(run)

    st.subheader("Training curves")
    left, middle, right = st.columns(3)
    history = run.epoch_rows()
    left.plotly_chart(charts.history_figure(history, "loss"), key="eval-loss")
    middle.plotly_chart(charts.history_figure(history, "accuracy"), key="eval-acc")
    right.plotly_chart(charts.learning_rate_figure(history), key="eval-lr")
    report_section(run)

with data_map:
    st.caption(
        "Every image of the run's dataset as its model sees it: the features of its last layer before the "
        "classifier, projected to two dimensions. Images of a class the model tells apart form their own cloud."
    )
    if st.toggle("Show the map", key="show-map", help="One pass of the model over every image, kept with the run"):
        map_section(run, image_file, key="evaluate", target=trained_on)
