"""Using a trained model: ranked predictions for images, normalised exactly as in training, exports
to SavedModel, TensorFlow Lite (optionally quantised) or ONNX that are loaded back and checked, their
benchmark side by side, and a run's one-file HTML report."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.deploy.benchmark import BENCHMARK_FORMATS, benchmark_run, cached_benchmark
    from cnnlab.deploy.export import EXPORT_FORMATS, export_run, read_export
    from cnnlab.deploy.prediction import Prediction, predict, predictions_table
    from cnnlab.deploy.quantize import QUANTIZATIONS, export_quantized
    from cnnlab.deploy.report import report_html, write_report

__all__ = [
    "BENCHMARK_FORMATS",
    "EXPORT_FORMATS",
    "QUANTIZATIONS",
    "Prediction",
    "benchmark_run",
    "cached_benchmark",
    "export_quantized",
    "export_run",
    "predict",
    "predictions_table",
    "read_export",
    "report_html",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BENCHMARK_FORMATS": "benchmark",
        "benchmark_run": "benchmark",
        "cached_benchmark": "benchmark",
        "EXPORT_FORMATS": "export",
        "export_run": "export",
        "read_export": "export",
        "Prediction": "prediction",
        "predict": "prediction",
        "predictions_table": "prediction",
        "QUANTIZATIONS": "quantize",
        "export_quantized": "quantize",
        "report_html": "report",
        "write_report": "report",
    },
)
