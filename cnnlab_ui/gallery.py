"""Image thumbnails in a captioned grid (the Data page's browser, Evaluate's mistakes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from cnnlab.data import images


def thumbnails(where: Path | Callable[[str], Path], paths: list[str], captions: list[str], columns: int = 8) -> None:
    """A grid of small images with captions; a file gone or unreadable since the scan says so in its cell.

    `paths` are under the folder `where`, or `where` gives each one's file (`report.path_of`,
    `dataset.image_path`: a dataset version's added images are not under its root).
    """
    path_of = where.joinpath if isinstance(where, Path) else where
    if not paths:
        st.caption("No images to show.")
        return
    for start in range(0, len(paths), columns):
        cols = st.columns(columns)
        for col, rel, caption in zip(
            cols, paths[start : start + columns], captions[start : start + columns], strict=False
        ):
            try:
                col.image(images.thumbnail(path_of(rel)), caption=caption, width="stretch")
            except (images.ImageError, OSError):
                col.caption(f"{caption}: {rel} is missing or unreadable now")
