"""Resuming a run in place after an interruption or a stop, and continuing a completed run as a new one.

Both start from a checkpoint that training leaves in the run folder after every complete epoch
(see `cnnlab.training.checkpoint`), on the dataset and split the run recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data
from cnnlab.analysis.evaluate import run_report
from cnnlab.common.checks import check_range
from cnnlab.runs.record import Metrics, RunRecord
from cnnlab.runs.store import Run, RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.devices import choose_devices
from cnnlab.training.engine import Start, train_run
from cnnlab.training.hooks import TrainingHooks

RESUMABLE = ("interrupted", "stopped", "failed")


def resume(ref: str | Path, *, workspace: Workspace, hooks: TrainingHooks = TrainingHooks()) -> Run:
    """Continue an interrupted, stopped or failed run in place, from its last complete epoch to its
    planned epochs, as if it had never stopped. `ref` is a run id, name or folder in the
    workspace's store; its cache holds the scan and decoded images (`max_cache_mb` in all).

    Epochs after the checkpoint (a half-trained stopped epoch, one that died before its checkpoint)
    leave the history and are trained again, so it has each epoch once. `hooks.on_epoch` first gets
    the epochs the run keeps, then each new one. With the workspace's `tracking`, the new epochs
    and the outcome go to the team server, where the run is found again by its key.
    """
    store = workspace.store
    run = store.get(ref)
    if run.is_team_copy:
        raise ValueError(
            f"Run '{run.name}' is a teammate's run opened from the team server: it is read-only here; its owner "
            f"can resume it. Received: run={run.id!r}"
        )
    if run.is_demo or run.status not in RESUMABLE:
        hint = {
            "running": "it is still training",
            "completed": "train more epochs as a new run with `train --continue-from` instead",
        }.get(run.status, "only an interrupted, stopped or failed run can be resumed")
        raise ValueError(f"Run '{run.name}' is {run.status} and cannot be resumed; {hint}. Received: run={run.id!r}")
    start = _resume_point(run, store)
    devices = choose_devices(run.train_config().batch_size, workspace.devices)
    with open_run_data(run, workspace.cache, workspace.max_cache_mb) as (prepared, parts):
        run.claim()
        run.update(history=tuple(row for row in run.history if row.epoch <= start.epoch), metrics=Metrics())
        if hooks.on_epoch is not None:
            for row in run.epoch_rows():
                hooks.on_epoch(row)
        return train_run(run, prepared, parts, start, hooks=hooks, tracking=workspace.tracking, devices=devices)


def continue_training(
    ref: str | Path,
    epochs: int,
    *,
    workspace: Workspace,
    hooks: TrainingHooks = TrainingHooks(),
    name: str | None = None,
    tags: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> Run:
    """Train `epochs` more epochs of a completed run of the workspace's store as a new run there,
    from its final weights and optimizer state, on the same dataset and split.

    The new run's history continues the parent's epoch numbering (a parent of 8 epochs: 9, 10,
    ...), its record names the parent (`parent`) and the epoch it started after
    (`initial_epoch`), and its model is the best of its own epochs. `tags` sets fields of its
    record (the workspace's owner is added). With the workspace's `tracking`, it is published to
    the team server like any training.
    """
    check_range("epochs", epochs, 1, 1000, int)
    parent = workspace.store.get(ref)
    if parent.status != "completed":
        hint = "resume it instead" if parent.status in RESUMABLE else "wait until it ends"
        raise ValueError(
            f"Run '{parent.name}' is {parent.status}; only a completed run can be continued, {hint}. "
            f"Received: run={parent.id!r}"
        )
    start = _continue_point(parent)
    train_config = dataclasses.replace(parent.train_config(), epochs=start.epoch + epochs)
    inherited = parent.record
    record = RunRecord(
        name=name or f"{parent.name} +{epochs}",
        model_config=inherited.model_config,
        train_config=train_config.to_dict(),
        class_names=inherited.class_names,
        dataset=inherited.dataset,
        precision=inherited.precision,
        # A fine-tuned parent is continued in fine-tuning: its record says which layers train, at what rate.
        phase=inherited.phase,
        fine_tune=inherited.fine_tune,
        parent=parent.id,
        initial_epoch=start.epoch,
        planned_epochs=start.epoch + epochs,
    )
    record = dataclasses.replace(record, **{**(tags or {}), **workspace.owner_tag})
    devices = choose_devices(train_config.batch_size, workspace.devices)
    with open_run_data(parent, workspace.cache, workspace.max_cache_mb) as (prepared, parts):
        run = workspace.store.create(record, parent.split(), run_id)
        return train_run(run, prepared, parts, start, hooks=hooks, tracking=workspace.tracking, devices=devices)


@contextlib.contextmanager
def open_run_data(
    run: Run, cache: Path, max_cache_mb: int | None = None
) -> Iterator[tuple[data.PreparedData, dict[str, np.ndarray]]]:
    """The run's prepared dataset (leased for the block) and its recorded split, as indices into it.

    Every image of the split must still be there: a resumed or continued training on other data
    would not be the same training. A run trained on a dataset version trains on that version again.
    """
    report = run_report(run, cache)
    _split_indices(run, report.files, report.root)  # before decoding anything
    config = run.model_config()
    settings = (config.image_size, config.color_mode, config.resize_mode)
    with data.open_prepared(report, *settings, cache=cache, max_cache_mb=max_cache_mb) as prepared:
        # Again on the images prepared: a file may have failed to decode.
        yield prepared, _split_indices(run, prepared.report.files, report.root)


def _split_indices(run: Run, files: tuple[str, ...], root: Path) -> dict[str, np.ndarray]:
    """The run's recorded split as indices into `files`; every one of them must be there."""
    index = {path: i for i, path in enumerate(files)}
    split = run.split()
    missing = [path for paths in split.values() for path in paths if path not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) of run '{run.name}' are no longer in its dataset folder {root} (for example "
            f"{missing[0]}); put them back to resume or continue it, or train a new run. Received: run={run.id!r}"
        )
    return {part: np.asarray([index[p] for p in paths], dtype=np.int64) for part, paths in split.items()}


def _resume_point(run: Run, store: RunStore) -> Start:
    """The run's last checkpoint; without one (it died in its first epoch), where it began."""
    from cnnlab.training.checkpoint import read_state

    state = read_state(run.checkpoint_dir)
    if state is not None:
        return Start(int(state["epoch"]), run.checkpoint_dir, state, with_best=True)
    if run.record.parent:
        return _continue_point(store.get(run.record.parent))
    return Start()


def _continue_point(parent: Run) -> Start:
    from cnnlab.training.checkpoint import read_state

    state = read_state(parent.checkpoint_dir)
    if state is None:
        raise ValueError(
            f"Run '{parent.name}' kept no training state to continue from (it was trained before runs kept "
            f"one, or its checkpoint folder was deleted); train a new run instead. Received: run={parent.id!r}"
        )
    return Start(int(state["epoch"]), parent.checkpoint_dir, state, with_best=False)
