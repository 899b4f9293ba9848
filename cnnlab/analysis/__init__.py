"""Looking at a trained model: its test split (calibration, ROC, test-time augmentation), two runs compared,
likely label errors, the embedding map, outliers and the unfamiliar-image flag, four explanations with their
sanity checks, and the network's inside (feature maps, filters, receptive fields, top images)."""

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
    from cnnlab.analysis.novelty import NoveltyFlag, NoveltyReference, flag_images, run_reference
    from cnnlab.analysis.novelty_check import novelty_separation
    from cnnlab.analysis.outliers import run_outliers
    from cnnlab.analysis.saliency import Explanation, explain, explain_image
    from cnnlab.analysis.sanity import MaskingCheck, RandomisationCheck, masking_check, randomisation_check
    from cnnlab.analysis.tta import TTAEvaluation, evaluate_tta, tta_transforms

__all__ = [
    "Calibration",
    "Embedding",
    "Evaluation",
    "NoveltyFlag",
    "NoveltyReference",
    "Explanation",
    "MaskingCheck",
    "RandomisationCheck",
    "RunComparison",
    "TTAEvaluation",
    "compare_runs",
    "cross_validated_issues",
    "evaluate_run",
    "evaluate_tta",
    "flag_images",
    "fit_temperature",
    "grad_cam",
    "novelty_separation",
    "explain",
    "explain_image",
    "masking_check",
    "project",
    "projection_methods",
    "randomisation_check",
    "run_embedding",
    "run_label_issues",
    "run_outliers",
    "run_reference",
    "tta_transforms",
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
        "NoveltyFlag": "novelty",
        "NoveltyReference": "novelty",
        "flag_images": "novelty",
        "run_reference": "novelty",
        "novelty_separation": "novelty_check",
        "run_outliers": "outliers",
        "TTAEvaluation": "tta",
        "evaluate_tta": "tta",
        "tta_transforms": "tta",
        "Explanation": "saliency",
        "explain": "saliency",
        "explain_image": "saliency",
        "MaskingCheck": "sanity",
        "RandomisationCheck": "sanity",
        "masking_check": "sanity",
        "randomisation_check": "sanity",
    },
)
