"""The Streamlit side of CNN Lab: what the pages share (state, cached loaders, widget groups).

Never imported by `cnnlab`; nothing here imports TensorFlow at import time.
"""
