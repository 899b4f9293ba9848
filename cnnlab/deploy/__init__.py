"""Using a trained model: ranked predictions normalised exactly as in training (a folder or zip streamed into a CSV), checked exports (SavedModel,
TFLite optionally quantised, ONNX) with their benchmark, a run's one-file HTML report, and MLflow: the run as a
pyfunc model, the model registry and serving over HTTP."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.deploy.batch import BatchSummary, folder_source, predict_to_csv, write_predictions, zip_source
    from cnnlab.deploy.benchmark import BENCHMARK_FORMATS, benchmark_run, cached_benchmark
    from cnnlab.deploy.export import EXPORT_FORMATS, export_run, read_export
    from cnnlab.deploy.mlflow_model import save_pyfunc
    from cnnlab.deploy.prediction import Prediction, predict, predictions_table
    from cnnlab.deploy.quantize import QUANTIZATIONS, export_quantized
    from cnnlab.deploy.registry import model_versions, register_run, set_alias
    from cnnlab.deploy.report import report_html, write_report
    from cnnlab.deploy.serving import serve, served_model

__all__ = [
    "BatchSummary",
    "folder_source",
    "predict_to_csv",
    "write_predictions",
    "zip_source",
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
    "model_versions",
    "register_run",
    "save_pyfunc",
    "serve",
    "served_model",
    "set_alias",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BatchSummary": "batch",
        "folder_source": "batch",
        "predict_to_csv": "batch",
        "write_predictions": "batch",
        "zip_source": "batch",
        "BENCHMARK_FORMATS": "benchmark",
        "benchmark_run": "benchmark",
        "cached_benchmark": "benchmark",
        "EXPORT_FORMATS": "export",
        "export_run": "export",
        "read_export": "export",
        "save_pyfunc": "mlflow_model",
        "Prediction": "prediction",
        "predict": "prediction",
        "predictions_table": "prediction",
        "QUANTIZATIONS": "quantize",
        "export_quantized": "quantize",
        "report_html": "report",
        "write_report": "report",
        "model_versions": "registry",
        "register_run": "registry",
        "set_alias": "registry",
        "serve": "serving",
        "served_model": "serving",
    },
)
