"""The Predict page's explanations: four maps of one image on one colour scale, and the sanity checks."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from cnnlab import charts
from cnnlab.analysis.saliency import LABELS, METHODS, NOTES, explain_image
from cnnlab.analysis.sanity import randomisation_check, run_masking_check
from cnnlab.deploy.prediction import Prediction
from cnnlab.runs.store import Run
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import settings

# Maps kept per browser session, so a rerun (any widget) does not recompute every image's four maps.
MEMO_SIZE = 48


def explanation_section(model, run: Run, result: Prediction, key: str, *, first: bool) -> None:
    """The class to explain (the predicted one first), its four maps side by side with one colour bar,
    a line under each on what it measures, and the randomisation check behind a button.

    The first image is explained at once, the others when asked: four maps take about half a second
    an image, too long for a dozen uploads on a shared CPU."""
    assert result.image is not None and result.label is not None
    if not st.toggle("Explain: where did the model look?", value=first, key=f"explain-{key}"):
        return
    names = list(run.class_names)
    chosen = st.selectbox("Explain the class", names, index=names.index(result.label), key=f"explain-class-{key}")
    class_index = names.index(chosen)
    memo_key = ("maps", run.id, _digest(result.image), class_index)
    with st.spinner("Explaining..."):
        explanations = _memo(memo_key, lambda: explain_image(model, result.image, METHODS, class_index))
    maps = [(e.label, e.heatmap) for e in explanations]
    st.plotly_chart(charts.explanations_figure(result.image, maps), key=f"maps-{key}")
    for column, e in zip(st.columns(len(explanations)), explanations, strict=True):
        column.caption(f"**{e.label}** ({e.seconds:.2f} s): {e.note}")
    with st.expander("Sanity check: do these maps change when the model's weights are random?"):
        st.caption(
            "Re-draws the classifier's weights, then each layer's below it, on a copy of the model, and "
            "compares each new map with the one above (Spearman rank correlation; Adebayo et al. 2018)."
        )
        check_key = ("randomisation", run.id, _digest(result.image), class_index)
        if st.button("Randomise the model and compare", key=f"randomise-{key}"):
            with st.spinner("Recomputing the maps with random weights..."):
                _memo(check_key, lambda: randomisation_check(model, result.image, METHODS, class_index))
        check = st.session_state.get("explanation-memo", {}).get(check_key)
        if check is not None:
            layers = [step.layer for step in check.steps]
            correlations = {LABELS[m]: [step.correlations[m] for step in check.steps] for m in check.methods}
            st.plotly_chart(charts.randomisation_figure(layers, correlations), key=f"randomised-{key}")
            for method in check.methods:
                icon = "✅" if check.explains(method) else "⚠️"
                st.markdown(f"{icon} **{LABELS[method]}**: {check.verdict(method)}")


def what_it_saw_section(run: Run, model) -> None:
    """The masking check on the run's test split: accuracy with each map's region hidden, against a random one."""
    with st.expander("What it saw: hide the map's region on test images"):
        st.caption(
            "On up to 64 test images, hides the map's most important pixels (for the predicted class) and, "
            "separately, a region of the same shape at a random place. If the map points at what the model "
            "uses, hiding its region costs more accuracy."
        )
        left, right = st.columns(2)
        method: str = (
            left.selectbox("Map", list(METHODS), format_func=lambda m: LABELS[m], key="saw-method") or METHODS[0]
        )
        percent = right.slider("Pixels hidden (%)", 5, 40, 15, step=5, key="saw-fraction")
        st.caption(NOTES[method])
        if not st.button("Run the check", key="saw-run"):
            return
        try:
            with st.spinner("Masking test images..."):
                check = run_masking_check(run, model, cache=settings().cache_dir, method=method, fraction=percent / 100)
        except ValueError as exc:
            show_error(exc)
            return
        cols = st.columns(3)
        cols[0].metric("Accuracy", f"{check.accuracy:.1%}")
        cols[1].metric("Map's region hidden", f"{check.map_masked_accuracy:.1%}")
        cols[2].metric("Random region hidden", f"{check.random_masked_accuracy:.1%}")
        (st.success if check.points_at_evidence else st.warning)(f"{check.num_images} test images: {check.verdict}.")


def _memo(key: tuple, compute):
    memo = st.session_state.setdefault("explanation-memo", {})
    if key not in memo:
        if len(memo) >= MEMO_SIZE:
            memo.pop(next(iter(memo)))
        memo[key] = compute()
    return memo[key]


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
