"""The training engine: one `train(...)` call from a folder to a saved, evaluated run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data, evaluate
from cnnlab.checks import check_choice, check_range
from cnnlab.imbalance import CLASS_WEIGHTS, class_weights
from cnnlab.model import ModelConfig, build_model, check_trainable
from cnnlab.precision import PRECISIONS, Precision, choose_precision, float32_copy
from cnnlab.runs import Run, RunStore
from cnnlab.sample import is_sample_dir
from cnnlab.schedules import LR_SCHEDULES, schedule_callbacks

EpochCallback = Callable[[dict[str, Any]], None]
BatchCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: epochs, batch size, early stopping, seed, the data split, class weights, rate schedule, precision.

    `class_weight` is "auto" (weight classes inversely to their frequency when the largest has more
    than 1.5 times the images of the smallest), "balanced" (always) or "none"; `lr_schedule` is
    "constant", "reduce_on_plateau" (halve after 2 epochs without a better validation loss) or
    "cosine" (decay towards zero over `epochs`). `precision` is a Keras dtype policy name or "auto"
    (see `cnnlab.precision.choose_precision`).
    """

    epochs: int = 10
    batch_size: int = 32
    patience: int = 4
    seed: int = 1337
    validation_split: float = 0.15
    test_split: float = 0.15
    class_weight: str = "auto"
    lr_schedule: str = "constant"
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1, 1000, int)
        check_range("batch_size", self.batch_size, 1, 1024, int)
        check_range("patience", self.patience, 0, 1000, int)
        check_range("seed", self.seed, 0, 2**31 - 1, int)
        data.check_fractions(self.validation_split, self.test_split)
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict` output, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def train(
    data_dir: str | Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    store: RunStore,
    cache: Path,
    max_training_mb: int | None = None,
    max_cache_mb: int | None = None,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    stop_event: threading.Event | None = None,
    name: str | None = None,
    tags: dict[str, Any] | None = None,
    callbacks: list | None = None,
    run_id: str | None = None,
) -> Run:
    """Train a model on a class-folder dataset and save it as a run in `store`.

    `cache` is the folder for the scan and decoded-image caches, whose decoded arrays may take
    `max_cache_mb` in all (least recently used ones are evicted; the one in use is leased for the
    whole training); a model whose training step would need more than `max_training_mb` is
    refused before anything is built. `on_epoch` gets each epoch's metrics row, `on_batch` each
    batch's progress; setting `stop_event` ends training after the current batch, keeping the
    best weights (status "stopped"). The saved
    model is the one with the lowest validation loss, evaluated on the held-out test split.
    `tags` adds fields to the run record (for example `sweep` or `owner`); `run_id` names the
    run's folder (default: a new time-stamped name).
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    report = data.scan(data_dir, cache=cache)
    check_trainable(model_config, report.num_classes, train_config.batch_size, max_training_mb)
    parts = data.split(report.labels, train_config.validation_split, train_config.test_split, train_config.seed)
    settings = (model_config.image_size, model_config.color_mode, model_config.resize_mode)
    precision = choose_precision(train_config.precision)
    with data.open_prepared(report, *settings, cache=cache, max_cache_mb=max_cache_mb) as prepared:
        record = {**_record(report, model_config, train_config, name, tags), "precision": precision.to_dict()}
        run = store.create(record, _split_paths(report, parts), run_id)
        _fit_and_finish(
            run, prepared, parts, model_config, train_config, precision, on_epoch, on_batch, stop_event, callbacks
        )
    return run


def _fit_and_finish(
    run, prepared, parts, model_config, train_config, precision, on_epoch, on_batch, stop_event, callbacks
):
    """Train, save and evaluate the run; any failure marks it failed before it is raised."""
    started = time.perf_counter()
    try:
        progress, model = _fit(
            run, prepared, parts, model_config, train_config, precision, on_epoch, on_batch, stop_event, callbacks
        )
        _finish(run, model, prepared, parts, progress, started)
    except BaseException as exc:
        # Also covers the final evaluation, so a run is never left "running" by its own process.
        run.update(
            status="failed", error=f"{type(exc).__name__}: {exc}", duration_s=round(time.perf_counter() - started, 2)
        )
        raise


def _record(report, model_config, train_config, name, tags) -> dict[str, Any]:
    return {
        "name": name,
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "class_names": list(report.class_names),
        "dataset": {
            "path": str(report.root),
            "fingerprint": report.fingerprint,
            "num_images": len(report.files),
            "counts": report.counts,
            # The sample is regenerated identically on any machine, so the run can find it again.
            **({"builtin": "sample"} if is_sample_dir(report.root) else {}),
        },
        **(tags or {}),
    }


def _split_paths(report: data.DatasetReport, parts: dict[str, np.ndarray]) -> dict[str, list[str]]:
    return {name: [report.files[i] for i in idx] for name, idx in parts.items()}


def _fit(
    run, prepared, parts, model_config, train_config, precision: Precision, on_epoch, on_batch, stop_event, callbacks
):
    """Train a model with the progress callback; returns the callback and the float32 model, holding its best weights."""
    import keras

    from cnnlab.progress import TrainingProgress

    keras.utils.set_random_seed(train_config.seed)
    model = build_model(model_config, prepared.report.num_classes, precision.policy)
    train_ds = data.make_dataset(
        prepared, parts["train"], train_config.batch_size, shuffle=True, seed=train_config.seed
    )
    val_ds = (
        data.make_dataset(prepared, parts["validation"], train_config.batch_size) if len(parts["validation"]) else None
    )
    steps = int(np.ceil(len(parts["train"]) / train_config.batch_size))
    progress = TrainingProgress(
        run, steps, len(parts["train"]), train_config.batch_size, train_config.epochs, on_epoch, on_batch, stop_event
    )
    monitor = "val_loss" if val_ds is not None else "loss"
    extra = [
        *(callbacks or []),
        *schedule_callbacks(train_config.lr_schedule, model_config.learning_rate, train_config.epochs, monitor),
    ]
    if train_config.patience:
        extra.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=train_config.patience))
    weights = class_weights(prepared.labels[parts["train"]], prepared.report.num_classes, train_config.class_weight)
    run.update(class_weights=weights and {name: weights[i] for i, name in enumerate(prepared.report.class_names)})
    if stop_event is None or not stop_event.is_set():
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=train_config.epochs,
            callbacks=[progress, *extra],
            class_weight=weights,
            shuffle=False,
            verbose=0,
        )
    else:
        progress.stopped_by_user = True
    if progress.best_weights is not None:
        model.set_weights(progress.best_weights)
    # Evaluated as it is saved: in float32, whatever the training precision.
    return progress, float32_copy(model)


def _finish(run: Run, model, prepared, parts, progress, started: float) -> None:
    history = run.history
    metrics: dict[str, Any] = {}
    if progress.best_weights is not None:
        evaluation = evaluate.evaluate_prepared(model, prepared, parts["test"])
        evaluate.save_evaluation(run, evaluation)
        metrics = {
            "test_accuracy": evaluation.accuracy,
            "test_loss": evaluation.loss,
            "test_balanced_accuracy": evaluation.balanced_accuracy,
            "test_macro_f1": evaluation.macro_f1,
        }
    for key, pick in (("best_val_accuracy", max), ("best_val_loss", min)):
        values = [row[key.replace("best_", "")] for row in history if key.replace("best_", "") in row]
        if values:
            metrics[key] = pick(values)
    if history:
        metrics["train_images_per_s"] = float(np.median([row["images_per_s"] for row in history]))
    run.update(
        status="stopped" if progress.stopped_by_user else "completed",
        metrics=metrics,
        best_epoch=progress.best_epoch,
        duration_s=round(time.perf_counter() - started, 2),
        num_train=len(parts["train"]),
    )
