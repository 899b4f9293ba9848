"""ROC curves and areas, one-vs-rest for any number of classes (NumPy and pandas only).

Each class's curve treats it as the positive class and every other as negative, scored by the
class's own probability; the macro AUC is the mean of the classes' areas, as scikit-learn's
`roc_auc_score(multi_class="ovr", average="macro")`. Two classes give two mirror-image curves of
the same area, so their macro AUC is the usual binary one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A curve keeps at most this many points for the chart (the area is computed from every image).
MAX_CURVE_POINTS = 200


@dataclass(frozen=True)
class RocCurve:
    """One class against the rest: false and true positive rates from the strictest threshold to
    none, and the area under the curve (None when the test split lacks positives or negatives)."""

    class_name: str
    fpr: tuple[float, ...] = ()
    tpr: tuple[float, ...] = ()
    auc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"class_name": self.class_name, "fpr": list(self.fpr), "tpr": list(self.tpr), "auc": self.auc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RocCurve:
        """Inverse of `to_dict`."""
        return cls(d["class_name"], tuple(d.get("fpr", ())), tuple(d.get("tpr", ())), d.get("auc"))


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve, None without both positives and negatives.

    The trapezoids under the curve through every distinct score are the Mann-Whitney statistic:
    the share of (positive, negative) pairs scored in the right order, a tie counting half.
    """
    positives = np.asarray(positives, dtype=bool)
    if positives.all() or not positives.any():
        return None
    fpr, tpr = roc_curve(scores, positives)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score taken as the threshold, from (0, 0) to (1, 1)."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, positives = scores[order], positives[order]
    # The last image of each run of equal scores: a threshold there takes the whole run in.
    ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(positives)[ends]
    fps = (ends + 1) - tps
    tpr = np.r_[0.0, tps / max(int(positives.sum()), 1)]
    fpr = np.r_[0.0, fps / max(int((~positives).sum()), 1)]
    return fpr, tpr


def one_vs_rest(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> tuple[RocCurve, ...]:
    """Each class's ROC curve (thinned to `MAX_CURVE_POINTS`) and area, in class order."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.ndim != 2 or probs.shape != (len(labels), len(class_names)):
        raise ValueError(
            f"ROC curves need the probabilities (images, classes) of {len(class_names)} classes and one label per "
            f"image. Received: probs.shape={probs.shape}, labels.shape={labels.shape}"
        )
    curves = []
    for c, name in enumerate(class_names):
        positives = labels == c
        if positives.all() or not positives.any():
            curves.append(RocCurve(str(name)))
            continue
        fpr, tpr = roc_curve(probs[:, c], positives)
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), MAX_CURVE_POINTS)).round().astype(np.int64))
        curves.append(RocCurve(str(name), tuple(fpr[keep].tolist()), tuple(tpr[keep].tolist()), auc))
    return tuple(curves)


def macro_auc(curves: Sequence[RocCurve]) -> float | None:
    """The mean area over the classes that have one; None when none has."""
    areas = [c.auc for c in curves if c.auc is not None]
    return float(np.mean(areas)) if areas else None
