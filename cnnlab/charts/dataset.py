"""Charts of a dataset: images per class and the original image sizes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cnnlab.charts.style import PALETTE, layout


def class_counts_figure(counts: Mapping[str, int]) -> go.Figure:
    """Bar chart of images per class, in the order given (class order)."""
    names = [str(name) for name in counts]
    values = [_count(name, value) for name, value in counts.items()]
    bar = go.Bar(x=names, y=values, text=values, textposition="auto", marker_color=PALETTE[0], name="Images")
    return layout(go.Figure(bar), "Images per class", "Class", "Images")


def image_sizes_figure(widths: Iterable[int], heights: Iterable[int]) -> go.Figure:
    """Original image sizes: one marker per distinct width x height, sized by how many images have it."""
    w = np.asarray(list(widths), dtype=float)
    h = np.asarray(list(heights), dtype=float)
    if w.shape != h.shape or w.ndim != 1 or (w.size and (w.min() <= 0 or h.min() <= 0)):
        raise ValueError(
            "widths and heights must be equally long lists of positive pixel sizes, one pair per image. "
            f"Received: len(widths)={w.size}, len(heights)={h.size}"
        )
    sizes = pd.DataFrame({"width": w, "height": h}).value_counts().rename("images").reset_index()
    scale = 40.0 / math.sqrt(max(1, int(sizes["images"].max()))) if len(sizes) else 1.0
    scatter = go.Scatter(
        x=sizes["width"],
        y=sizes["height"],
        mode="markers",
        marker={"size": 8 + scale * np.sqrt(sizes["images"]), "color": PALETTE[0], "opacity": 0.6},
        customdata=sizes["images"],
        hovertemplate="%{x:.0f} x %{y:.0f} px<br>%{customdata} images<extra></extra>",
        name="Images",
    )
    return layout(go.Figure(scatter), "Original image sizes", "Width (px)", "Height (px)")


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"counts must map each class name to a non-negative int. Received: counts[{name!r}]={value!r}")
    return int(value)
