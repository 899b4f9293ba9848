"""Charts of a hyperparameter sweep: trials across their parameters, the objective per trial, importances."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cnnlab.charts.style import PALETTE, layout, ranked_bars

DIRECTIONS = ("maximize", "minimize")


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
    layout(fig, f"Parameters and {objective}", None, None)
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
    return layout(fig, f"{objective} per trial ({direction})", "Trial", objective)


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    """Horizontal bars of parameter importances, most important on top."""
    names = [str(name) for name in importances]
    values = np.asarray(list(importances.values()), dtype=float)
    return ranked_bars(names, values, "Parameter importance", "Importance", text_format="{:.2f}")


def _dimension(column: pd.Series, label: str) -> dict:
    is_numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if is_numeric:
        return {"label": label, "values": column.to_numpy(dtype=float)}
    text = column.map(lambda v: "None" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    categories = sorted(text.unique())
    codes = text.map({c: i for i, c in enumerate(categories)}).to_numpy(dtype=int)
    return {"label": label, "values": codes, "tickvals": list(range(len(categories))), "ticktext": categories}


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks the columns {missing}; pass a frame with one row per trial that has them. "
            f"Received: {name}.columns={list(frame.columns)}"
        )
