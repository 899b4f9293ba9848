"""The unfamiliar-image flag: is an image unlike anything the run's model was trained on?

A classifier always answers with one of its classes, however strange the image; the flag says when
the answer should not be trusted because the image is far from the training data as the model sees
it. An image's novelty score is its mean cosine distance (1 - cosine similarity of L2-normalised
features, `cnnlab.analysis.embedding.feature_model`) to its `K` nearest training images. The
threshold is the `QUANTILE` of the validation images' scores, so about 95% of images like the
validation images pass and an image above it is "farther from the training images than 95% of
validation images are". A run without validation images calibrates on its training images, each
scored without itself.

The fitted reference (training features, at most `MAX_REFERENCE` of them drawn at random so that
memory and scoring time stay bounded for a large dataset, and the threshold) is computed once from
the run's stored embedding and kept beside it (`NOVELTY_FILE`), keyed by the model file and the
dataset as the embedding is.
"""

from __future__ import annotations

import json
import weakref
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.analysis.embedding import embedding_key, feature_model, kept_path, run_embedding
from cnnlab.common.files import atomic_write
from cnnlab.runs.store import Run

NOVELTY_FILE = "novelty.npz"
K = 5
QUANTILE = 0.95
# Training features kept as the reference: 5,000 x 128 float32 is 2.5 MB, and scoring one image is a
# 5,000-long dot product per feature. A random draw (seeded) of a larger training split is kept.
MAX_REFERENCE = 5000
# Bumped when the stored arrays change meaning, so an older file is computed again rather than misread.
FORMAT = 1
# Queries are scored this many at a time, so the distance matrix stays at most 1,024 x MAX_REFERENCE.
_CHUNK = 1024
_TINY = 1e-12
# Up to this many images go through the model in one `predict_on_batch` call (as in `deploy.prediction`).
_SMALL_BATCH = 32
# Each loaded model's feature model, built once: a new Keras model traces its predict function again,
# which cost about 110 ms per call against a few ms for the pass itself (bench_trust.py).
_FEATURE_MODELS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class NoveltyFlag:
    """One image's novelty: its `score`, the run's `threshold`, and whether it is above it (`novel`)."""

    score: float
    threshold: float

    @property
    def novel(self) -> bool:
        """Whether the image is unlike the training images (its score is above the threshold)."""
        return self.score > self.threshold

    @property
    def explanation(self) -> str:
        """The one line shown with the prediction."""
        if self.novel:
            return f"unlike the training images: farther from them than {QUANTILE:.0%} of validation images are"
        return f"like the training images: as close to them as {QUANTILE:.0%} of validation images are"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `predict --json` prints per image)."""
        return {
            "unlike_training": self.novel,
            "score": self.score,
            "threshold": self.threshold,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, eq=False)
class NoveltyReference:
    """What the flag compares an image with: `features` (L2-normalised, float32, at most `MAX_REFERENCE`
    rows drawn from `num_train` training images), the `threshold` (the `QUANTILE` of the `num_calibration`
    calibration scores) and `calibrated_on` ("validation" or "train")."""

    features: np.ndarray
    threshold: float
    num_train: int
    num_calibration: int
    calibrated_on: str

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The novelty score of each row of `features` (raw model features, N x D)."""
        return knn_distance(unit_rows(features), self.features, K)

    def flags(self, features: np.ndarray) -> list[NoveltyFlag]:
        """One flag per row of `features`."""
        return [NoveltyFlag(float(s), self.threshold) for s in self.scores(features)]

    @property
    def capped(self) -> bool:
        """Whether the reference holds a random draw of the training images rather than all of them."""
        return len(self.features) < self.num_train


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (an all-zero row stays zero), as float32."""
    x = np.asarray(features, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _TINY)


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int, skip_self: bool = False) -> np.ndarray:
    """Mean cosine distance of each unit row of `queries` to its `k` nearest unit rows of `reference`;
    with `skip_self` (queries are the reference itself) each row's nearest neighbour, itself, is left out."""
    k = max(1, min(k, len(reference) - int(skip_self)))
    out = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), _CHUNK):
        distances = 1.0 - queries[start : start + _CHUNK] @ reference.T
        nearest = np.partition(distances, k - 1 + int(skip_self), axis=1)[:, : k + int(skip_self)]
        nearest = np.sort(nearest, axis=1)[:, int(skip_self) :]
        out[start : start + len(nearest)] = nearest.mean(axis=1)
    return np.maximum(out, 0.0)


def fit_reference(train: np.ndarray, validation: np.ndarray, seed: int = 0) -> NoveltyReference:
    """A reference from the training images' features and the validation images' (raw, N x D each).

    The threshold is the `QUANTILE` of the validation scores; with no validation image, of the
    training images' own scores (each without itself). Needs at least two training images.
    """
    if len(train) < 2:
        raise ValueError(
            "The unfamiliar-image flag needs the features of at least 2 training images to compare with; "
            f"train on more images. Received: num_train={len(train)}"
        )
    unit = unit_rows(train)
    if len(unit) > MAX_REFERENCE:
        keep = np.sort(np.random.default_rng(seed).choice(len(unit), MAX_REFERENCE, replace=False))
        unit = unit[keep]
    if len(validation):
        calibration, on = knn_distance(unit_rows(validation), unit, K), "validation"
    else:
        calibration, on = knn_distance(unit, unit, K, skip_self=True), "train"
    threshold = float(np.quantile(calibration, QUANTILE))
    return NoveltyReference(unit, threshold, len(train), len(calibration), on)


def run_reference(run: Run, *, cache: Path) -> NoveltyReference:
    """The run's fitted reference, from its folder when it was fitted on its model and dataset as they are now.

    Fitting needs the run's embedding (`run_embedding`: one pass over its dataset, itself kept);
    the reference is kept in the run's folder, or under `cache` for a read-only run (the demo, a
    teammate's), and not kept while the run trains. A run without a model, or whose dataset is not
    here, is a ValueError.
    """
    if not run.model_path.is_file():
        raise ValueError(
            f"Run '{run.name}' has no saved model, so there is nothing to compare images with; train a new run. "
            f"Received: run={run.id!r}"
        )
    key = json.dumps(
        {"format": FORMAT, "k": K, "quantile": QUANTILE, "cap": MAX_REFERENCE, "features": embedding_key(run, cache)}
    )
    path = kept_path(run, cache, NOVELTY_FILE)
    stored = _read(path, key)
    if stored is not None:
        return stored
    embedding = run_embedding(run, cache=cache)
    splits = np.asarray(embedding.splits, dtype=object)
    reference = fit_reference(embedding.features[splits == "train"], embedding.features[splits == "validation"])
    if run.status != "running":
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, key, reference)
    return reference


def image_features(model, arrays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """The features (the classifier's input) of images given as uint8 arrays of the model's input shape."""
    batch = np.asarray(np.stack(list(arrays)) if not isinstance(arrays, np.ndarray) else arrays, dtype=np.float32)
    if not len(batch):
        return np.zeros((0, 0), dtype=np.float32)
    features = _FEATURE_MODELS.get(model)
    if features is None:
        features = _FEATURE_MODELS[model] = feature_model(model)
    if len(batch) <= _SMALL_BATCH:
        return np.asarray(features.predict_on_batch(batch)[0], dtype=np.float32)
    return np.asarray(features.predict(batch, verbose=0)[0], dtype=np.float32)


def features_and_outputs(model, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One `predict_on_batch` pass of the model's feature model over a float32 batch: (features, the model's
    output), so a batch predictor gets its flags and its probabilities from the same pass."""
    features = _FEATURE_MODELS.get(model)
    if features is None:
        features = _FEATURE_MODELS[model] = feature_model(model)
    found, outputs = features.predict_on_batch(batch)
    return np.asarray(found, dtype=np.float32), np.asarray(outputs)


def flag_images(model, reference: NoveltyReference, arrays: Sequence[np.ndarray]) -> list[NoveltyFlag]:
    """One flag per image (uint8 arrays of the model's input shape, as `Prediction.image` holds)."""
    if not len(arrays):
        return []
    return reference.flags(image_features(model, arrays))


def save_reference(path: Path, reference: NoveltyReference) -> None:
    """Write `reference` to `path` on its own (the file a served model carries), atomically."""
    _write(path, "", reference)


def load_reference(path: Path) -> NoveltyReference:
    """The reference written by `save_reference` (or kept beside a run) at `path`."""
    reference = _read(path, None)
    if reference is None:
        raise ValueError(
            f"No unfamiliar-image reference could be read here; save the model again. Received: path={path.name!r}"
        )
    return reference


def _read(path: Path, key: str | None) -> NoveltyReference | None:
    """The reference stored at `path` when it was fitted from `key` (any, for None), else None (missing,
    stale or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if key is not None and str(stored["key"]) != key:
                return None
            return NoveltyReference(
                features=stored["features"],
                threshold=float(stored["threshold"]),
                num_train=int(stored["num_train"]),
                num_calibration=int(stored["num_calibration"]),
                calibrated_on=str(stored["calibrated_on"]),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write(path: Path, key: str, reference: NoveltyReference) -> None:
    with atomic_write(path, "wb") as fh:
        np.savez(
            fh,
            key=np.asarray(key),
            features=reference.features,
            threshold=np.asarray(reference.threshold),
            num_train=np.asarray(reference.num_train),
            num_calibration=np.asarray(reference.num_calibration),
            calibrated_on=np.asarray(reference.calibrated_on),
        )
