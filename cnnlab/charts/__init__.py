"""Pictures: pure functions from plain data to Plotly figures, one look for all, and channel grids
laid out as NumPy arrays or PNG files. Only plotly, numpy, pandas and Pillow are imported, so pages
can draw charts without loading TensorFlow."""

from cnnlab.charts import grids
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
from cnnlab.charts.evaluation import FIXED_SIZE_CLASSES, confusion_figure, probabilities_figure
from cnnlab.charts.inspection import channel_figure, feature_maps_figure, filters_figure, kernels_figure
from cnnlab.charts.style import PALETTE, TEMPLATE
from cnnlab.charts.sweeps import DIRECTIONS, importance_figure, parallel_coordinates_figure, sweep_figure

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
