"""The training engine: one `train(...)` call from a folder to a saved, evaluated run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import backbones, data, evaluate
from cnnlab.augment import augmentation_model
from cnnlab.checks import check_choice, check_range
from cnnlab.imbalance import CLASS_WEIGHTS, class_weights
from cnnlab.model import ModelConfig, build_model, check_trainable, compile_model, find_backbone, unfreeze_top_layers
from cnnlab.precision import PRECISIONS, Precision, choose_precision, float32_copy
from cnnlab.runs import Run, RunStore
from cnnlab.sample import is_sample_dir
from cnnlab.schedules import LR_SCHEDULES, schedule_callbacks

if TYPE_CHECKING:
    from cnnlab.tracking import TrackingConfig

EpochCallback = Callable[[dict[str, Any]], None]
BatchCallback = Callable[[dict[str, Any]], None]
# Fine-tuning runs at this fraction of the head's learning rate, so the pretrained weights move gently.
FINE_TUNE_LR_FACTOR = 0.1
PHASES = ("head", "fine_tune")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: epochs, batch size, early stopping, seed, the data split, class weights, rate schedule, precision.

    `class_weight` is "auto" (weight classes inversely to their frequency when the largest has more
    than 1.5 times the images of the smallest), "balanced" (always) or "none"; `lr_schedule` is
    "constant", "reduce_on_plateau" (halve after 2 epochs without a better validation loss) or
    "cosine" (decay towards zero over `epochs`). `precision` is a Keras dtype policy name or "auto"
    (see `cnnlab.precision.choose_precision`).

    With a backbone, `epochs` train the new head on the frozen backbone; then, when both
    `fine_tune_layers` and `fine_tune_epochs` are above 0, the backbone's top `fine_tune_layers`
    layers (its batch normalisation excepted) train with the head for `fine_tune_epochs` more
    epochs at a tenth of the learning rate, held constant (`lr_schedule` shapes the head's epochs).
    A conv-block CNN trains all its layers from the start, so it has no fine-tuning phase.
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
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1, 1000, int)
        check_range("fine_tune_layers", self.fine_tune_layers, 0, 1000, int)
        check_range("fine_tune_epochs", self.fine_tune_epochs, 0, 1000, int)
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
    tracking: TrackingConfig | None = None,
    on_download: backbones.DownloadProgress | None = None,
) -> Run:
    """Train a model on a class-folder dataset and save it as a run in `store`.

    `cache` is the folder for the scan and decoded-image caches, whose decoded arrays may take
    `max_cache_mb` in all (least recently used ones are evicted; the one in use is leased for the
    whole training); a model whose training step would need more than `max_training_mb` is
    refused before anything is built. A backbone's
    ImageNet weights are downloaded next (`on_download(bytes)` reports it), before any run folder
    exists, so a failed download leaves nothing behind. `on_epoch` gets each epoch's metrics row,
    `on_batch` each batch's progress; setting `stop_event` ends training after the current batch,
    keeping the best weights (status "stopped"). The saved model is the one with the lowest
    validation loss, evaluated on the held-out test split. `tags` adds fields to the run record
    (for example `sweep` or `owner`); `run_id` names the run's folder (default: a new time-stamped
    name). With `tracking`, the run is also published to the team tracking server as it trains
    (best effort, see `cnnlab.publisher`).
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    report = data.scan(data_dir, cache=cache)
    check_trainable(model_config, report.num_classes, train_config.batch_size, max_training_mb)
    backbones.prepare_weights(model_config.backbone, model_config.backbone_weights, on_download)
    parts = data.split(report.labels, train_config.validation_split, train_config.test_split, train_config.seed)
    settings = (model_config.image_size, model_config.color_mode, model_config.resize_mode)
    precision = choose_precision(train_config.precision)
    with data.open_prepared(report, *settings, cache=cache, max_cache_mb=max_cache_mb) as prepared:
        record = {**_record(report, model_config, train_config, name, tags), "precision": precision.to_dict()}
        run = store.create(record, _split_paths(report, parts), run_id)
        publisher = _publisher(tracking, run)
        if publisher is not None:
            on_epoch = _both(publisher.log_epoch, on_epoch)
        try:
            _fit_and_finish(
                run, prepared, parts, model_config, train_config, precision, on_epoch, on_batch, stop_event, callbacks
            )
        finally:
            if publisher is not None:
                publisher.close(run)
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


def _publisher(tracking: TrackingConfig | None, run: Run):
    """A live publisher of the run to the team server, or None without team tracking (MLflow never imported)."""
    if tracking is None:
        return None
    from cnnlab.publisher import Publisher

    return Publisher(tracking, run)


def _both(first: EpochCallback, second: EpochCallback | None) -> EpochCallback:
    def call(row: dict[str, Any]) -> None:
        first(row)
        if second is not None:
            second(row)

    return call


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
    train_ds = _augmented(
        data.make_dataset(prepared, parts["train"], train_config.batch_size, shuffle=True, seed=train_config.seed),
        model_config,
    )
    val_ds = (
        data.make_dataset(prepared, parts["validation"], train_config.batch_size) if len(parts["validation"]) else None
    )
    steps = int(np.ceil(len(parts["train"]) / train_config.batch_size))
    epochs = planned_epochs(model_config, train_config)
    progress = TrainingProgress(
        run, steps, len(parts["train"]), train_config.batch_size, epochs, on_epoch, on_batch, stop_event
    )
    monitor = "val_loss" if val_ds is not None else "loss"
    weights = class_weights(prepared.labels[parts["train"]], prepared.report.num_classes, train_config.class_weight)
    run.update(class_weights=weights and {name: weights[i] for i, name in enumerate(prepared.report.class_names)})

    def fit(initial_epoch: int, epochs: int, schedule: list) -> None:
        extra = [*(callbacks or []), *schedule]
        if train_config.patience:
            extra.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=train_config.patience))
        model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=initial_epoch,
            epochs=epochs,
            callbacks=[progress, *extra],
            class_weight=weights,
            shuffle=False,
            verbose=0,
        )

    if stop_event is None or not stop_event.is_set():
        if find_backbone(model) is not None:
            run.update(phase=PHASES[0])
        fit(
            0,
            train_config.epochs,
            schedule_callbacks(train_config.lr_schedule, model_config.learning_rate, train_config.epochs, monitor),
        )
        _fine_tune(run, model, model_config, train_config, precision.policy, progress, fit)
    else:
        progress.stopped_by_user = True
    if progress.best_weights is not None:
        model.set_weights(progress.best_weights)
    # Evaluated as it is saved: in float32, whatever the training precision.
    return progress, float32_copy(model)


def planned_epochs(model_config: ModelConfig, train_config: TrainConfig) -> int:
    """Epochs a training runs unless stopped early: the head's, plus fine-tuning's with a backbone."""
    fine_tunes = model_config.backbone != backbones.NO_BACKBONE and train_config.fine_tune_layers > 0
    return train_config.epochs + (train_config.fine_tune_epochs if fine_tunes else 0)


def _augmented(dataset, model_config: ModelConfig):
    """The training batches through the config's random augmentation (the saved model holds none)."""
    import tensorflow as tf

    augment = augmentation_model(model_config)
    if augment is None:
        return dataset
    # One batch at a time: the layers draw from one seed generator, so batches augmented in
    # parallel would draw in a racing order and the same seed would not give the same training.
    return dataset.map(lambda images, labels: (augment(tf.cast(images, tf.float32), training=True), labels)).prefetch(
        tf.data.AUTOTUNE
    )


def _fine_tune(
    run: Run, model, model_config: ModelConfig, train_config: TrainConfig, policy: str, progress, fit
) -> None:
    """The second phase of transfer learning: the backbone's top layers train too, at a lower rate.

    It starts from the best head and continues the epoch count, so both phases make one history;
    the run records where it started (`fine_tune`), which is what a resume needs to pick it up.
    """
    backbone = find_backbone(model)
    done = progress.epochs_done
    wanted = train_config.fine_tune_layers and train_config.fine_tune_epochs
    if backbone is None or not wanted or progress.stopped_by_user or progress.best_weights is None:
        return
    model.set_weights(progress.best_weights)
    layers = unfreeze_top_layers(backbone, train_config.fine_tune_layers)
    learning_rate = model_config.learning_rate * FINE_TUNE_LR_FACTOR
    compile_model(model, model_config, learning_rate, policy)
    progress.phase, progress.epochs = PHASES[1], done + train_config.fine_tune_epochs
    run.update(
        phase=PHASES[1],
        fine_tune={"start_epoch": done + 1, "layers": layers, "learning_rate": learning_rate},
    )
    fit(done, progress.epochs, [])


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
