"""Image thumbnails in a captioned grid (the Data page's browser, Evaluate's mistakes)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cnnlab.data import images


def thumbnails(root: Path, paths: list[str], captions: list[str], columns: int = 8) -> None:
    """A grid of small images with captions; a file gone or unreadable since the scan says so in its cell."""
    if not paths:
        st.caption("No images to show.")
        return
    for start in range(0, len(paths), columns):
        cols = st.columns(columns)
        for col, rel, caption in zip(
            cols, paths[start : start + columns], captions[start : start + columns], strict=False
        ):
            try:
                col.image(images.thumbnail(root / rel), caption=caption, width="stretch")
            except (images.ImageError, OSError):
                col.caption(f"{caption}: {rel} is missing or unreadable now")
