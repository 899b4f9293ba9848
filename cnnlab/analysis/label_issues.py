"""Likely label errors, found from out-of-sample predicted probabilities by confident learning.

The ranking is cleanlab's `find_label_issues(labels, pred_probs, filter_by="confident_learning",
return_indices_ranked_by="self_confidence")` written out in NumPy (Northcutt et al., "Confident
Learning", 2021): each class's threshold is the mean probability the model gives that class on
the images labelled with it; an image is a likely error when some other class clears its own
threshold and is the most likely such class, and the model's top prediction is not the given
label. Issues are ranked by self-confidence, the probability of the given label, lowest first.
`tests/test_label_issues.py` checks it against cleanlab itself where cleanlab is installed.
Nothing here moves, renames or deletes an image: the list is for a person to review.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab import data
from cnnlab.common.files import atomic_write
from cnnlab.runs.store import Run

ISSUE_COLUMNS = ("path", "split", "given_label", "suggested_label", "given_label_probability", "suggested_probability")
# cleanlab's constants: the tolerance of its comparisons, the lowest class threshold, and the
# threshold of a class no image is labelled with (above any probability: nothing is confidently it).
_TOLERANCE, _MIN_THRESHOLD, _ABSENT = 1e-6, 2e-6, 2.0


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Indices of likely label errors, most likely first (lowest probability of the given label).

    `labels` are given class indices (N,); `pred_probs` are out-of-sample probabilities (N, K),
    each row from a model that did not train on that image.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels) or (len(labels) and labels.max() >= probs.shape[1]):
        raise ValueError(
            "pred_probs must be one row of class probabilities per label, with a column for every label. "
            f"Received: pred_probs.shape={probs.shape}, labels.shape={labels.shape}"
        )
    if not len(labels):
        return np.zeros(0, dtype=np.int64)
    rows = np.arange(len(labels))
    thresholds = np.array(
        [probs[labels == k, k].mean() if (labels == k).any() else _ABSENT for k in range(probs.shape[1])]
    )
    confident = probs >= np.maximum(thresholds, _MIN_THRESHOLD) - _TOLERANCE
    num_confident = confident.sum(axis=1)
    guess = np.where(num_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    nudged = probs.copy()
    nudged[rows, labels] += _TOLERANCE  # a near-tie with the given label is no issue
    issue = (num_confident > 0) & (guess != labels) & (nudged.argmax(axis=1) != labels)
    indices = np.flatnonzero(issue)
    return indices[np.argsort(probs[indices, labels[indices]])]


def issues_table(
    labels: np.ndarray, pred_probs: np.ndarray, class_names: list[str], paths: list[str], splits: list[str]
) -> pd.DataFrame:
    """One row per likely label error, most likely first: where it is, its given and suggested labels."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(pred_probs, dtype=np.float64)
    ranked = find_label_issues(labels, probs)
    suggested = probs[ranked].argmax(axis=1) if len(ranked) else np.zeros(0, dtype=np.int64)
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame(
        {
            "path": [paths[i] for i in ranked],
            "split": [splits[i] for i in ranked],
            "given_label": names[labels[ranked]],
            "suggested_label": names[suggested],
            "given_label_probability": probs[ranked, labels[ranked]],
            "suggested_probability": probs[ranked, suggested],
        },
        columns=list(ISSUE_COLUMNS),
    )


def run_label_issues(run: Run, *, cache: Path) -> pd.DataFrame:
    """Likely label errors among a run's validation and test images, which its model never trained on."""
    from cnnlab.analysis.evaluate import open_split, probabilities

    with open_split(run, cache=cache) as (prepared, parts):
        chosen = [(i, name) for name in ("validation", "test") for i in parts.get(name, [])]
        if not chosen:
            raise ValueError(
                "This run has no validation or test images to check; train with a validation or test split. "
                f"Received: run={run.id!r}"
            )
        indices = np.asarray([i for i, _ in chosen], dtype=np.int64)
        probs = probabilities(run.load_model(), data.make_dataset(prepared, indices, 64))
        paths = [prepared.report.files[i] for i in indices]
        return issues_table(prepared.labels[indices], probs, run.class_names, paths, [s for _, s in chosen])


def write_issues_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write a label-issue table (from `run_label_issues` or a cross-validated pass) as a CSV file, atomically."""
    with atomic_write(path) as fh:
        fh.write(table.to_csv(index=False))
    return path
