"""Using a trained model: ranked predictions for images, normalised exactly as in training, and
exports to SavedModel, TensorFlow Lite or ONNX that are loaded back and checked."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.deploy.export import EXPORT_FORMATS, export_run, read_export
    from cnnlab.deploy.prediction import Prediction, predict, predictions_table

__all__ = ["EXPORT_FORMATS", "Prediction", "export_run", "predict", "predictions_table", "read_export"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "EXPORT_FORMATS": "export",
        "export_run": "export",
        "read_export": "export",
        "Prediction": "prediction",
        "predict": "prediction",
        "predictions_table": "prediction",
    },
)
