"""The Evaluate page's trust sections: calibration (reliability diagram, ECE, Brier score, the
temperature, accuracy and coverage above a confidence threshold) and one-vs-rest ROC curves."""

from __future__ import annotations

import streamlit as st

from cnnlab import charts
from cnnlab.analysis.calibration import NO_TEMPERATURE, reliability, threshold_curve, threshold_summary
from cnnlab.analysis.evaluate import Evaluation
from cnnlab_ui.messages import show_error


def calibration_section(evaluation: Evaluation) -> None:
    """How far the model's confidence can be trusted on the test split, before and after temperature scaling."""
    st.subheader("Calibration: can you trust the confidence?")
    calibration = evaluation.calibration
    if calibration is None:
        st.info(
            "This evaluation was saved before calibration was measured, and the run's dataset is not here to "
            "measure it now. Put the same dataset on this machine and open this page again to evaluate again."
        )
        return
    st.caption(
        "A calibrated model that says 80% is right 80% of the time. The expected calibration error (ECE) is the "
        "average gap between confidence and accuracy; the Brier score the squared distance between the "
        "probabilities and the truth (lower is better for both). A temperature fitted on the validation images "
        "softens (above 1) or sharpens (below 1) every prediction without changing which class wins."
    )
    cols = st.columns(4)
    cols[0].metric("ECE", f"{calibration.ece:.3f}", help="expected calibration error over 10 confidence bins")
    cols[1].metric("Brier score", f"{calibration.brier:.3f}", help="0 is perfect, 2 the worst")
    predictions = evaluation.predictions
    correct = predictions["correct"].to_numpy(dtype=bool)
    before = reliability(predictions["confidence"].to_numpy(dtype=float), correct)
    if calibration.temperature is None or calibration.ece_calibrated is None:
        cols[2].metric("Temperature", "none", help=NO_TEMPERATURE)
        st.caption(f"Predictions are not calibrated: {NO_TEMPERATURE}.")
        after, confidence = None, predictions["confidence"].to_numpy(dtype=float)
    else:
        cols[2].metric("Temperature", f"{calibration.temperature:.2f}", help="fitted on the validation images")
        cols[3].metric(
            "ECE once calibrated",
            f"{calibration.ece_calibrated:.3f}",
            delta=f"{calibration.ece_calibrated - calibration.ece:+.3f}",
            delta_color="inverse",
            help=f"Brier score once calibrated: {calibration.brier_calibrated:.3f}",
        )
        confidence = predictions["calibrated_confidence"].to_numpy(dtype=float)
        after = reliability(confidence, correct)
    st.plotly_chart(charts.reliability_figure(before, after), key="reliability")

    st.markdown("**Confidence threshold**: keep only the predictions at least this confident")
    threshold = st.slider("Confidence threshold", 0, 100, 90, step=1, format="%d%%", key="confidence-threshold")
    try:
        sentence = threshold_summary(confidence, correct, threshold / 100)
    except ValueError as exc:
        show_error(exc)
        return
    st.markdown(sentence + (" (calibrated confidence)" if after is not None else ""))
    st.plotly_chart(charts.threshold_figure(threshold_curve(confidence, correct), threshold / 100), key="threshold")


def roc_section(evaluation: Evaluation) -> None:
    """One ROC curve per class against the rest, with the macro AUC."""
    st.subheader("ROC curves")
    if evaluation.roc_auc is None:
        st.info("ROC curves need test images of a class and of the others; this test split has one class only.")
        return
    if not evaluation.roc:
        st.info("This evaluation was saved before ROC curves were kept; evaluate it again with its dataset here.")
        return
    st.caption(
        f"Each class against all the others, scored by its probability. The area under a curve (AUC) is the "
        f"chance that an image of the class scores higher than one that is not; 0.5 is chance. Macro AUC "
        f"(their mean): **{evaluation.roc_auc:.3f}**."
    )
    st.plotly_chart(charts.roc_figure(evaluation.roc), key="roc")
