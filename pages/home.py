"""Home: what CNN Lab does and where to go next. Imports nothing heavy (no TensorFlow)."""

import streamlit as st

from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import settings

require_app_shell()

st.title("CNN Lab")
st.markdown(
    "Train a convolutional image classifier from a folder of images, watch it learn, see where it "
    "goes wrong and why, and export it, without writing code. The built-in **shapes** sample "
    "dataset and a ready demo model are loaded, so every page works right away."
)

STEPS = [
    (
        "pages/data.py",
        "1. Data",
        ":material/photo_library:",
        "Pick the built-in sample, a zip of class folders or a server folder; check class counts, image sizes and skipped files.",
    ),
    (
        "pages/train.py",
        "2. Train",
        ":material/model_training:",
        "Set conv blocks, filters, image size, augmentation and more; watch loss and accuracy stream in live; stop at any time.",
    ),
    (
        "pages/evaluate.py",
        "3. Evaluate",
        ":material/fact_check:",
        "Test accuracy, per-class precision and recall, a clickable confusion matrix and the most confident mistakes.",
    ),
    (
        "pages/predict.py",
        "4. Predict",
        ":material/image_search:",
        "Upload images or use the camera: ranked classes with a Grad-CAM heatmap of where the model looked.",
    ),
    (
        "pages/inspect.py",
        "5. Inspect",
        ":material/visibility:",
        "Look inside the network for one image: feature maps layer by layer, learned filters, and what each channel responds to.",
    ),
    (
        "pages/runs.py",
        "6. Runs",
        ":material/history:",
        "Every training is saved: compare learning curves and hyperparameters, rename, delete, download and export.",
    ),
    (
        "pages/sweep.py",
        "7. Sweep",
        ":material/tune:",
        "Search hyperparameters with Optuna; trials are runs, and a team can share one study.",
    ),
]

columns = st.columns(3)
for i, (page, title, icon, text) in enumerate(STEPS):
    with columns[i % 3].container(border=True):
        st.page_link(page, label=title, icon=icon)
        st.caption(text)

if settings().hosted:
    st.caption(
        "This is a shared demo server. Your uploads and runs belong to this browser (a cookie keeps your visitor "
        "id): its other tabs see them, while another browser or a private window is another visitor, and a "
        "page's address shared with someone shares none of them. They are deleted after an hour without activity."
    )

st.divider()
st.caption(
    "Folder layout: one sub-folder per class (for example `cats/` and `dogs/`), images nested "
    "deeper belong to their class. JPEG, PNG, BMP, GIF, WebP and TIFF are read; anything else is "
    "listed with the reason it was skipped."
)
