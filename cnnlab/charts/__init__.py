"""Pictures: pure functions from plain data to Plotly figures, one look for all, and channel grids
laid out as NumPy arrays or PNG files. Only plotly, numpy, pandas and Pillow are imported, so pages
can draw charts without loading TensorFlow."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.charts import grids
    from cnnlab.charts.calibration import reliability_figure, roc_figure, threshold_figure
    from cnnlab.charts.comparison import recall_change_figure
    from cnnlab.charts.curves import (
        ACCURACY_AXIS,
        HISTORY_METRICS,
        RATE_AXIS,
        compare_figure,
        fine_tune_start,
        history_figure,
        learning_rate_figure,
        lr_find_figure,
        training_curves_figure,
    )
    from cnnlab.charts.dataset import class_counts_figure, image_sizes_figure
    from cnnlab.charts.embedding import COLOR_BY, embedding_figure
    from cnnlab.charts.evaluation import FIXED_SIZE_CLASSES, confusion_figure, probabilities_figure
    from cnnlab.charts.explanations import explanations_figure, randomisation_figure
    from cnnlab.charts.inspection import channel_figure, feature_maps_figure, filters_figure, kernels_figure
    from cnnlab.charts.style import PALETTE, TEMPLATE
    from cnnlab.charts.sweeps import DIRECTIONS, importance_figure, parallel_coordinates_figure, sweep_figure

__all__ = [
    "ACCURACY_AXIS",
    "COLOR_BY",
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
    "embedding_figure",
    "explanations_figure",
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
    "randomisation_figure",
    "recall_change_figure",
    "reliability_figure",
    "roc_figure",
    "sweep_figure",
    "threshold_figure",
    "training_curves_figure",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ACCURACY_AXIS": "curves",
        "HISTORY_METRICS": "curves",
        "RATE_AXIS": "curves",
        "compare_figure": "curves",
        "fine_tune_start": "curves",
        "history_figure": "curves",
        "learning_rate_figure": "curves",
        "lr_find_figure": "curves",
        "training_curves_figure": "curves",
        "recall_change_figure": "comparison",
        "reliability_figure": "calibration",
        "roc_figure": "calibration",
        "threshold_figure": "calibration",
        "class_counts_figure": "dataset",
        "image_sizes_figure": "dataset",
        "COLOR_BY": "embedding",
        "embedding_figure": "embedding",
        "FIXED_SIZE_CLASSES": "evaluation",
        "confusion_figure": "evaluation",
        "probabilities_figure": "evaluation",
        "explanations_figure": "explanations",
        "randomisation_figure": "explanations",
        "channel_figure": "inspection",
        "feature_maps_figure": "inspection",
        "filters_figure": "inspection",
        "kernels_figure": "inspection",
        "PALETTE": "style",
        "TEMPLATE": "style",
        "DIRECTIONS": "sweeps",
        "importance_figure": "sweeps",
        "parallel_coordinates_figure": "sweeps",
        "sweep_figure": "sweeps",
    },
)
