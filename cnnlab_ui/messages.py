"""How pages show a bad-input error: one line, never a traceback, never a server path to a visitor."""

from __future__ import annotations

import streamlit as st

from cnnlab.common.checks import one_line
from cnnlab.server import hosting


def show_error(exc: Exception) -> None:
    """Show a bad-input error as one line; in hosted mode cut to a few hundred characters, with
    files named relative to the visitor's upload and no other server path."""
    from cnnlab_ui.state import session_id, settings  # state shows its own errors through this module

    text = one_line(exc)
    config = settings()
    if config.hosted:
        text = hosting.visitor_message(text, hosting.uploads_dir(config.cache_dir, session_id()))
    st.error(text, icon=":material/error:")
