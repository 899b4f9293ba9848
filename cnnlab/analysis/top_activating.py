"""The training images that excite a channel most: every channel's mean activation over a run's
training split from one batched pass, cached with the run, and the top images ranked from it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.analysis.inspect import as_list, check_channel, find_layer, layer_file_name, sub_model
from cnnlab.common.files import atomic_write
from cnnlab.runs.store import Run

TOP_K = 9


@dataclass(frozen=True)
class TopImages:
    """The training images whose mean activation of one channel is highest, highest first."""

    layer: str
    channel: int
    images: np.ndarray  # uint8 (k, height, width, channels), the model's input
    paths: list[str]  # relative to the dataset root
    labels: list[str]
    scores: np.ndarray  # the channel's mean activation on each image


def channel_means(model, layers: Sequence[str], batches) -> dict[str, np.ndarray]:
    """Per image, the mean of every channel of each layer over its map: float32 (N, channels), one batched pass.

    `batches` is what `model.predict` takes: an array of raw images or a dataset of (images, labels).
    """
    import keras

    items = [find_layer(model, name) for name in layers]
    averaged = sub_model(model, [item.path for item in items], lambda t: keras.ops.mean(t, axis=(1, 2)))
    outputs = as_list(averaged.predict(batches, verbose=0))
    return {item.name: np.asarray(out, dtype=np.float32) for item, out in zip(items, outputs, strict=True)}


def top_indices(scores: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Indices of the `k` highest scores, highest first (ties keep their order)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:k]


def top_images(
    run: Run, model, layer: str, channel: int, k: int = TOP_K, *, cache: Path, batch_size: int = 64
) -> TopImages:
    """The run's `k` training images that activate `channel` of `layer` most, on average over its map.

    The means of all the layer's channels come from one batched pass over the run's training
    split and are kept in `inspect_folder(run)`, so other channels and later calls are instant.
    """
    from cnnlab import data
    from cnnlab.analysis.evaluate import open_split

    item = find_layer(model, layer)
    check_channel(item, channel)
    with open_split(run, cache=cache) as (prepared, parts):
        train = parts["train"]
        if not len(train):
            raise ValueError(f"Run '{run.name}' has no training images left in its dataset. Received: run={run.id!r}")
        key = _means_key(run, prepared, train)
        path = inspect_folder(run, cache) / f"{layer_file_name(item.name)}-{key}.npy"
        try:
            means = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            means = channel_means(model, [item.name], data.make_dataset(prepared, train, batch_size))[item.name]
            _save_means(path, means)
        order = top_indices(means[:, channel], k)
        chosen = train[order]
        names = prepared.report.class_names
        return TopImages(
            layer=item.name,
            channel=int(channel),
            images=np.asarray(prepared.images[chosen]),
            paths=[prepared.report.files[i] for i in chosen],
            labels=[names[prepared.labels[i]] for i in chosen],
            scores=means[order, channel],
        )


def inspect_folder(run: Run, cache: Path) -> Path:
    """Where a run's cached channel means live: `<run>/inspect`; the shared demo's go to the cache folder."""
    if run.is_demo:
        return cache / "inspect" / run.id
    return run.path / "inspect"


def _means_key(run: Run, prepared, train: np.ndarray) -> str:
    """Changes with the model file, the dataset's content, the preparation and the training split."""
    stat = run.model_path.stat()
    text = f"{stat.st_mtime_ns}-{stat.st_size}-{prepared.cache_path.name}-{train.tobytes().hex()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_means(path: Path, means: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    layer = path.name.rsplit("-", 1)[0]
    for stale in path.parent.glob(f"{layer}-*.npy"):  # an older model's or dataset's means
        if stale.name.rsplit("-", 1)[0] == layer:
            stale.unlink(missing_ok=True)
    with atomic_write(path, "wb") as fh:
        np.save(fh, means, allow_pickle=False)
