"""How pages show a bad-input error: one line, never a traceback."""

from __future__ import annotations

import streamlit as st

from cnnlab.checks import one_line


def show_error(exc: Exception) -> None:
    """Show a bad-input error as one line, never a traceback."""
    st.error(one_line(exc), icon=":material/error:")
