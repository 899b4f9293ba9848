"""Every page runs inside the app shell (`streamlit_app.py`), deep links on a fresh server included."""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def require_app_shell() -> None:
    """Rerun through `streamlit_app.py` when Streamlit ran this page on its own; call it first in a page.

    Streamlit (1.67) sees a `pages/` folder beside the entry script and, until some session has
    called `st.navigation`, serves a page URL by running that file alone (its legacy multipage
    mode): no page config, no navigation, no per-rerun set-up. `st.navigation` turns that mode off
    for the whole server; here we turn it off the same way and rerun, which runs the shell and,
    since a page's id is its URL path in both modes, the same page inside it.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
