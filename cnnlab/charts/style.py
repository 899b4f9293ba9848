"""The charts' one look: the template, the palette and the layout every figure shares."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative

TEMPLATE = "plotly_white"
PALETTE = qualitative.Plotly
# Every figure of this process starts from the charts' template: Plotly gives a new figure its
# default template without validating it again, where assigning the template to each figure
# validated all of it every time (about 8 ms a figure, most of what a small chart cost to build).
pio.templates.default = TEMPLATE


def layout(fig: go.Figure, title: str, x_title: str | None, y_title: str | None) -> go.Figure:
    """The shared look: white template, a left-aligned title, labelled axes and a compact legend."""
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        margin={"l": 60, "r": 30, "t": 60, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        hovermode="closest",
    )
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def ranked_bars(names: list[str], values: np.ndarray, title: str, x_title: str, text_format: str) -> go.Figure:
    """Horizontal bars of `values` ranked largest first, the first on top."""
    order = np.argsort(-values, kind="stable")
    bar = go.Bar(
        x=values[order],
        y=[names[i] for i in order],
        orientation="h",
        text=[text_format.format(v) for v in values[order]],
        textposition="auto",
        marker_color=PALETTE[0],
    )
    fig = layout(go.Figure(bar), title, x_title, None)
    # Bars are listed best first; reversing the axis puts the first one on top.
    fig.update_yaxes(autorange="reversed", type="category")
    return fig.update_layout(height=max(260, 120 + 28 * len(names)), showlegend=False)
