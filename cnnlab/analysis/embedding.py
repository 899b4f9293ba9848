"""The embedding map's data: every image's features as a run's model sees them, and their 2-D projections.

An image's features are what the model's classifier reads: the input of its last Dense layer (the
dense layer's output in a default CNN, the pooled backbone features under a backbone's head). One
batched pass over every image of the run's dataset, in all three splits, gives the features and the
class probabilities together; the result is kept in the run's folder (`EMBEDDING_FILE`), keyed by
the model file's size and time and by the dataset's fingerprint and version, so a second call runs
no model. Projections to 2-D: PCA in NumPy always; t-SNE (scikit-learn) and UMAP (umap-learn)
where their packages are installed.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnlab import data
from cnnlab.analysis.evaluate import class_probabilities, open_split, run_report
from cnnlab.common.checks import check_choice
from cnnlab.common.files import atomic_write
from cnnlab.runs.store import Run

EMBEDDING_FILE = "embedding.npz"
# Where the embedding of a run whose folder takes no files (the demo, a teammate's run) is kept, under the cache.
EMBEDDINGS_DIR = "embeddings"
# Bumped when the stored arrays change meaning, so an older file is computed again rather than misread.
FORMAT = 1
BATCH_SIZE = 64
FRAME_COLUMNS = ("path", "label", "prediction", "split", "correct", "confidence")
PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}  # method -> its name on screen
MIN_IMAGES = 3
# t-SNE's usual default; it must stay below the number of images (scikit-learn refuses otherwise).
TSNE_PERPLEXITY = 30.0
# t-SNE and UMAP run on this many principal components of wider features (the usual first step: faster, less noise).
NONLINEAR_INPUT_DIMS = 50

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class Embedding:
    """Every image of a run's dataset with the model's view of it, one row per image.

    `paths` (relative to the dataset root, as in `Entry.path`), `labels` (given), `predictions`,
    `splits` ("train", "validation" or "test") are tuples in the same order; `confidences` is the
    probability of each prediction, `self_confidences` the probability of each given label (cleanlab's
    self-confidence), and `features` (float32, N x D) the input of the model's classifier.
    """

    paths: tuple[str, ...]
    labels: tuple[str, ...]
    predictions: tuple[str, ...]
    splits: tuple[str, ...]
    confidences: np.ndarray
    self_confidences: np.ndarray
    features: np.ndarray

    def frame(self) -> pd.DataFrame:
        """One row per image: path, label, prediction, split, correct (prediction == label) and confidence."""
        labels, predictions = np.asarray(self.labels, dtype=object), np.asarray(self.predictions, dtype=object)
        return pd.DataFrame(
            {
                "path": list(self.paths),
                "label": labels,
                "prediction": predictions,
                "split": list(self.splits),
                "correct": labels == predictions,
                "confidence": np.asarray(self.confidences, dtype=np.float64),
            },
            columns=list(FRAME_COLUMNS),
        )

    def features_by_path(self) -> dict[str, np.ndarray]:
        """Each image's feature vector by its path (what `cnnlab.data.duplicates.find_duplicates` takes)."""
        return dict(zip(self.paths, self.features, strict=True))


def feature_model(model):
    """A model on `model`'s weights whose outputs are (features, model output): the classifier's input
    and what the model returns, so one pass gives both.

    The classifier is the model's last Dense layer, found the same way in a built CNN, under a
    backbone and in a model saved by an older CNN Lab (whatever its layers are named).
    """
    import keras

    classifier = next((layer for layer in reversed(model.layers) if isinstance(layer, keras.layers.Dense)), None)
    if classifier is None:
        raise ValueError(
            "The model has no Dense classifier layer, so it has no features to map; use a model built by CNN Lab. "
            f"Received: layers={[layer.name for layer in model.layers][-5:]}"
        )
    return keras.Model(model.inputs, [classifier.input, model.outputs[0]], name="features")


def run_embedding(run: Run, *, cache: Path, progress: Progress | None = None) -> Embedding:
    """Every image of the run's dataset (all splits) as its model sees it, from the run's cache when it is fresh.

    `cache` is the folder for the scan and decoded-image caches. `progress(done, total)` is called
    after each batch of a pass (a cached result needs none). The result is kept in the run's folder,
    or under `cache` for a run whose folder takes no files (the demo, a teammate's run); a run still
    training gets its embedding computed and not kept. A run without a model file is a ValueError.
    """
    if not run.model_path.is_file():
        raise ValueError(
            f"Run '{run.name}' has no saved model (it ended before its first epoch, or its model file was "
            f"removed), so it has no features to map; train a new run. Received: run={run.id!r}"
        )
    stored = stored_embedding(run, cache=cache)
    if stored is not None:
        return stored
    embedding = _compute(run, cache, progress)
    if run.status != "running":  # a training's folder is its own to write, and its model changes
        target = _cache_file(run, cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, _cache_key(run, cache), embedding)
    return embedding


def stored_embedding(run: Run, *, cache: Path) -> Embedding | None:
    """The run's embedding when one was computed from its model and dataset as they are now, else None
    (nothing is computed: what a page uses to confirm near-duplicates only when the map was drawn)."""
    if not run.model_path.is_file():
        return None
    return _read(_cache_file(run, cache), _cache_key(run, cache))


def _compute(run: Run, cache: Path, progress: Progress | None) -> Embedding:
    """One batched pass of the run's model over every image of its split."""
    import keras

    with open_split(run, cache=cache) as (prepared, parts):
        part_of = {int(i): part for part, indices in parts.items() for i in indices}
        indices = np.asarray(sorted(part_of), dtype=np.int64)
        total = len(indices)
        if not total:
            raise ValueError(
                "None of this run's images is in its dataset folder any more, so there is nothing to map; "
                f"restore the images or train a new run. Received: run={run.id!r}"
            )
        callbacks = []
        if progress is not None:
            callbacks.append(
                keras.callbacks.LambdaCallback(
                    on_predict_batch_end=lambda batch, logs: progress(min((batch + 1) * BATCH_SIZE, total), total)
                )
            )
        features, outputs = feature_model(run.load_model()).predict(
            data.make_dataset(prepared, indices, BATCH_SIZE), verbose=0, callbacks=callbacks
        )
        paths = tuple(prepared.report.files[i] for i in indices)
        label_index = prepared.labels[indices].astype(np.int64)
    probs = class_probabilities(outputs)
    predicted = probs.argmax(axis=1)
    names = np.asarray(run.class_names, dtype=object)
    return Embedding(
        paths=paths,
        labels=tuple(names[label_index]),
        predictions=tuple(names[predicted]),
        splits=tuple(part_of[int(i)] for i in indices),
        confidences=probs.max(axis=1),
        self_confidences=probs[np.arange(total), label_index],
        features=np.asarray(features, dtype=np.float32),
    )


def embedding_key(run: Run, cache: Path) -> str:
    """What the run's features are computed from (its model file as saved, its dataset as scanned); what
    results fitted on them (`cnnlab.analysis.novelty`) are keyed by, so they go stale together."""
    return _cache_key(run, cache)


def _cache_key(run: Run, cache: Path) -> str:
    """What the stored embedding was computed from: the model file as saved and the dataset as scanned."""
    model = run.model_path.stat()
    dataset = run.record.dataset
    return json.dumps(
        {
            "format": FORMAT,
            "model_size": model.st_size,
            "model_mtime_ns": model.st_mtime_ns,
            "dataset_fingerprint": run_report(run, cache).fingerprint,
            "dataset_version": dataset.version,
            "dataset_name": dataset.name,
        },
        sort_keys=True,
    )


def kept_path(run: Run, cache: Path, name: str) -> Path:
    """Where a file computed from a run's model and dataset (`name`: the embedding, or what is fitted on
    it) is kept: in the run's folder, or under `cache` by the run's id for a read-only run."""
    if run.is_demo or run.is_team_copy:  # read-only folders, shared by everyone who opens them
        return Path(cache) / EMBEDDINGS_DIR / (f"{run.id}.npz" if name == EMBEDDING_FILE else f"{run.id}-{name}")
    return run.path / name


def _cache_file(run: Run, cache: Path) -> Path:
    return kept_path(run, cache, EMBEDDING_FILE)


def _read(path: Path, key: str) -> Embedding | None:
    """The embedding stored at `path` when it was computed from `key`, else None (missing, stale or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            return Embedding(
                paths=tuple(stored["paths"].tolist()),
                labels=tuple(stored["labels"].tolist()),
                predictions=tuple(stored["predictions"].tolist()),
                splits=tuple(stored["splits"].tolist()),
                confidences=stored["confidences"],
                self_confidences=stored["self_confidences"],
                features=stored["features"],
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write(path: Path, key: str, embedding: Embedding) -> None:
    arrays: dict[str, Any] = {
        "key": np.asarray(key),
        "paths": np.asarray(embedding.paths, dtype=str),
        "labels": np.asarray(embedding.labels, dtype=str),
        "predictions": np.asarray(embedding.predictions, dtype=str),
        "splits": np.asarray(embedding.splits, dtype=str),
        "confidences": embedding.confidences,
        "self_confidences": embedding.self_confidences,
        "features": embedding.features,
    }
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)


def projection_methods() -> dict[str, str | None]:
    """Each projection method: None when it can be used here, else the one line that says what to install."""
    return {
        "pca": None,
        "tsne": None
        if importlib.util.find_spec("sklearn") is not None
        else "t-SNE needs scikit-learn, which is not installed; install it with `pip install scikit-learn`",
        "umap": None
        if importlib.util.find_spec("umap") is not None
        else "UMAP needs umap-learn, which is not installed; install it with `pip install umap-learn`",
    }


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """The rows of `features` (N x D) as N points in 2-D (float64), by "pca", "tsne" or "umap".

    PCA: the centred features on their first two principal components (SVD), each component's sign
    fixed so its largest loading is positive, so equal features always give the same map. t-SNE
    and UMAP start from the first `NONLINEAR_INPUT_DIMS` principal components and use `seed`.
    """
    check_choice("method", method, tuple(PROJECTIONS))
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_IMAGES:
        raise ValueError(
            f"A map needs the features of at least {MIN_IMAGES} images, one row each. "
            f"Received: features.shape={x.shape}"
        )
    missing = projection_methods()[method]
    if missing is not None:
        raise ValueError(f"{missing}. Received: method={method!r}")
    if method == "pca":
        return _principal_components(x, 2)
    reduced = _principal_components(x, NONLINEAR_INPUT_DIMS) if x.shape[1] > NONLINEAR_INPUT_DIMS else x
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(TSNE_PERPLEXITY, max(1.0, (len(x) - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return np.asarray(tsne.fit_transform(reduced), dtype=np.float64)
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=seed)
    return np.asarray(reducer.fit_transform(reduced), dtype=np.float64)


def _principal_components(x: np.ndarray, k: int) -> np.ndarray:
    """`x` centred and projected on its first `k` principal components (zero columns where it has fewer)."""
    centred = x - x.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:k]
    largest = np.abs(components).argmax(axis=1)
    components *= np.where(components[np.arange(len(components)), largest] < 0, -1.0, 1.0)[:, None]
    projected = centred @ components.T
    return np.pad(projected, ((0, 0), (0, k - projected.shape[1])))
