"""CNN Lab: page configuration and navigation only; every page lives in pages/."""

import streamlit as st

from cnnlab_ui.shell import hide_error_details, housekeeping, keep_keras_session, run_page

st.set_page_config(page_title="CNN Lab", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/image_search:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/visibility:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
]

hide_error_details()
keep_keras_session()
housekeeping()
run_page(st.navigation(PAGES))
