"""Looking at a trained model: test-split evaluation, two runs compared on their shared test images,
likely label errors (also by a cross-validated pass), the embedding map and outliers, four explanations
with their sanity checks, and the network's inside (feature maps, filters, receptive fields, top images)."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.analysis.compare import RunComparison, compare_runs
    from cnnlab.analysis.crossval import cross_validated_issues
    from cnnlab.analysis.embedding import Embedding, project, projection_methods, run_embedding
    from cnnlab.analysis.evaluate import Evaluation, evaluate_run
    from cnnlab.analysis.explain import grad_cam
    from cnnlab.analysis.label_issues import run_label_issues
    from cnnlab.analysis.outliers import run_outliers
    from cnnlab.analysis.saliency import Explanation, explain, explain_image
    from cnnlab.analysis.sanity import MaskingCheck, RandomisationCheck, masking_check, randomisation_check

__all__ = [
    "Embedding",
    "Evaluation",
    "Explanation",
    "MaskingCheck",
    "RandomisationCheck",
    "RunComparison",
    "compare_runs",
    "cross_validated_issues",
    "evaluate_run",
    "explain",
    "explain_image",
    "grad_cam",
    "masking_check",
    "project",
    "projection_methods",
    "randomisation_check",
    "run_embedding",
    "run_label_issues",
    "run_outliers",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
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
        "Explanation": "saliency",
        "explain": "saliency",
        "explain_image": "saliency",
        "MaskingCheck": "sanity",
        "RandomisationCheck": "sanity",
        "masking_check": "sanity",
        "randomisation_check": "sanity",
    },
)
