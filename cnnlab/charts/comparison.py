"""Charts of two runs compared on their shared test images."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from cnnlab.charts.style import PALETTE, layout


def recall_change_figure(per_class: pd.DataFrame, before: str, after: str) -> go.Figure:
    """Each class's recall for the two runs side by side (`RunComparison.per_class`: `class`,
    `support`, `recall_before`, `recall_after`), the runs named `before` and `after` in the legend."""
    missing = {"class", "support", "recall_before", "recall_after"} - set(per_class.columns)
    if missing:
        raise ValueError(
            "per_class needs the columns class, support, recall_before and recall_after. "
            f"Received: missing={sorted(missing)}"
        )
    names = [str(name) for name in per_class["class"]]
    fig = go.Figure()
    for column, name, color in (("recall_before", before, PALETTE[0]), ("recall_after", after, PALETTE[1])):
        values = per_class[column].astype(float)
        fig.add_trace(
            go.Bar(
                x=names,
                y=values,
                name=name,
                marker_color=color,
                text=[f"{v:.0%}" if pd.notna(v) else "" for v in values],
                textposition="auto",
                customdata=per_class["support"],
                hovertemplate="%{x}: %{y:.1%} of %{customdata} images<extra>" + name + "</extra>",
            )
        )
    fig = layout(fig, "Recall per class on the shared test images", "Class (newer labels)", "Recall")
    return fig.update_layout(barmode="group").update_yaxes(range=[0, 1.05], tickformat=".0%")
