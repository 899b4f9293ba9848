"""Explanation maps side by side on one colour scale, and the randomisation check's correlations by step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnnlab.analysis.explain import _as_rgb, jet_colormap
from cnnlab.charts.style import PALETTE, layout


def jet_colorscale(stops: int = 11) -> list[list]:
    """The jet colours of `cnnlab.analysis.explain.jet_colormap` (the PNGs' colours) as a Plotly colorscale."""
    values = np.linspace(0.0, 1.0, stops)
    colours = np.rint(jet_colormap(values) * 255).astype(int)
    return [[float(v), f"rgb({r},{g},{b})"] for v, (r, g, b) in zip(values, colours, strict=True)]


def explanations_figure(
    image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]], opacity: float = 0.5, title: str = ""
) -> go.Figure:
    """Each (title, map) over `image`, side by side, every map on the same 0-1 scale with one colour bar.

    `image` is uint8 (H, W, C) or (H, W); each map is (H, W) in [0, 1].
    """
    rgb = _as_rgb(image)
    if not maps:
        raise ValueError("Give at least one (title, map) pair to draw. Received: maps=[]")
    for name, heatmap in maps:
        if np.shape(heatmap) != rgb.shape[:2]:
            raise ValueError(
                f"Each map must have the image's height and width {rgb.shape[:2]}. "
                f"Received: {name} shape={np.shape(heatmap)}"
            )
    fig = make_subplots(1, len(maps), subplot_titles=[name for name, _ in maps], horizontal_spacing=0.02)
    for column, (name, heatmap) in enumerate(maps, start=1):
        fig.add_trace(go.Image(z=rgb, hoverinfo="skip"), 1, column)
        fig.add_trace(
            go.Heatmap(
                z=np.clip(np.asarray(heatmap, dtype=float), 0.0, 1.0),
                coloraxis="coloraxis",
                opacity=opacity,
                name=name,
                hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra>" + name + "</extra>",
            ),
            1,
            column,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    for column in range(2, len(maps) + 1):
        fig.update_yaxes(scaleanchor=f"x{column}", row=1, col=column)
    layout(fig, title, None, None)
    fig.update_layout(
        coloraxis={
            "colorscale": jet_colorscale(),
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "importance"}, "thickness": 12},
        },
        height=260,
        margin={"l": 10, "r": 10, "t": 40 if not title else 70, "b": 10},
    )
    return fig


def randomisation_figure(
    layers: Sequence[str], correlations: Mapping[str, Sequence[float]], similar: float = 0.5
) -> go.Figure:
    """Each method's rank correlation with the trained model's map as layers are re-drawn from the top down."""
    fig = go.Figure()
    for i, (method, values) in enumerate(correlations.items()):
        if len(values) != len(layers):
            raise ValueError(
                f"Give one correlation per step ({len(layers)}). Received: {method} has {len(values)} values"
            )
        fig.add_trace(
            go.Scatter(x=list(layers), y=list(values), mode="lines+markers", name=method, line_color=PALETTE[i])
        )
    fig.add_hline(y=similar, line_dash="dot", line_color="gray", annotation_text="still similar above")
    layout(fig, "Cascading randomisation", "layers re-drawn at random, down to", "Spearman rank correlation")
    return fig.update_yaxes(range=[-1.05, 1.05]).update_layout(height=340)
