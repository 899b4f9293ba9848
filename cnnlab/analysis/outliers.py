"""Outliers: the images least like their class as a run's model sees them, most unusual first.

An image's score is its distance to its class's centroid in feature space, in units of the class's
median distance: features are L2-normalised first (so an image's brightness or contrast does not
make it far on its own), and the ratio makes classes of tight and loose spread comparable: about 1
is a typical member, 3 is three times as far out as the class's typical image. A class with a
single image has no spread to measure it by; its score is the model's doubt about its label,
1 - the probability the model gives that label (its self-confidence), which is at most 1.
Nothing here moves, relabels or excludes an image: the list is for a person to review.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.analysis.embedding import Embedding, run_embedding
from cnnlab.runs.store import Run

OUTLIER_COLUMNS = ("path", "label", "prediction", "split", "score", "confidence")
# Below this, a norm or a class's median distance is zero: identical features, nothing to divide by.
_TINY = 1e-12


def outlier_scores(embedding: Embedding) -> np.ndarray:
    """Each image's score (see the module's docstring), in the embedding's order."""
    features = np.asarray(embedding.features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.maximum(norms, _TINY)
    labels = np.asarray(embedding.labels, dtype=object)
    scores = np.zeros(len(labels))
    for label in dict.fromkeys(labels.tolist()):
        members = np.flatnonzero(labels == label)
        if len(members) == 1:
            scores[members] = 1.0 - float(embedding.self_confidences[members[0]])
            continue
        distances = np.linalg.norm(unit[members] - unit[members].mean(axis=0), axis=1)
        scores[members] = distances / max(float(np.median(distances)), _TINY)
    return scores


def outliers(embedding: Embedding, top: int | None = 20) -> pd.DataFrame:
    """The `top` images least like their class (all of them with None), most unusual first: path,
    label, prediction, split, score and confidence (the probability of the prediction)."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a whole number of images, 1 or more. Received: top={top!r}")
    scores = outlier_scores(embedding)
    order = np.argsort(-scores, kind="stable")[:top]
    table = embedding.frame().iloc[order].assign(score=scores[order])
    return table[list(OUTLIER_COLUMNS)].reset_index(drop=True)


def run_outliers(run: Run, *, cache: Path, top: int | None = 20) -> pd.DataFrame:
    """The `top` outliers among every image of a run's dataset, from its (cached) embedding; see `outliers`."""
    return outliers(run_embedding(run, cache=cache), top)
