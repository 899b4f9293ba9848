"""Predict: classify uploaded or camera images, with maps of where the model looked (four methods) and their sanity checks."""

import streamlit as st

from cnnlab import charts
from cnnlab.data.images import SUPPORTED_EXTENSIONS
from cnnlab.deploy.prediction import predict, predictions_table
from cnnlab.settings import check_upload_size
from cnnlab_ui.batch import zip_predictions_section
from cnnlab_ui.dataset_panels import add_to_run_dataset
from cnnlab_ui.explanations import explanation_section, what_it_saw_section
from cnnlab_ui.loaders import run_model
from cnnlab_ui.messages import show_error
from cnnlab_ui.novelty import flags_for, novelty_reference, show_flag, with_flags
from cnnlab_ui.runs import run_picker
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import settings
from cnnlab_ui.tta import tta_toggle

require_app_shell()

MAX_EXPLAINED = 12

st.title("Predict")
run = run_picker()
try:
    model = run_model(run)
except ValueError as exc:
    show_error(exc)
    st.stop()
config = run.model_config()
st.caption(
    f"Classes: {', '.join(run.class_names)}. Images are resized to {config.image_size[0]}x{config.image_size[1]} ({config.resize_mode}, {config.color_mode}), as in training."
)

st.caption(
    f"Confidences are calibrated: probabilities scaled by the temperature {run.temperature:.2f} fitted on the "
    "validation images, so 80% means right about 80% of the time (Evaluate page, Calibration)."
    if run.temperature is not None
    else "Confidences are the model's own, not calibrated: no temperature was fitted (the Evaluate page says why)."
)

tta = tta_toggle(config, key="predict-tta")

source = st.radio("Images from", ["Upload", "Camera", "Zip of images"], horizontal=True, key="image-source")
if source == "Zip of images":
    zip_predictions_section(model, run, novelty_reference(run))
    st.stop()
if source == "Upload":
    files = (
        st.file_uploader(
            "Images",
            type=sorted(e.lstrip(".") for e in SUPPORTED_EXTENSIONS),
            accept_multiple_files=True,
            max_upload_size=settings().max_upload_mb,
            key="image-upload",
        )
        or []
    )
else:
    photo = st.camera_input("Take a photo")
    files = [photo] if photo is not None else []
if not files:
    st.info("Upload one or more images (or take a photo) to see the predicted classes.")
    st.stop()

accepted = []
for f in files:
    try:
        check_upload_size(f.name, f.size, settings())
        accepted.append(f)
    except ValueError as exc:
        show_error(exc)
files = accepted
reference = novelty_reference(run)  # fitted on the first images predicted with this run, then kept
inputs = [f.getvalue() for f in files]
names = [f.name for f in files]
results = predict(
    model, run.class_names, config, inputs, names=names, errors="report", tta=tta, temperature=run.temperature
)
for result in results:
    if result.error:
        show_error(ValueError(result.error))

good = [r for r in results if not r.error]
good_inputs = [data for data, r in zip(inputs, results, strict=True) if not r.error]
flags = flags_for(model, reference, good)
if len(good) > 1:
    table = with_flags(predictions_table(good, run.class_names), flags)
    st.dataframe(table, hide_index=True)
    st.download_button(
        "Download results (CSV)", table.to_csv(index=False), "predictions.csv", "text/csv", icon=":material/download:"
    )

for i, result in enumerate(good[:MAX_EXPLAINED]):
    with st.container(border=True):
        st.markdown(f"**{result.name}**: {result.label} ({result.confidence:.1%})")
        show_flag(flags[i])
        cols = st.columns(2)
        cols[0].image(result.image, caption="Model input", width="stretch")
        cols[1].plotly_chart(
            charts.probabilities_figure([c for c, _ in result.ranked], [p for _, p in result.ranked]), key=f"probs-{i}"
        )
        explanation_section(model, run, result, key=str(i), first=i == 0)
        add_to_run_dataset(run, good_inputs[i], result.name, result.label, key=str(i))
if len(good) > MAX_EXPLAINED:
    st.caption(f"The first {MAX_EXPLAINED} images are shown one by one; the table lists them all.")
what_it_saw_section(run, model)
