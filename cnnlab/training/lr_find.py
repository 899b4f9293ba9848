"""The learning-rate finder: a short training run with an exponentially growing rate.

Leslie Smith's range test as fastai popularised it: train a fresh model for a few dozen batches
while the rate grows from `min_lr` to `max_lr`, record the (smoothed) loss at each rate, and
suggest a rate a tenth of the one where the loss was lowest, where it still falls steeply and is
well short of where training blows up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data
from cnnlab.common.checks import check_range
from cnnlab.data.imbalance import class_weights
from cnnlab.model import ModelConfig, build_model, check_trainable
from cnnlab.model.backbones import prepare_weights
from cnnlab.runs.workspace import Workspace
from cnnlab.training import memory
from cnnlab.training.source import training_data

# Exponential moving average of the loss: one batch's loss is too noisy to read a curve from.
SMOOTHING = 0.9
# Stop once the smoothed loss is this many times its lowest value: the rate is far too high.
DIVERGED = 4.0


@dataclass(frozen=True)
class LRFinderResult:
    """Rates tried (one per batch), the raw and smoothed loss at each, and the suggested rate."""

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggested_learning_rate: float
    min_lr: float
    max_lr: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what `lr-find --json` prints)."""
        return asdict(self)


def find_learning_rate(
    data_dir: str | Path,
    model_config: ModelConfig | None = None,
    train_config=None,
    *,
    workspace: Workspace,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_steps: int = 100,
    dataset_version: int | None = None,
) -> LRFinderResult:
    """Run the range test on a dataset's training split with a fresh model built from `model_config`.

    `train_config` (a `TrainConfig`) gives the batch size, seed, split and class weighting, as a
    training would use them; the workspace's cache holds the scan and decoded images, and its
    `max_training_mb` refuses a model too big for this server. With the workspace's `datasets`
    folder, it runs on a version of the dataset (`dataset_version`, default: the latest) and its
    training split, as `train` does. Nothing is saved.
    """
    import keras

    from cnnlab.training.engine import TrainConfig

    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    check_range("min_lr", min_lr, 1e-6, 1.0, float)
    check_range("max_lr", max_lr, 1e-6, 10.0, float)
    check_range("num_steps", num_steps, 10, 1000, int)
    if min_lr >= max_lr:
        raise ValueError(f"min_lr must be below max_lr. Received: min_lr={min_lr}, max_lr={max_lr}")
    source = training_data(data_dir, train_config, workspace, dataset_version)
    report = source.report
    check_trainable(model_config, report.num_classes, train_config.batch_size, workspace.max_training_mb)
    prepare_weights(model_config.backbone, model_config.backbone_weights)
    prepared = data.prepare(
        report, model_config.image_size, model_config.color_mode, model_config.resize_mode, cache=workspace.cache
    )
    report = prepared.report  # without the files that turned out not to decode
    parts = source.parts(report, train_config)
    keras.utils.set_random_seed(train_config.seed)
    model = build_model(model_config, report.num_classes)
    # As many epochs as it may need batches: each epoch yields at least one, and they are drawn lazily.
    batches = data.make_dataset(
        prepared, parts["train"], train_config.batch_size, shuffle=True, seed=train_config.seed, epochs=range(num_steps)
    )
    weights = class_weights(prepared.labels[parts["train"]], report.num_classes, train_config.class_weight)
    rates = np.geomspace(min_lr, max_lr, num_steps)
    try:
        losses = range_test(model, batches, rates, weights)
    finally:  # the app runs this in a page's script thread, outside any job: give back here
        memory.release_training_graphs()
        memory.give_back_freed_memory()
    smoothed = smooth(losses)
    return LRFinderResult(
        learning_rates=rates[: len(losses)].tolist(),
        losses=losses,
        smoothed_losses=smoothed,
        suggested_learning_rate=suggest(rates[: len(losses)], smoothed),
        min_lr=min_lr,
        max_lr=max_lr,
    )


def range_test(model, batches, rates: np.ndarray, class_weight: dict[int, float] | None = None) -> list[float]:
    """Train `model` one batch per rate in `rates`, returning each batch's loss; stops early once it diverges."""
    losses: list[float] = []
    best, average = np.inf, 0.0
    for step, (x, y) in enumerate(batches.take(len(rates))):
        model.optimizer.learning_rate = float(rates[step])
        loss = float(model.train_on_batch(x, y, class_weight=class_weight, return_dict=True)["loss"])
        losses.append(loss)
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        current = average / (1 - SMOOTHING ** (step + 1))
        if not np.isfinite(current) or (step > 5 and current > DIVERGED * best):
            break
        best = min(best, current)
    return losses


def smooth(losses: list[float]) -> list[float]:
    """Bias-corrected exponential moving average of the losses."""
    out, average = [], 0.0
    for step, loss in enumerate(losses):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        out.append(average / (1 - SMOOTHING ** (step + 1)))
    return out


def suggest(rates: np.ndarray, smoothed: list[float]) -> float:
    """A tenth of the rate with the lowest smoothed loss, kept inside the tested range."""
    values = np.asarray(smoothed, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(
            "The loss was not finite at any rate tried; lower min_lr or check the data. "
            f"Received: min_lr={float(rates[0]):g}"
        )
    lowest = int(np.argmin(np.where(finite, values, np.inf)))
    return float(np.clip(rates[lowest] / 10, rates[0], rates[-1]))
