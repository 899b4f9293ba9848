"""The embedding map: every image as a point of its 2-D projection, coloured by one of its columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cnnlab.charts.style import PALETTE, layout
from cnnlab.common.checks import check_choice

# What the points can be coloured by -> its name on screen ("correct" shows as right / wrong).
COLOR_BY = {"label": "Label", "prediction": "Prediction", "split": "Split", "correct": "Right or wrong"}
SPLIT_ORDER = ("train", "validation", "test")
# The columns of `Embedding.frame()` that the points and their hover text read.
EMBEDDING_COLUMNS = ("path", "label", "prediction", "split", "correct", "confidence")


def embedding_figure(frame: pd.DataFrame, xy: np.ndarray, color_by: str = "label") -> go.Figure:
    """A scatter of the images at `xy` (N x 2), one trace per value of `color_by`, for a lasso or box selection.

    `frame` has one row per point, with the columns of `cnnlab.analysis.Embedding.frame()`. Each
    point's `customdata` is its row's position in `frame`, whichever trace holds it, so a Streamlit
    selection maps back to rows::

        event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso", "points"))
        chosen = frame.iloc[[point["customdata"] for point in event.selection.points]]

    Points are WebGL (`Scattergl`), which keeps thousands of them fluid and supports the same
    selections; the figure opens with the lasso as its drag tool.
    """
    check_choice("color_by", color_by, tuple(COLOR_BY))
    points = np.asarray(xy, dtype=np.float64)
    missing = [c for c in EMBEDDING_COLUMNS if c not in frame.columns]
    if points.shape != (len(frame), 2) or missing:
        raise ValueError(
            f"xy must hold one (x, y) row per row of the frame, and the frame the columns {', '.join(EMBEDDING_COLUMNS)}. "
            f"Received: xy.shape={points.shape}, len(frame)={len(frame)}, missing={missing}"
        )
    values = frame["correct"].map({True: "right", False: "wrong"}) if color_by == "correct" else frame[color_by]
    values = values.astype(str).to_numpy()
    hover = [
        f"{row.path}<br>label: {row.label} · predicted: {row.prediction} ({row.confidence:.0%})<br>split: {row.split}"
        for row in frame[list(EMBEDDING_COLUMNS)].itertuples(index=False)
    ]
    traces = []
    for i, value in enumerate(_ordered(values, color_by)):
        rows = np.flatnonzero(values == value)
        traces.append(
            go.Scattergl(
                x=points[rows, 0],
                y=points[rows, 1],
                mode="markers",
                name=value,
                marker={"size": 7, "opacity": 0.8, "color": PALETTE[i % len(PALETTE)]},
                customdata=rows,
                hovertext=[hover[r] for r in rows],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig = layout(go.Figure(traces), f"Embedding map, coloured by {COLOR_BY[color_by].lower()}", None, None)
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    return fig.update_layout(dragmode="lasso", height=560, legend_title_text=COLOR_BY[color_by])


def _ordered(values: np.ndarray, color_by: str) -> list[str]:
    """The trace values in legend order: splits and right/wrong in their natural order, others sorted."""
    present = set(values.tolist())
    if color_by == "split":
        return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))
    return sorted(present)
