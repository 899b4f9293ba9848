"""Using a trained model: ranked predictions for images, normalised exactly as in training, and
exports to SavedModel, TensorFlow Lite or ONNX that are loaded back and checked."""

from cnnlab.deploy.export import EXPORT_FORMATS, export_run, read_export
from cnnlab.deploy.predict import Prediction, predict

__all__ = ["EXPORT_FORMATS", "Prediction", "export_run", "predict", "read_export"]
