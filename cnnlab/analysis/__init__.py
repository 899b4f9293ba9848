"""Looking at a trained model: test-split evaluation, likely label errors (also by a cross-validated
pass), Grad-CAM, and the network's inside (feature maps, filters, receptive fields, top images)."""

from cnnlab.analysis.crossval import cross_validated_issues
from cnnlab.analysis.evaluate import Evaluation, evaluate_run
from cnnlab.analysis.explain import grad_cam
from cnnlab.analysis.label_issues import run_label_issues

__all__ = ["Evaluation", "cross_validated_issues", "evaluate_run", "grad_cam", "run_label_issues"]
