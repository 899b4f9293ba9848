"""The training engine: one `train(...)` call from a folder to a saved, evaluated run."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import data
from cnnlab.analysis import evaluate
from cnnlab.data.imbalance import class_weights
from cnnlab.data.sample import is_sample_dir
from cnnlab.model import (
    ModelConfig,
    backbones,
    build_model,
    check_trainable,
    compile_model,
    find_backbone,
    unfreeze_top_layers,
)
from cnnlab.model.precision import Precision, choose_precision, float32_copy
from cnnlab.runs import heartbeat
from cnnlab.runs.record import DatasetInfo, FineTuning, Metrics, RunRecord
from cnnlab.runs.store import Run
from cnnlab.runs.workspace import Workspace
from cnnlab.training import memory
from cnnlab.training.augmenting import augmented_batches
from cnnlab.training.config import TrainConfig
from cnnlab.training.devices import Devices, choose_devices, strategy_for
from cnnlab.training.hooks import RowCallback, TrainingHooks
from cnnlab.training.schedules import schedule_callbacks
from cnnlab.training.source import TrainingData, training_data

if TYPE_CHECKING:
    from cnnlab.team.tracking import TrackingConfig

# Fine-tuning runs at this fraction of the head's learning rate, so the pretrained weights move gently.
FINE_TUNE_LR_FACTOR = 0.1
PHASES = ("head", "fine_tune")
# A run's record lists this many of the files that failed to decode (and counts them all).
MAX_RECORDED_UNREADABLE = 100


@dataclass(frozen=True)
class Start:
    """Where a training starts: from scratch, or after `epoch` epochs from a saved state.

    `state` is a checkpoint's state (see `cnnlab.training.checkpoint`) in `folder`: the run's own, to
    resume it (`with_best`: its best weights and the callbacks' counters carry on), or its
    parent's, to continue it as a new run (they start afresh).
    """

    epoch: int = 0
    folder: Path | None = None
    state: dict[str, Any] | None = None
    with_best: bool = False


def train(
    data_dir: str | Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    workspace: Workspace,
    hooks: TrainingHooks = TrainingHooks(),
    name: str | None = None,
    tags: dict[str, Any] | None = None,
    run_id: str | None = None,
    precision: Precision | None = None,
    dataset_version: int | None = None,
) -> Run:
    """Train a model on a class-folder dataset and save it as a run in the workspace's store.

    With the workspace's `datasets` folder, it trains on a version of the dataset (`dataset_version`,
    default: the latest; see `cnnlab.training.source`): `data_dir` may then also be the name of a
    dataset made in CNN Lab, the split is the version's, and the run records which version it was.

    The workspace's cache holds the scan and decoded images (the decoded arrays in use are leased
    for the whole training); a model over its `max_training_mb` is refused before anything is
    built. A backbone's ImageNet weights are downloaded next (`hooks.on_download` reports it),
    before any run folder exists, so a failed download leaves nothing behind. `hooks` get the
    epochs and batches; their `stop_event` ends training after the current batch, keeping the best
    weights (status "stopped"). The saved model is the one with the lowest validation loss,
    evaluated on the held-out test split. `tags` sets fields of the run's `RunRecord` by name (for
    example `sweep` as a `SweepTrial`; the workspace's owner is set); `run_id` names the run's
    folder (default: a new time-stamped name). `precision` is `train_config.precision` resolved
    for this machine, as a `training_plan` showed it (default: resolved here); it is resolved once
    and recorded, as are the devices (the workspace's `devices`, see `cnnlab.training.devices`). With
    the workspace's `tracking`, the run is also published to the team tracking server as it trains
    (best effort, see `cnnlab.team.publisher`).
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    source = training_data(data_dir, train_config, workspace, dataset_version)
    train_config = source.recorded_config(train_config)
    report = source.report
    check_trainable(
        model_config,
        report.num_classes,
        train_config.batch_size,
        max_training_mb=workspace.max_training_mb,
        fine_tune_layers=train_config.tuned_layers,
    )
    devices = choose_devices(train_config.batch_size, workspace.devices)  # refused before a run folder exists
    backbones.prepare_weights(model_config.backbone, model_config.backbone_weights, hooks.on_download)
    settings = (model_config.image_size, model_config.color_mode, model_config.resize_mode)
    precision = _resolved(precision, train_config)
    with data.open_prepared(report, *settings, cache=workspace.cache, max_cache_mb=workspace.max_cache_mb) as prepared:
        report = prepared.report  # without the files that turned out not to decode
        parts = source.parts(report, train_config)
        record = _record(prepared, model_config, train_config, name=name, precision=precision, source=source)
        record = replace(record, **{**(tags or {}), **workspace.owner_tag})
        run = workspace.store.create(record, _split_paths(report, parts), run_id)
        return train_run(run, prepared, parts, hooks=hooks, tracking=workspace.tracking, devices=devices)


def _resolved(precision: Precision | None, train_config: TrainConfig) -> Precision:
    """The training's precision: the one resolved for it, which must answer its config's request, else resolved now."""
    if precision is None:
        return choose_precision(train_config.precision)
    if precision.requested != train_config.precision:
        raise ValueError(
            f"The precision was resolved for precision={precision.requested!r}, but the training asks for "
            f"precision={train_config.precision!r}; plan the training again. Received: precision={precision.policy!r}"
        )
    return precision


def train_run(
    run: Run,
    prepared: data.PreparedData,
    parts: dict[str, np.ndarray],
    start: Start = Start(),
    *,
    hooks: TrainingHooks = TrainingHooks(),
    tracking: TrackingConfig | None = None,
    devices: Devices | None = None,
) -> Run:
    """Train a created run from `start` up to its planned epochs, then evaluate and finish it.

    The run's heartbeat beats while it trains, and every complete epoch leaves a resumable
    checkpoint in the run folder; the record's configs and precision say what to train (and,
    once a backbone's fine-tuning started, `fine_tune`: which phase a saved state belongs to).
    `prepared` must stay readable throughout (held under `data.open_prepared`'s lease). With
    `tracking`, the new epochs and the outcome are published to the team server (a resumed run
    is found there again by its key). It trains on `devices` (default: every local GPU), which the run records.
    """
    model_config = run.model_config()
    train_config = run.train_config()
    run.update(devices=devices or choose_devices(train_config.batch_size))
    precision = run.record.precision or choose_precision(train_config.precision)
    publisher = _publisher(tracking, run)
    if publisher is not None:
        hooks = replace(hooks, on_epoch=_both(publisher.log_epoch, hooks.on_epoch))
    # A resumed run's duration includes the epochs it keeps.
    started = time.perf_counter() - sum(row.seconds for row in run.history)
    try:
        with heartbeat.beating(run.path):
            progress, model = _fit(
                run,
                prepared,
                parts,
                model_config=model_config,
                train_config=train_config,
                precision=precision,
                start=start,
                hooks=hooks,
            )
            _check_learned(progress, model_config)
            _finish(run, model, prepared, parts, progress=progress, started=started)
    except BaseException as exc:
        # Also covers the final evaluation, so a run is never left "running" by its own process.
        run.update(
            status="failed", error=f"{type(exc).__name__}: {exc}", duration_s=round(time.perf_counter() - started, 2)
        )
        raise
    finally:
        if publisher is not None:
            publisher.close(run)
    return run


def _publisher(tracking: TrackingConfig | None, run: Run):
    """A live publisher of the run to the team server, or None without team tracking (MLflow never imported)."""
    if tracking is None:
        return None
    from cnnlab.team.publisher import Publisher

    return Publisher(tracking, run)


def _both(first: RowCallback, second: RowCallback | None) -> RowCallback:
    def call(row: dict[str, Any]) -> None:
        first(row)
        if second is not None:
            second(row)

    return call


def _record(
    prepared,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    name: str | None,
    precision: Precision,
    source: TrainingData,
) -> RunRecord:
    report = prepared.report
    dataset = DatasetInfo(
        path=str(report.root),
        fingerprint=report.fingerprint,
        num_images=len(report.files),
        counts=report.counts,
        # The files left out because they failed to decode: all counted, a bounded list named.
        num_unreadable=len(prepared.unreadable),
        unreadable=prepared.unreadable[:MAX_RECORDED_UNREADABLE],
        # The sample is regenerated identically on any machine, so the run can find it again.
        builtin="sample" if is_sample_dir(report.root) else None,
        **source.version_fields(),
    )
    return RunRecord(
        name=name or "",
        model_config=model_config.to_dict(),
        train_config=train_config.to_dict(),
        class_names=tuple(report.class_names),
        dataset=dataset,
        precision=precision,
    )


def _split_paths(report: data.DatasetReport, parts: dict[str, np.ndarray]) -> dict[str, list[str]]:
    return {name: [report.files[i] for i in idx] for name, idx in parts.items()}


def _fit(
    run,
    prepared,
    parts,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    precision: Precision,
    start: Start,
    hooks: TrainingHooks,
):
    """Train a model with the progress and checkpoint callbacks, from `start`; returns the callback
    and the float32 model, holding its best weights."""
    import keras

    from cnnlab.training import checkpoint
    from cnnlab.training.progress import TrainingProgress

    keras.utils.set_random_seed(train_config.seed)
    # The model and its optimizer are made (and their state restored) in the strategy's scope, which Keras keeps.
    with strategy_for(run.record.devices).scope():
        model = build_model(model_config, prepared.report.num_classes, precision.policy)
        tuning = _fine_tuning_at(run, start)
        if tuning is not None:  # the saved state is fine-tuning's: its layers train, its optimizer is the new one
            unfreeze_top_layers(find_backbone(model), train_config.fine_tune_layers)
            compile_model(model, model_config, tuning.learning_rate, precision.policy)
        best = None
        if start.state is not None and start.folder is not None:
            best = checkpoint.restore(model, start.folder, start.state, start.with_best)
            if best is None and start.with_best and start.state.get("best_epoch"):
                best = _saved_best(run, model)
    val_ds = (
        data.make_dataset(prepared, parts["validation"], train_config.batch_size) if len(parts["validation"]) else None
    )
    steps = int(np.ceil(len(parts["train"]) / train_config.batch_size))
    epochs = run_epochs(run)
    progress = TrainingProgress(
        run,
        steps=steps,
        num_train=len(parts["train"]),
        batch_size=train_config.batch_size,
        epochs=epochs,
        hooks=hooks,
        initial_epoch=start.epoch,
    )
    if best is not None and start.state is not None:
        _keep_best(run, model, progress, best=best, state=start.state)
    monitor = "val_loss" if val_ds is not None else "loss"
    weights = class_weights(prepared.labels[parts["train"]], prepared.report.num_classes, train_config.class_weight)
    run.update(class_weights=weights and {name: weights[i] for i, name in enumerate(prepared.report.class_names)})
    carried = (start.state or {}).get("callbacks") if start.with_best else None

    def fit(initial_epoch: int, epochs: int, schedule: list, carried: dict | None = None) -> None:
        """One phase's `model.fit`; `carried`: the callbacks' counters of a state saved in this phase."""
        extra = [*hooks.callbacks, *schedule]
        if train_config.patience:
            extra.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=train_config.patience))
        saver = checkpoint.ResumableCheckpoint(run.checkpoint_dir, progress, extra, carried)
        batches = data.make_dataset(
            prepared,
            parts["train"],
            train_config.batch_size,
            shuffle=True,
            seed=train_config.seed,
            epochs=range(initial_epoch, epochs),
        )
        try:
            model.fit(
                augmented_batches(batches, model_config, train_config.seed, initial_epoch * steps),
                validation_data=val_ds,
                steps_per_epoch=steps,
                initial_epoch=initial_epoch,
                epochs=epochs,
                callbacks=[progress, *extra, saver],
                class_weight=weights,
                shuffle=False,
                verbose=0,
            )
        finally:  # else TensorFlow keeps every traced training step for the life of the process
            memory.release_training_graphs()

    ended = start.with_best and bool((start.state or {}).get("finished"))  # it had stopped early, then died
    if hooks.stop_requested:
        progress.stopped_by_user = True
    elif tuning is not None:
        progress.phase = PHASES[1]
        if start.epoch < epochs and not ended:
            fit(start.epoch, epochs, [], carried)
    else:
        if find_backbone(model) is not None:
            run.update(phase=PHASES[0])
        if start.epoch < train_config.epochs and not ended:
            head = schedule_callbacks(
                train_config.lr_schedule, model_config.learning_rate, train_config.epochs, monitor
            )
            fit(start.epoch, train_config.epochs, head, carried)
        _fine_tune(
            run, model, progress, fit, model_config=model_config, train_config=train_config, policy=precision.policy
        )
    if progress.best_weights is not None:
        model.set_weights(progress.best_weights)
    # Evaluated as it is saved: in float32, whatever the training precision.
    return progress, float32_copy(model)


def _saved_best(run: Run, model) -> list:
    """The best epoch's weights of a run killed after its training ended (its checkpoint gave up their
    copy, `checkpoint.keep_latest_only`) and before it was marked completed: its saved model holds them.
    The model is left holding the latest epoch's, as `checkpoint.restore` leaves it."""
    latest = model.get_weights()
    model.load_weights(run.model_path)
    best = model.get_weights()
    model.set_weights(latest)
    return best


def _fine_tuning_at(run: Run, start: Start) -> FineTuning | None:
    """The run's fine-tuning record when the state it starts from was saved during fine-tuning."""
    tuning = run.record.fine_tune
    if tuning is not None and start.state is not None and start.epoch >= tuning.start_epoch:
        return tuning
    return None


def _keep_best(run: Run, model, progress, *, best: list, state: dict[str, Any]) -> None:
    """Carry a resumed run's best epoch on, and make its saved model that epoch's again: a stopped,
    half-trained epoch that resuming trains again may have replaced it."""
    progress.best_weights, progress.best_epoch = best, int(state["best_epoch"])
    progress.best_loss = np.inf if state.get("best_loss") is None else float(state["best_loss"])
    latest = model.get_weights()
    model.set_weights(best)
    run.save_model(model)
    model.set_weights(latest)


def planned_epochs(model_config: ModelConfig, train_config: TrainConfig) -> int:
    """Epochs a training runs unless stopped early: the head's, plus fine-tuning's with a backbone."""
    fine_tunes = model_config.backbone != backbones.NO_BACKBONE and train_config.fine_tune_layers > 0
    return train_config.epochs + (train_config.fine_tune_epochs if fine_tunes else 0)


def run_epochs(run: Run) -> int:
    """The epochs a run plans to reach: its own count when continued from a parent, else its configs'."""
    return run.record.planned_epochs or planned_epochs(run.model_config(), run.train_config())


def _fine_tune(
    run: Run, model, progress, fit, *, model_config: ModelConfig, train_config: TrainConfig, policy: str
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
    with model.distribute_strategy.scope():  # the new optimizer's variables mirrored as the model's are
        compile_model(model, model_config, learning_rate, policy)
    progress.phase, progress.epochs = PHASES[1], done + train_config.fine_tune_epochs
    run.update(phase=PHASES[1], fine_tune=FineTuning(done + 1, tuple(layers), learning_rate))
    fit(done, progress.epochs, [])


def _check_learned(progress, model_config: ModelConfig) -> None:
    """Fail a training that was not stopped yet has no best weights: its loss was never a number."""
    if progress.best_weights is None and not progress.stopped_by_user:
        rate = model_config.learning_rate
        raise ValueError(
            "The loss was not a number (NaN) from the first epoch: the training diverged and there is no model "
            f"to keep; train again with a lower learning rate, such as {rate / 10:g}. Received: learning_rate={rate:g}"
        )


def _finish(run: Run, model, prepared, parts, *, progress, started: float) -> None:
    history = run.history
    metrics, scaling = Metrics(), None
    if progress.best_weights is not None:
        evaluation, scaling = evaluate.calibrated_evaluation(model, prepared, parts)
        evaluate.save_evaluation(run, evaluation)
        metrics = Metrics(
            test_accuracy=evaluation.accuracy,
            test_loss=evaluation.loss,
            test_balanced_accuracy=evaluation.balanced_accuracy,
            test_macro_f1=evaluation.macro_f1,
        )
    accuracies = [row.val_accuracy for row in history if row.val_accuracy is not None]
    losses = [row.val_loss for row in history if row.val_loss is not None]
    speeds = [row.images_per_s for row in history if row.images_per_s is not None]
    metrics = replace(
        metrics,
        best_val_accuracy=max(accuracies) if accuracies else None,
        best_val_loss=min(losses) if losses else None,
        train_images_per_s=float(np.median(speeds)) if speeds else None,
    )
    if not progress.stopped_by_user:
        from cnnlab.training import checkpoint

        checkpoint.keep_latest_only(run.checkpoint_dir)
    run.update(
        status="stopped" if progress.stopped_by_user else "completed",
        metrics=metrics,
        best_epoch=progress.best_epoch,
        duration_s=round(time.perf_counter() - started, 2),
        num_train=len(parts["train"]),
        calibration=scaling,
    )
