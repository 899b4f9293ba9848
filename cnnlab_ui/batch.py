"""The Predict page's zip of images: every image streamed through the run's model into a CSV to download."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import streamlit as st

from cnnlab.analysis.novelty import NoveltyReference
from cnnlab.deploy.batch import write_predictions, zip_source
from cnnlab.runs.store import Run
from cnnlab.settings import check_upload_size
from cnnlab_ui.messages import show_error
from cnnlab_ui.state import settings

# Images a zip may hold here: the CLI (`cnnlab predict RUN ZIP --csv`) takes any number.
MAX_ZIP_IMAGES = 20_000


def zip_predictions_section(model, run: Run, reference: NoveltyReference | None) -> None:
    """A zip uploader; its images predicted once per zip and run (with a progress bar), shown as a table
    and offered as a CSV."""
    config = settings()
    st.caption(
        f"A zip of images (sub-folders included, up to {MAX_ZIP_IMAGES:,} images and {config.max_upload_mb} MB): "
        "one row per image in a CSV, with the reason for any that cannot be read."
    )
    upload = st.file_uploader("Zip of images", type=["zip"], max_upload_size=config.max_upload_mb, key="images-zip")
    if upload is None:
        st.info("Upload a zip of images to predict them all into one CSV.")
        return
    content = upload.getvalue()
    key = (run.id, hashlib.sha256(content).hexdigest())
    done = st.session_state.get("zip-predictions")
    if done is None or done[0] != key:  # a rerun (the download button's) keeps the result
        try:
            check_upload_size(upload.name, len(content), config)
            source = zip_source(content, max_members=MAX_ZIP_IMAGES, max_total_bytes=config.max_extracted_bytes)
            bar = st.progress(0.0, text="Predicting...")
            out = io.StringIO()
            summary = write_predictions(
                model,
                run.class_names,
                run.model_config(),
                source,
                out,
                temperature=run.temperature,
                reference=reference,
                progress=lambda n, total: bar.progress(n / max(total, 1), text=f"Predicting... {n}/{total} images"),
            )
            bar.empty()
        except ValueError as exc:
            show_error(exc)
            return
        done = st.session_state["zip-predictions"] = (key, out.getvalue(), summary)
    _, text, summary = done
    st.write(f"{summary.num_images} images, {summary.num_unreadable} unreadable, {summary.images_per_s:.0f} images/s.")
    st.dataframe(pd.read_csv(io.StringIO(text), nrows=1000), hide_index=True)
    st.download_button(
        "Download predictions (CSV)",
        text,
        f"{upload.name.rsplit('.', 1)[0]}-predictions.csv",
        "text/csv",
        icon=":material/download:",
        key="zip-csv",
    )
