"""Charts of a model's predictions: the confusion matrix and one image's class probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from cnnlab.charts.style import layout, ranked_bars

# Up to this many classes the confusion matrix has a fixed size with counts written in its cells.
FIXED_SIZE_CLASSES = 20


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Confusion matrix readable from 2 to 100 classes: y = true class (first on top), x = predicted class.

    The colours are a Heatmap, so cells stay square and fill the plot at any size and under zoom.
    Clicks and hovers go to a Scatter of invisible markers over the cell centres (the first trace),
    because Streamlit's plotly selection returns nothing for Heatmap traces (streamlit/streamlit#8760).
    Points are in row-major order, so a selected point's `point_index` is
    `true_index * n + predicted_index`::

        event = st.plotly_chart(fig, on_select="rerun", selection_mode="points")
        true_index, predicted_index = divmod(event.selection.points[0]["point_index"], n)

    Up to `FIXED_SIZE_CLASSES` classes the figure has a fixed size with counts written in the cells
    (show it with `width="content"`); above, it has no width, so it fills its container
    (`width="stretch"`), and its height grows with the class count.
    """
    counts = np.asarray(matrix)
    names = [str(name) for name in class_names]
    n = len(names)
    if counts.shape != (n, n) or n == 0 or not np.issubdtype(counts.dtype, np.number):
        raise ValueError(
            f"matrix must be a square ({n}, {n}) array of counts, one row and column per class name. "
            f"Received: matrix.shape={counts.shape}"
        )
    true_idx, pred_idx = (a.ravel() for a in np.indices((n, n)))
    values = counts.ravel()
    row_totals = counts.sum(axis=1)[true_idx]
    shares = np.divide(values, row_totals, out=np.zeros(values.shape, dtype=float), where=row_totals > 0)
    small = n <= FIXED_SIZE_CLASSES
    # Pixels per cell: generous for a few classes; above, about the 700 px a wide page gives the matrix.
    cell = int(np.clip(360 // n, 18, 72)) if small else max(7, 700 // n)
    peak = float(values.max()) if values.size else 0.0
    cells = go.Scatter(
        x=[names[i] for i in pred_idx],
        y=[names[i] for i in true_idx],
        mode="markers+text" if small else "markers",
        marker={"symbol": "square", "size": cell * 0.92, "color": values, "opacity": 0.0, "line": {"width": 0}},
        text=[_format_count(v) for v in values],
        # Dark text on pale squares, white text on dark ones.
        textfont={"color": ["white" if peak and v > 0.6 * peak else "#222222" for v in values]},
        hovertext=[f"{share:.0%} of true {names[t]}" for share, t in zip(shares, true_idx, strict=True)],
        hovertemplate="True: %{y}<br>Predicted: %{x}<br>Images: %{text} (%{hovertext})<extra></extra>",
        name="Confusion",
    )
    colours = go.Heatmap(
        z=counts,
        x=names,
        y=names,
        colorscale="Blues",
        zmin=0,
        xgap=1 if n <= 50 else 0,
        ygap=1 if n <= 50 else 0,
        hoverinfo="skip",
        colorbar={
            "title": {"text": "Images"},
            "len": 1.0 if small else min(1.0, 400 / (cell * n)),
            "yanchor": "top",
            "y": 1.0,
        },
    )
    fig = layout(
        go.Figure([cells, colours]),
        "Confusion matrix (click a cell to see its images)",
        "Predicted class",
        "True class",
    )
    tick_size = 12 if small else int(np.clip(cell * 0.9, 7, 11))
    axis = {
        "type": "category",
        "categoryorder": "array",
        "categoryarray": names,
        "showgrid": False,
        "zeroline": False,
        "automargin": True,
        "tickfont": {"size": tick_size},
    }
    fig.update_xaxes(**axis, side="bottom", constrain="domain", tickangle=-45 if n > 8 else 0)
    # Equal spacing on both axes keeps the cells square; the first class is drawn on top.
    fig.update_yaxes(**axis, autorange="reversed", scaleanchor="x", constrain="domain")
    margin = {"l": 100, "r": 110, "t": 60, "b": 70}  # room for class names and the colour bar
    return fig.update_layout(
        width=margin["l"] + margin["r"] + cell * n if small else None,
        height=margin["t"] + margin["b"] + cell * n,
        margin=margin,
        showlegend=False,
        clickmode="event+select",
        dragmode="zoom",
    )


def probabilities_figure(class_names: Sequence[str], probabilities: Sequence[float]) -> go.Figure:
    """Horizontal bars of class probabilities, ranked with the most likely class on top."""
    names = [str(name) for name in class_names]
    values = np.asarray(probabilities, dtype=float)
    if values.shape != (len(names),):
        raise ValueError(
            f"probabilities must be one value per class name ({len(names)}). Received: probabilities.shape={values.shape}"
        )
    fig = ranked_bars(names, values, "Class probabilities", "Probability", text_format="{:.1%}")
    return fig.update_xaxes(range=[0, 1], tickformat=".0%")


def _format_count(value) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{float(value):.2f}"
