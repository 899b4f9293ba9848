"""Pictures: pure functions from plain data to Plotly figures, one look for all, and channel grids
laid out as NumPy arrays or PNG files."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.charts import grids
    from cnnlab.charts.figures import (
        ACCURACY_AXIS,
        DIRECTIONS,
        FIXED_SIZE_CLASSES,
        HISTORY_METRICS,
        PALETTE,
        RATE_AXIS,
        TEMPLATE,
        channel_figure,
        class_counts_figure,
        compare_figure,
        confusion_figure,
        feature_maps_figure,
        filters_figure,
        fine_tune_start,
        history_figure,
        image_sizes_figure,
        importance_figure,
        kernels_figure,
        learning_rate_figure,
        lr_find_figure,
        parallel_coordinates_figure,
        probabilities_figure,
        sweep_figure,
        training_curves_figure,
    )

__all__ = [
    "ACCURACY_AXIS",
    "DIRECTIONS",
    "FIXED_SIZE_CLASSES",
    "HISTORY_METRICS",
    "PALETTE",
    "RATE_AXIS",
    "TEMPLATE",
    "channel_figure",
    "class_counts_figure",
    "compare_figure",
    "confusion_figure",
    "feature_maps_figure",
    "filters_figure",
    "fine_tune_start",
    "grids",
    "history_figure",
    "image_sizes_figure",
    "importance_figure",
    "kernels_figure",
    "learning_rate_figure",
    "lr_find_figure",
    "parallel_coordinates_figure",
    "probabilities_figure",
    "sweep_figure",
    "training_curves_figure",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ACCURACY_AXIS": "figures",
        "DIRECTIONS": "figures",
        "FIXED_SIZE_CLASSES": "figures",
        "HISTORY_METRICS": "figures",
        "PALETTE": "figures",
        "RATE_AXIS": "figures",
        "TEMPLATE": "figures",
        "channel_figure": "figures",
        "class_counts_figure": "figures",
        "compare_figure": "figures",
        "confusion_figure": "figures",
        "feature_maps_figure": "figures",
        "filters_figure": "figures",
        "fine_tune_start": "figures",
        "history_figure": "figures",
        "image_sizes_figure": "figures",
        "importance_figure": "figures",
        "kernels_figure": "figures",
        "learning_rate_figure": "figures",
        "lr_find_figure": "figures",
        "parallel_coordinates_figure": "figures",
        "probabilities_figure": "figures",
        "sweep_figure": "figures",
        "training_curves_figure": "figures",
    },
)
