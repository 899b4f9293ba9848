"""The Runs page's export extras: the quantisation choice for TensorFlow Lite, and the benchmark of every format."""

from __future__ import annotations

import streamlit as st

from cnnlab.runs.store import Run
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import settings

QUANTIZE_LABELS = {
    None: "none (float32)",
    "float16": "float16 weights",
    "dynamic": "dynamic range",
    "int8": "int8 (calibrated on training images)",
}


def quantize_choice(format: str) -> str | None:
    """For a tflite export, a quantisation picked by the user (None: float32); None for other formats."""
    if format != "tflite":
        return None
    choice: str | None = st.radio(
        "Quantisation",
        list(QUANTIZE_LABELS),
        format_func=QUANTIZE_LABELS.__getitem__,
        horizontal=True,
        key="export-quantize",
        help="smaller and often faster; checked against the Keras model on test images (top-1 agreement and "
        "largest probability difference)",
    )
    return choice


def check_summary(manifest: dict) -> str:
    """How close an export's predictions came to the Keras model's, from its `export.json`."""
    quantized = manifest.get("quantization")
    text = f"max difference {manifest['max_abs_diff']:.2g}"
    if quantized:
        text += (
            f", within {quantized['atol']} for {quantized['mode']}; same top class on "
            f"{quantized['top1_agreement']:.0%} of {manifest['num_check_images']} test images"
        )
    return text


def benchmark_section(run: Run) -> None:
    """The last benchmark of the run's model (if any) and a button that runs it again."""
    from cnnlab.deploy.benchmark import benchmark_run, benchmark_table, cached_benchmark
    from cnnlab.server.jobs import holding_slot

    config = settings()
    st.subheader("Benchmark exports")
    st.caption(
        "Every export format of this model on its test images, one image at a time in its own runtime: "
        "file size, test accuracy, how often its top class is the Keras model's, and median milliseconds per image."
    )
    result = cached_benchmark(run, cache=config.cache_dir)
    if st.button("Benchmark exports", icon=":material/speed:", key="benchmark-exports"):
        try:
            # A benchmark beside a training would time the training's load (and slow it): it takes a slot.
            with (
                holding_slot(config.max_concurrent_trainings, "a benchmark"),
                st.spinner("Exporting, checking and timing each format..."),
            ):
                result = benchmark_run(run, cache=config.cache_dir, max_cache_mb=config.max_cache_mb)
        except ValueError as exc:
            show_error(exc)
            return
    if result is None:
        st.caption("Not benchmarked yet.")
        return
    st.dataframe(
        benchmark_table(result),
        hide_index=True,
        key="benchmark-table",
        column_config={
            "size_mb": st.column_config.NumberColumn("size (MB)", format="%.3f"),
            "test_accuracy": st.column_config.NumberColumn("test accuracy", format="%.3f"),
            "agreement": st.column_config.NumberColumn("agreement with Keras", format="%.3f"),
            "ms_per_image": st.column_config.NumberColumn("ms per image", format="%.2f"),
        },
    )
    st.caption(
        f"{result['num_test_images']} test images; median of {result['repeats']} single-image calls after "
        f"{result['warmup']} warm-up calls ({result['machine']})."
    )
