"""Looking at a trained model: test-split evaluation (calibration and ROC curves included), two runs compared
on their shared test images, likely label errors (also by a cross-validated pass), the embedding map and
outliers, Grad-CAM, and the network's inside (feature maps, filters, receptive fields, top images)."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.analysis.calibration import Calibration, fit_temperature, scale_probabilities
    from cnnlab.analysis.compare import RunComparison, compare_runs
    from cnnlab.analysis.crossval import cross_validated_issues
    from cnnlab.analysis.embedding import Embedding, project, projection_methods, run_embedding
    from cnnlab.analysis.evaluate import Evaluation, evaluate_run
    from cnnlab.analysis.explain import grad_cam
    from cnnlab.analysis.label_issues import run_label_issues
    from cnnlab.analysis.outliers import run_outliers

__all__ = [
    "Calibration",
    "Embedding",
    "Evaluation",
    "RunComparison",
    "compare_runs",
    "cross_validated_issues",
    "evaluate_run",
    "fit_temperature",
    "grad_cam",
    "project",
    "projection_methods",
    "run_embedding",
    "run_label_issues",
    "run_outliers",
    "scale_probabilities",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Calibration": "calibration",
        "fit_temperature": "calibration",
        "scale_probabilities": "calibration",
        "RunComparison": "compare",
        "compare_runs": "compare",
        "cross_validated_issues": "crossval",
        "Embedding": "embedding",
        "project": "embedding",
        "projection_methods": "embedding",
        "run_embedding": "embedding",
        "Evaluation": "evaluate",
        "evaluate_run": "evaluate",
        "grad_cam": "explain",
        "run_label_issues": "label_issues",
        "run_outliers": "outliers",
    },
)
