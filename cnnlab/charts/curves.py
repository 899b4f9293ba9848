"""Charts of a training per epoch: its loss and accuracy, its learning rate, the learning-rate finder's
curve, and several runs' curves compared."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnnlab.charts.style import PALETTE, layout

HISTORY_METRICS = ("loss", "accuracy")
_METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy"}
# Accuracy is a share: a fixed 0-100% axis makes runs comparable at a glance.
ACCURACY_AXIS = {"range": [0, 1.02], "tickformat": ".0%"}
# Learning rates span decades.
RATE_AXIS = {"type": "log", "exponentformat": "power"}


def history_figure(history: Sequence[Mapping], metric: str) -> go.Figure:
    """Training and validation `metric` ("loss" or "accuracy") per epoch, lines with markers.

    Works with no rows yet (empty axes) and with one row (single markers); missing values are skipped.
    A training that fine-tunes a backbone after its head (rows with `phase` "fine_tune") gets a
    dotted line where fine-tuning starts.
    """
    fig = go.Figure(_history_traces(history, metric))
    _mark_fine_tuning(fig, history)
    layout(fig, _METRIC_TITLES[metric], "Epoch", _METRIC_TITLES[metric])
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
    layout(fig, "Training curves", "Epoch", None)
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
    fig = layout(go.Figure([curve, mark]), "Loss as the learning rate grows", "Learning rate (log scale)", "Loss")
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
    fig = layout(go.Figure(line), "Learning rate per epoch", "Epoch", "Learning rate")
    fig.update_yaxes(RATE_AXIS)
    return _epoch_axes(fig).update_layout(height=300, showlegend=False)


def _rate_trace(history: Sequence[Mapping]) -> go.Scatter:
    epochs, rates = _series(history, "learning_rate")
    return go.Scatter(x=epochs, y=rates, mode="lines+markers", name="Learning rate", line={"color": PALETTE[2]})


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
    layout(fig, f"{_METRIC_TITLES[metric]} by run", "Epoch", _METRIC_TITLES[metric])
    # Run names are long and many: the legend goes under the plot instead of over its title.
    fig.update_layout(legend={"yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0.0}, margin={"b": 40})
    return _metric_axes(fig, metric)


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


def _check_metric(metric: str) -> None:
    if metric not in HISTORY_METRICS:
        raise ValueError(f"metric must be 'loss' or 'accuracy'. Received: metric={metric!r}")
