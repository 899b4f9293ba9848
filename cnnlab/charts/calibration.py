"""Charts of how far a model's confidence can be trusted: the reliability diagram, accuracy and
coverage against a confidence threshold, and one-vs-rest ROC curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from cnnlab.analysis.calibration import Reliability, ThresholdCurve
from cnnlab.analysis.roc import RocCurve
from cnnlab.charts.style import PALETTE, layout

_DIAGONAL = {"color": "#888888", "dash": "dot", "width": 1}


def reliability_figure(before: Reliability, after: Reliability | None = None) -> go.Figure:
    """Accuracy against confidence per confidence bin, as bars with the images per bin written on them;
    the calibrated model's bins as a line when given. A calibrated model's bars reach the diagonal."""
    centres = (before.lower + before.upper) / 2
    width = float(before.upper[0] - before.lower[0]) if len(before.upper) else 0.1
    traces = [
        go.Bar(
            x=centres,
            y=np.nan_to_num(before.accuracy),
            width=width * 0.95,
            text=[f"{int(c)}" if c else "" for c in before.count],
            textposition="outside",
            customdata=np.stack([before.count, before.confidence], axis=1),
            hovertemplate="Confidence %{x:.0%} bin<br>Accuracy %{y:.1%}<br>Mean confidence %{customdata[1]:.1%}"
            "<br>Images %{customdata[0]}<extra></extra>",
            marker_color=PALETTE[0],
            name=f"As trained (ECE {before.ece:.3f})",
        ),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=_DIAGONAL, name="Perfectly calibrated", hoverinfo="skip"),
    ]
    if after is not None:
        filled = after.count > 0
        traces.append(
            go.Scatter(
                x=after.confidence[filled],
                y=after.accuracy[filled],
                mode="lines+markers",
                line={"color": PALETTE[1]},
                customdata=after.count[filled],
                hovertemplate="Mean confidence %{x:.1%}<br>Accuracy %{y:.1%}<br>Images %{customdata}<extra></extra>",
                name=f"Calibrated (ECE {after.ece:.3f})",
            )
        )
    fig = layout(go.Figure(traces), "Reliability diagram (images per bin on the bars)", "Confidence", "Accuracy")
    fig.update_xaxes(range=[0, 1], tickformat=".0%", dtick=0.1)
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    return fig.update_layout(height=420)


def threshold_figure(curve: ThresholdCurve, threshold: float | None = None) -> go.Figure:
    """Accuracy and coverage of the predictions at least as confident as each threshold, with a
    vertical line at the chosen `threshold`."""
    lines = [
        go.Scatter(
            x=curve.threshold,
            y=values,
            mode="lines",
            name=name,
            line={"color": colour},
            hovertemplate=f"Threshold %{{x:.0%}}: %{{y:.1%}} {what}<extra></extra>",
        )
        for values, name, colour, what in (
            (curve.accuracy, "Accuracy of those kept", PALETTE[0], "right"),
            (curve.coverage, "Share of images kept (coverage)", PALETTE[2], "of images"),
        )
    ]
    fig = layout(go.Figure(lines), "Accuracy and coverage above a confidence threshold", "Confidence threshold", None)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    if threshold is not None:
        fig.add_vline(x=threshold, line={"color": "#444444", "dash": "dash", "width": 1})
    return fig.update_layout(height=380)


def roc_figure(curves: Sequence[RocCurve]) -> go.Figure:
    """One ROC curve per class against the rest, its area in the legend, and the chance diagonal.

    Classes without a curve (no test image of theirs, or nothing else) are left out.
    """
    drawn = [c for c in curves if c.auc is not None]
    traces = [
        go.Scatter(
            x=list(c.fpr),
            y=list(c.tpr),
            mode="lines",
            name=f"{c.class_name} (AUC {c.auc:.3f})",
            line={"color": PALETTE[i % len(PALETTE)], "width": 1.5},
            hovertemplate=f"{c.class_name}<br>False positives %{{x:.1%}}<br>True positives %{{y:.1%}}<extra></extra>",
        )
        for i, c in enumerate(drawn)
    ]
    traces.append(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=_DIAGONAL, name="Chance", hoverinfo="skip"))
    fig = layout(
        go.Figure(traces), "ROC curves, each class against the rest", "False positive rate", "True positive rate"
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", scaleanchor="x", constrain="domain")
    # Many classes: the legend goes to the right, where it can scroll.
    if len(drawn) > 6:
        fig.update_layout(legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0})
    return fig.update_layout(height=460)
