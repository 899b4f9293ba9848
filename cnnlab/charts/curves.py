"""Plotly figures for the app: pure functions from plain data to `go.Figure`, one look for all.

Only plotly, numpy, pandas and `cnnlab.charts.grids` (NumPy and Pillow) are imported, so pages can draw
charts without loading TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cnnlab.charts import grids

TEMPLATE = "plotly_white"
PALETTE = qualitative.Plotly
HISTORY_METRICS = ("loss", "accuracy")
DIRECTIONS = ("maximize", "minimize")
# Accuracy is a share: a fixed 0-100% axis makes runs comparable at a glance.
ACCURACY_AXIS = {"range": [0, 1.02], "tickformat": ".0%"}
# Learning rates span decades.
RATE_AXIS = {"type": "log", "exponentformat": "power"}
# Up to this many classes the confusion matrix has a fixed size with counts written in its cells.
FIXED_SIZE_CLASSES = 20


def class_counts_figure(counts: Mapping[str, int]) -> go.Figure:
    """Bar chart of images per class, in the order given (class order)."""
    names = [str(name) for name in counts]
    values = [_count(name, value) for name, value in counts.items()]
    bar = go.Bar(x=names, y=values, text=values, textposition="auto", marker_color=PALETTE[0], name="Images")
    return _layout(go.Figure(bar), "Images per class", "Class", "Images")


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
    return _layout(go.Figure(scatter), "Original image sizes", "Width (px)", "Height (px)")


def history_figure(history: Sequence[Mapping], metric: str) -> go.Figure:
    """Training and validation `metric` ("loss" or "accuracy") per epoch, lines with markers.

    Works with no rows yet (empty axes) and with one row (single markers); missing values are skipped.
    A training that fine-tunes a backbone after its head (rows with `phase` "fine_tune") gets a
    dotted line where fine-tuning starts.
    """
    fig = go.Figure(_history_traces(history, metric))
    _mark_fine_tuning(fig, history)
    _layout(fig, _METRIC_TITLES[metric], "Epoch", _METRIC_TITLES[metric])
    return _metric_axes(fig, metric)


def training_curves_figure(history: Sequence[Mapping]) -> go.Figure:
    """Loss and accuracy per epoch side by side in one figure, as `history_figure` draws each, and
    the learning rate in a third panel once a schedule has changed it.

    One figure rather than two or three: the Train page redraws it while the training runs, and
    each Plotly figure the browser redraws costs CPU that the training shares (`bench/README.md`);
    one figure with two panels took the browser about half as long as two figures.
    """
    rate_changed = len({row.get("learning_rate") for row in history}) > 1
    panels = [*HISTORY_METRICS, "learning_rate"] if rate_changed else list(HISTORY_METRICS)
    titles = [_METRIC_TITLES.get(panel, "Learning rate") for panel in panels]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.08)
    for col, metric in enumerate(HISTORY_METRICS, start=1):
        for trace in _history_traces(history, metric):
            fig.add_trace(trace.update(legendgroup=trace.name, showlegend=col == 1), row=1, col=col)
    if rate_changed:
        fig.add_trace(_rate_trace(history).update(showlegend=False), row=1, col=3)
        fig.update_yaxes(RATE_AXIS, row=1, col=3)
    _mark_fine_tuning(fig, history)
    _layout(fig, "Training curves", "Epoch", None)
    _epoch_axes(fig).update_yaxes(ACCURACY_AXIS, row=1, col=2)
    legend = {"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.12, "yanchor": "bottom"}  # above the panels
    return fig.update_layout(hovermode="x unified", legend=legend, margin={"t": 90}, height=420)


def _history_traces(history: Sequence[Mapping], metric: str) -> list[go.Scatter]:
    """The training and validation lines of `metric` ("loss" or "accuracy")."""
    _check_metric(metric)
    traces = []
    for key, name, colour in ((metric, "Training", PALETTE[0]), (f"val_{metric}", "Validation", PALETTE[1])):
        epochs, values = _series(history, key)
        traces.append(go.Scatter(x=epochs, y=values, mode="lines+markers", name=name, line={"color": colour}))
    return traces


def _mark_fine_tuning(fig: go.Figure, history: Sequence[Mapping]) -> None:
    """A dotted line where a backbone's fine-tuning starts, in every panel; nothing without one."""
    boundary = fine_tune_start(history)
    if boundary is not None:
        fig.add_vline(
            x=boundary - 0.5,
            line={"dash": "dot", "color": "#888888"},
            annotation_text="fine-tuning",
            annotation_position="top right",
        )


def fine_tune_start(history: Sequence[Mapping]) -> int | None:
    """The first epoch of the fine-tuning phase, or None when the history has none."""
    for i, row in enumerate(history, start=1):
        if row.get("phase") == "fine_tune":
            return int(row.get("epoch", i))
    return None


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
    fig = _layout(
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


def lr_find_figure(learning_rates: Sequence[float], losses: Sequence[float], suggested: float) -> go.Figure:
    """The learning-rate finder's loss against rate on a log axis, with the suggested rate marked."""
    rates = np.asarray(learning_rates, dtype=float)
    values = np.asarray(losses, dtype=float)
    if rates.shape != values.shape or rates.ndim != 1 or not len(rates) or (rates <= 0).any():
        raise ValueError(
            "learning_rates and losses must be equally long, non-empty lists, rates positive. "
            f"Received: len(learning_rates)={rates.size}, len(losses)={values.size}"
        )
    curve = go.Scatter(
        x=rates,
        y=values,
        mode="lines",
        name="Smoothed loss",
        line={"color": PALETTE[0]},
        hovertemplate="rate %{x:.2g}<br>loss %{y:.4f}<extra></extra>",
    )
    at = float(np.interp(np.log10(suggested), np.log10(rates), values))
    mark = go.Scatter(
        x=[suggested],
        y=[at],
        mode="markers+text",
        name="Suggested",
        text=[f"suggested {suggested:.2g}"],
        textposition="top right",
        marker={"color": PALETTE[1], "size": 12, "symbol": "star"},
    )
    fig = _layout(go.Figure([curve, mark]), "Loss as the learning rate grows", "Learning rate (log scale)", "Loss")
    fig.update_xaxes(RATE_AXIS)
    # The loss shoots up at the end; cap the axis so the useful part of the curve stays readable.
    finite = values[np.isfinite(values)]
    if finite.size:
        low, start = float(finite.min()), float(finite[0])
        fig.update_yaxes(range=[low - 0.05 * (start - low + 1e-9), start + 0.5 * (start - low + 1e-9)])
    return fig


def learning_rate_figure(history: Sequence[Mapping]) -> go.Figure:
    """The learning rate used in each epoch, on a log axis (flat for a constant rate)."""
    line = _rate_trace(history)
    fig = _layout(go.Figure(line), "Learning rate per epoch", "Epoch", "Learning rate")
    fig.update_yaxes(RATE_AXIS)
    return _epoch_axes(fig).update_layout(height=300, showlegend=False)


def _rate_trace(history: Sequence[Mapping]) -> go.Scatter:
    epochs, rates = _series(history, "learning_rate")
    return go.Scatter(x=epochs, y=rates, mode="lines+markers", name="Learning rate", line={"color": PALETTE[2]})


def probabilities_figure(class_names: Sequence[str], probabilities: Sequence[float]) -> go.Figure:
    """Horizontal bars of class probabilities, ranked with the most likely class on top."""
    names = [str(name) for name in class_names]
    values = np.asarray(probabilities, dtype=float)
    if values.shape != (len(names),):
        raise ValueError(
            f"probabilities must be one value per class name ({len(names)}). Received: probabilities.shape={values.shape}"
        )
    fig = _ranked_bars(names, values, "Class probabilities", "Probability", text_format="{:.1%}")
    return fig.update_xaxes(range=[0, 1], tickformat=".0%")


def compare_figure(
    histories: Mapping[str, Sequence[Mapping]], metric: str, names: Mapping[str, str] | None = None
) -> go.Figure:
    """Several runs' `metric` per epoch: validation solid, training dashed, one colour per run.

    `histories` is keyed by run id; the legend shows each run's name from `names` (the id when it
    has none), followed by its id when several runs share a name.
    """
    _check_metric(metric)
    labels = _run_labels(list(histories), names or {})
    fig = go.Figure()
    for i, (run_id, history) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        for key, label, dash in ((f"val_{metric}", "validation", "solid"), (metric, "training", "dash")):
            epochs, values = _series(history, key)
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=values,
                    mode="lines+markers",
                    name=f"{labels[run_id]} ({label})",
                    legendgroup=str(run_id),
                    line={"color": colour, "dash": dash},
                    marker={"size": 5},
                )
            )
    _layout(fig, f"{_METRIC_TITLES[metric]} by run", "Epoch", _METRIC_TITLES[metric])
    # Run names are long and many: the legend goes under the plot instead of over its title.
    fig.update_layout(legend={"yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0.0}, margin={"b": 40})
    return _metric_axes(fig, metric)


def parallel_coordinates_figure(frame: pd.DataFrame, params: Sequence[str], objective: str) -> go.Figure:
    """One line per trial across `params` axes, coloured by `objective`.

    Numeric parameters are plotted as they are; categorical, boolean and string ones get integer
    codes labelled with their values. Rows with no objective value (failed or running trials)
    are left out.
    """
    _check_columns(frame, [*params, objective], "frame")
    rows = frame[pd.to_numeric(frame[objective], errors="coerce").notna()]
    dimensions = [_dimension(rows[param], param) for param in params]
    dimensions.append({"label": objective, "values": pd.to_numeric(rows[objective]).to_numpy(dtype=float)})
    lines = {
        "color": pd.to_numeric(rows[objective]).to_numpy(dtype=float),
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"title": {"text": objective}},
    }
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line=lines))
    _layout(fig, f"Parameters and {objective}", None, None)
    # Axis labels sit above the axes: leave them room under the title.
    return fig.update_layout(margin={"t": 110, "l": 70})


def sweep_figure(trials: pd.DataFrame, objective: str, direction: str) -> go.Figure:
    """Objective value per trial number (markers) and the best value so far (step line).

    `trials` has columns 'number', 'value' and 'state' (as Optuna's `trials_dataframe`); only
    completed trials with a value count. `direction` is "maximize" or "minimize".
    """
    _check_columns(trials, ["number", "value", "state"], "trials")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'maximize' or 'minimize'. Received: direction={direction!r}")
    done = trials[trials["state"].astype(str).str.upper().str.endswith("COMPLETE")]
    done = done.assign(value=pd.to_numeric(done["value"], errors="coerce")).dropna(subset=["value"])
    done = done.sort_values("number")
    best = done["value"].cummax() if direction == "maximize" else done["value"].cummin()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=done["number"], y=done["value"], mode="markers", name="Trial", marker={"color": PALETTE[0], "size": 9}
        )
    )
    fig.add_trace(
        go.Scatter(
            x=done["number"], y=best, mode="lines", name="Best so far", line={"color": PALETTE[1], "shape": "hv"}
        )
    )
    return _layout(fig, f"{objective} per trial ({direction})", "Trial", objective)


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    """Horizontal bars of parameter importances, most important on top."""
    names = [str(name) for name in importances]
    values = np.asarray(list(importances.values()), dtype=float)
    return _ranked_bars(names, values, "Parameter importance", "Importance", text_format="{:.2f}")


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
    fig = _image_axes(_layout(go.Figure(heatmap), title, None, None))
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
    _layout(fig, title, None, None)
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
    fig = _image_axes(_layout(go.Figure(image), title, None, None))
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
    fig = _image_axes(_layout(go.Figure(heatmap), title, None, None))
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


_METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy"}


def _layout(fig: go.Figure, title: str, x_title: str | None, y_title: str | None) -> go.Figure:
    """The shared look: white template, a left-aligned title, labelled axes and a compact legend."""
    fig.update_layout(
        template=TEMPLATE,
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


def _metric_axes(fig: go.Figure, metric: str) -> go.Figure:
    _epoch_axes(fig)
    if metric == "accuracy":
        fig.update_yaxes(ACCURACY_AXIS)
    return fig.update_layout(hovermode="x unified")


def _epoch_axes(fig: go.Figure) -> go.Figure:
    """Every x axis counts epochs from 0, with whole-epoch ticks: a tick at 1.5 epochs means
    nothing; past 15 epochs the automatic ticks are whole anyway."""
    longest = max((len(trace.x) for trace in fig.data if trace.x is not None), default=0)
    return fig.update_xaxes(rangemode="tozero", dtick=1 if longest <= 15 else None)


def _ranked_bars(names: list[str], values: np.ndarray, title: str, x_title: str, text_format: str) -> go.Figure:
    order = np.argsort(-values, kind="stable")
    bar = go.Bar(
        x=values[order],
        y=[names[i] for i in order],
        orientation="h",
        text=[text_format.format(v) for v in values[order]],
        textposition="auto",
        marker_color=PALETTE[0],
    )
    fig = _layout(go.Figure(bar), title, x_title, None)
    # Bars are listed best first; reversing the axis puts the first one on top.
    fig.update_yaxes(autorange="reversed", type="category")
    return fig.update_layout(height=max(260, 120 + 28 * len(names)), showlegend=False)


def _series(history: Sequence[Mapping], key: str) -> tuple[list, list]:
    epochs, values = [], []
    for i, row in enumerate(history, start=1):
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        epochs.append(row.get("epoch", i))
        values.append(float(value))
    return epochs, values


def _run_labels(run_ids: list[str], names: Mapping[str, str]) -> dict[str, str]:
    """Each run's name, with its id added where two runs would otherwise look the same."""
    plain = {run_id: str(names.get(run_id) or run_id) for run_id in run_ids}
    shared = {label for label in plain.values() if list(plain.values()).count(label) > 1}
    return {run_id: f"{label} · {run_id}" if label in shared else label for run_id, label in plain.items()}


def _dimension(column: pd.Series, label: str) -> dict:
    is_numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if is_numeric:
        return {"label": label, "values": column.to_numpy(dtype=float)}
    text = column.map(lambda v: "None" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    categories = sorted(text.unique())
    codes = text.map({c: i for i, c in enumerate(categories)}).to_numpy(dtype=int)
    return {"label": label, "values": codes, "tickvals": list(range(len(categories))), "ticktext": categories}


def _check_metric(metric: str) -> None:
    if metric not in HISTORY_METRICS:
        raise ValueError(f"metric must be 'loss' or 'accuracy'. Received: metric={metric!r}")


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks the columns {missing}; pass a frame with one row per trial that has them. "
            f"Received: {name}.columns={list(frame.columns)}"
        )


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"counts must map each class name to a non-negative int. Received: counts[{name!r}]={value!r}")
    return int(value)


def _format_count(value) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{float(value):.2f}"
