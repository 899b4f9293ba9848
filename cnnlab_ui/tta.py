"""Test-time augmentation on the pages: the switch (with what it uses and costs) and the Evaluate page's
test accuracy with and without it, side by side."""

from __future__ import annotations

import streamlit as st

from cnnlab.analysis.tta import TRANSFORMS, TTAEvaluation, evaluate_tta, tta_transforms
from cnnlab.model import ModelConfig
from cnnlab.runs.store import Run
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import get_run
from cnnlab_ui.state import settings


def tta_help(config: ModelConfig) -> str:
    """What TTA does for this run and what it costs, in one paragraph."""
    names = tta_transforms(config)
    described = ", ".join(TRANSFORMS[n] for n in names)
    if len(names) == 1:
        return (
            "Test-time augmentation averages the model's answers over changed copies of each image, but this run "
            "trained without flips, zoom or shifts, so its only copy is the image itself: nothing changes."
        )
    return (
        f"Averages the model's probabilities over {len(names)} copies of each image ({described}), only the "
        f"changes this run trained with. Costs {len(names)} model passes per image: about {len(names)}x the time."
    )


def tta_toggle(config: ModelConfig, key: str) -> bool:
    """The test-time augmentation switch; True when on."""
    return st.toggle("Test-time augmentation", key=key, help=tta_help(config))


@st.cache_data(show_spinner="Predicting the test images with test-time augmentation...", max_entries=8)
def _tta(run_id: str, model_mtime: float) -> TTAEvaluation:
    config = settings()
    return evaluate_tta(get_run(run_id), cache=config.cache_dir, max_cache_mb=config.max_cache_mb)


def tta_section(run: Run) -> None:
    """The switch and, when on, the test accuracy with and without TTA side by side, with the time each took."""
    config = run.model_config()
    if not tta_toggle(config, key="evaluate-tta"):
        return
    try:
        tta = _tta(run.id, run.model_path.stat().st_mtime)
    except ValueError as exc:
        show_error(exc)
        return
    cols = st.columns(4)
    cols[0].metric("Test accuracy without TTA", f"{tta.accuracy:.1%}")
    cols[1].metric(
        "Test accuracy with TTA", f"{tta.accuracy_tta:.1%}", delta=f"{(tta.accuracy_tta - tta.accuracy) * 100:+.1f} pts"
    )
    cols[2].metric(
        "Test loss with TTA", f"{tta.loss_tta:.4f}", delta=f"{tta.loss_tta - tta.loss:+.4f}", delta_color="inverse"
    )
    ratio = tta.seconds_tta / tta.seconds if tta.seconds > 0 else float(len(tta.transforms))
    cols[3].metric("Time", f"{tta.seconds_tta:.2f} s", help=f"{tta.seconds:.2f} s without TTA")
    st.caption(
        f"{tta_help(config)} Measured here: {tta.seconds_tta:.2f} s against {tta.seconds:.2f} s for the "
        f"{tta.num_images} test images ({ratio:.1f}x)."
    )
