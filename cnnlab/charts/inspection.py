"""Charts of what a model has learnt: a layer's feature maps, a channel's receptive field, filters and kernels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnnlab.charts import grids
from cnnlab.charts.style import layout


def feature_maps_figure(values: np.ndarray, layer: str, max_channels: int = 128) -> go.Figure:
    """A layer's feature maps (height, width, channels) as one grid of heatmaps on a shared colour scale.

    Channel 0 is at the top left, then row by row; hovering shows the channel and the value. Up to
    `max_channels` channels are drawn (the title says when there are more). Signed outputs (a
    conv layer's) get a diverging scale centred on zero.
    """
    maps = _feature_values(values, "values")
    height, width, channels = maps.shape
    shown = grids.channels_first(maps[..., :max_channels])
    columns = grids.grid_columns(len(shown), height, width)
    gap = max(1, min(height, width) // 16)
    mosaic = grids.tile(shown, columns, gap=gap)
    numbers = grids.tile(np.broadcast_to(np.arange(len(shown))[:, None, None], shown.shape), columns, gap=gap)
    low, high = float(maps.min()), float(maps.max())
    more = f" (first {max_channels} of {channels} channels)" if channels > max_channels else ""
    heatmap = go.Heatmap(
        z=mosaic,
        customdata=numbers,
        hovertemplate="channel %{customdata:.0f}<br>value %{z:.4g}<extra></extra>",
        hoverongaps=False,
        **_colour_scale(low, high),
    )
    title = f"{layer}: output {height}x{width}x{channels}, values {low:.3g} to {high:.3g}{more}"
    fig = _image_axes(layout(go.Figure(heatmap), title, None, None))
    aspect = mosaic.shape[0] / mosaic.shape[1]
    return fig.update_layout(height=int(min(1400, 140 + 760 * aspect)))


def channel_figure(
    view: np.ndarray, values: np.ndarray, box: Sequence[int], unit: Sequence[int], title: str
) -> go.Figure:
    """The input as the model sees it with a unit's receptive field outlined, beside the channel enlarged.

    `view` is uint8 (H, W, 3 or 1); `values` one channel's map (h, w); `box` the receptive field
    (top, left, bottom, right), bottom and right exclusive; `unit` the (row, col) marked on the map.
    """
    image = np.asarray(view)
    rgb = np.repeat(image, 3, axis=-1) if image.ndim == 3 and image.shape[-1] == 1 else image
    channel = np.asarray(values, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or channel.ndim != 2 or len(box) != 4 or len(unit) != 2:
        raise ValueError(
            "view must be an (H, W, 3) or (H, W, 1) image, values one (h, w) map, box (top, left, bottom, right) "
            f"and unit (row, col). Received: view.shape={image.shape}, values.shape={channel.shape}"
        )
    top, left, bottom, right = (int(v) for v in box)
    row, col = (int(v) for v in unit)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            f"Input: pixels {top}-{bottom - 1} x {left}-{right - 1} feed unit ({row}, {col})",
            f"Channel map {channel.shape[0]}x{channel.shape[1]}",
        ),
        horizontal_spacing=0.08,
    )
    fig.add_trace(go.Image(z=rgb.astype(np.uint8), hovertemplate="x %{x}, y %{y}<extra></extra>"), row=1, col=1)
    low, high = float(channel.min()), float(channel.max())
    fig.add_trace(
        go.Heatmap(
            z=channel,
            hovertemplate="row %{y}, col %{x}<br>value %{z:.4g}<extra></extra>",
            colorbar={"x": 1.0, "len": 0.9},
            **_colour_scale(low, high),
        ),
        row=1,
        col=2,
    )
    outline = {"type": "rect", "line": {"color": "#ff2a2a", "width": 3}, "fillcolor": "rgba(0,0,0,0)"}
    fig.add_shape(x0=left - 0.5, x1=right - 0.5, y0=top - 0.5, y1=bottom - 0.5, row=1, col=1, **outline)
    fig.add_shape(x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5, row=1, col=2, **outline)
    layout(fig, title, None, None)
    _image_axes(fig)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    return fig.update_layout(height=460)


def filters_figure(patches: np.ndarray, layer: str) -> go.Figure:
    """A first conv layer's filters as small RGB (or grey) patches (N, h, w, 3 or 1) in [0, 1], mid-grey = 0."""
    stack = np.asarray(patches, dtype=np.float32)
    if stack.ndim != 4 or stack.shape[-1] not in (1, 3) or not len(stack):
        raise ValueError(
            "patches must be (N, height, width, 3) or (N, height, width, 1) filters in [0, 1]; make them with "
            f"cnnlab.charts.grids.filter_patches. Received: patches.shape={stack.shape}"
        )
    count, height, width, colours = stack.shape
    mosaic = grids.tile(stack if colours == 3 else np.repeat(stack, 3, axis=-1), gap=1, fill=1.0)
    image = go.Image(z=grids.to_uint8(mosaic, 0.0, 1.0), hoverinfo="skip")
    title = f"{layer}: {count} filters of {height}x{width}x{colours} (mid-grey = 0, each on its own scale)"
    fig = _image_axes(layout(go.Figure(image), title, None, None))
    return fig.update_layout(height=int(min(700, 120 + 520 * mosaic.shape[0] / mosaic.shape[1])))


def kernels_figure(weights: np.ndarray, filter_index: int, layer: str) -> go.Figure:
    """One filter of a deeper conv layer: its kernel on each input channel, a grid of small heatmaps.

    `weights` is the layer's kernel (h, w, in, out); zero is white on a blue-red scale.
    """
    kernel = np.asarray(weights, dtype=np.float32)
    if kernel.ndim != 4 or not 0 <= filter_index < kernel.shape[-1]:
        raise ValueError(
            f"weights must be a conv kernel (h, w, in, out) and filter_index one of its filters, 0 to "
            f"{kernel.shape[-1] - 1 if kernel.ndim == 4 else 'n'}. Received: filter_index={filter_index!r}"
        )
    height, width, inputs, _ = kernel.shape
    tiles = np.moveaxis(kernel[..., filter_index], -1, 0)
    mosaic = grids.tile(tiles, gap=1)
    numbers = grids.tile(np.broadcast_to(np.arange(inputs)[:, None, None], tiles.shape), gap=1)
    peak = float(np.abs(tiles).max()) or 1.0
    heatmap = go.Heatmap(
        z=mosaic,
        customdata=numbers,
        hovertemplate="input channel %{customdata:.0f}<br>weight %{z:.4g}<extra></extra>",
        hoverongaps=False,
        colorscale="RdBu_r",
        zmin=-peak,
        zmax=peak,
    )
    title = f"{layer} filter {filter_index}: its {height}x{width} kernel on each of {inputs} input channels"
    fig = _image_axes(layout(go.Figure(heatmap), title, None, None))
    return fig.update_layout(height=int(min(900, 140 + 600 * mosaic.shape[0] / mosaic.shape[1])))


def _feature_values(values: np.ndarray, name: str) -> np.ndarray:
    maps = np.asarray(values, dtype=np.float32)
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(
            f"{name} must be one layer's feature maps (height, width, channels) for one image. "
            f"Received: {name}.shape={maps.shape}"
        )
    return maps


def _colour_scale(low: float, high: float) -> dict:
    """A diverging scale centred on zero for signed values, else a sequential one."""
    if low < 0.0 < high:
        return {"colorscale": "RdBu_r", "zmid": 0.0}
    return {"colorscale": "Viridis", "zmin": low, "zmax": high if high > low else low + 1.0}


def _image_axes(fig: go.Figure) -> go.Figure:
    """Pixels as squares, row 0 on top, no ticks or grid."""
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x")
    return fig.update_layout(margin={"l": 10, "r": 10, "t": 60, "b": 10})
