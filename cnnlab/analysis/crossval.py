"""A cross-validated pass for likely label errors: out-of-sample probabilities for every image of a run.

A run's validation and test predictions come from a model that never trained on those images,
but a mislabelled training image is never checked that way. This pass cuts all the run's images
into `folds` stratified folds (by its seed), trains a fresh model with the run's settings on all
folds but one and predicts the one left out, so every image gets probabilities from a model that
never saw it (what cleanlab's `estimate_cross_validated_probabilities` does with a scikit-learn
model); `label_issues.issues_table` ranks them. The held-out fold takes no part in its model's
training, not even to pick the best epoch: the folds train without a validation split.

Each fold trains with the run's own training engine (`train.train_run`) in a temporary run folder
inside the run's folder, removed once its fold is predicted: nothing joins the runs list, and the
user's images are only read. The result is saved with the run (`CROSS_VALIDATED_FILE`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cnnlab import data
from cnnlab.analysis.label_issues import ISSUE_COLUMNS, issues_table
from cnnlab.common.checks import check_range
from cnnlab.common.files import temporary_name, write_json
from cnnlab.model import backbones
from cnnlab.runs.record import RunRecord
from cnnlab.runs.store import Run, RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.hooks import RowCallback, TrainingHooks

if TYPE_CHECKING:
    from cnnlab.model.precision import Precision
    from cnnlab.training.engine import TrainConfig

CROSS_VALIDATED_FILE = "label_issues_cv.json"
DEFAULT_FOLDS = 3
MAX_FOLDS = 10
SPLIT_PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class CrossValidatedIssues:
    """Likely label errors among all of a run's images, from a cross-validated pass, and how it was made.

    `status` is "completed", or "stopped" when a stop came before every fold was predicted (then
    `issues` is empty and nothing was saved). `num_images` counts the images checked.
    """

    issues: pd.DataFrame
    folds: int
    epochs: int
    seed: int
    num_images: int
    status: str = "completed"
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what is saved with the run)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "issues"}
        return {**fields, "issues": self.issues.to_dict(orient="records")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrossValidatedIssues:
        """Inverse of `to_dict`."""
        return cls(**{**d, "issues": pd.DataFrame(d["issues"], columns=list(ISSUE_COLUMNS))})


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0 to `folds` - 1) of each image: every class shuffled by `seed` and dealt out in turn,
    so each fold holds its share of every class and the folds' sizes differ by at most one per class."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = np.arange(len(members)) % folds
    return fold_of


def cross_validated_issues(
    run: Run,
    *,
    folds: int = DEFAULT_FOLDS,
    epochs: int | None = None,
    workspace: Workspace,
    hooks: TrainingHooks = TrainingHooks(),
) -> CrossValidatedIssues:
    """Rank likely label errors among all the run's images (train, validation and test) by a K-fold pass.

    Each of the `folds` models trains for `epochs` epochs (default: the run's own) with the run's
    model and training settings otherwise, in the run's own folder (not the workspace's store, and
    never published). The workspace's cache holds the scan and decoded images (`max_cache_mb` in
    all); a model over its `max_training_mb` is refused first. `hooks.on_epoch` gets each fold's
    epoch rows and `hooks.on_batch` the progress of the whole pass (`fold`, `folds`, `fraction`,
    `eta_s`...); setting `hooks.stop_event` ends it after the current batch, with status "stopped"
    and nothing saved.
    """
    from cnnlab.analysis.evaluate import open_split
    from cnnlab.model import check_trainable
    from cnnlab.model.precision import choose_precision

    check_range("folds", folds, 2, MAX_FOLDS, int)
    _check_writable(run)
    model_config = run.model_config()
    recorded = run.train_config()
    train_config = dataclasses.replace(recorded, epochs=recorded.epochs if epochs is None else epochs)
    check_trainable(
        model_config,
        len(run.class_names),
        train_config.batch_size,
        max_training_mb=workspace.max_training_mb,
        fine_tune_layers=train_config.tuned_layers,
    )
    backbones.prepare_weights(model_config.backbone, model_config.backbone_weights, hooks.on_download)
    # Resolved once for every fold (their records name it, so no fold resolves it again).
    precision = choose_precision(train_config.precision)
    with open_split(run, cache=workspace.cache, max_cache_mb=workspace.max_cache_mb) as (prepared, parts):
        # The prepared images stay leased while the folds read them.
        indices = np.concatenate([parts[part] for part in SPLIT_PARTS])
        splits = [part for part in SPLIT_PARTS for _ in parts[part]]
        if len(indices) < 2 * folds:
            raise ValueError(
                f"A {folds}-fold pass needs at least two images per fold; use fewer folds. Received: folds={folds}"
            )
        probs = _out_of_fold(
            run, prepared, indices, train_config=train_config, precision=precision, folds=folds, hooks=hooks
        )
    empty = pd.DataFrame(columns=list(ISSUE_COLUMNS))
    stopped = CrossValidatedIssues(
        empty, folds, epochs=train_config.epochs, seed=train_config.seed, num_images=len(indices), status="stopped"
    )
    if probs is None:
        return stopped
    paths = [prepared.report.files[i] for i in indices]
    table = issues_table(prepared.labels[indices], probs, run.class_names, paths=paths, splits=splits)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    result = dataclasses.replace(stopped, issues=table, status="completed", created=created)
    write_json(run.path / CROSS_VALIDATED_FILE, result.to_dict())
    return result


def saved_issues(run: Run) -> CrossValidatedIssues | None:
    """The run's last completed cross-validated pass, or None when it has none (or it is unreadable)."""
    try:
        return CrossValidatedIssues.from_dict(json.loads((run.path / CROSS_VALIDATED_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_writable(run: Run) -> None:
    """The pass saves into the run's folder: not the shared demo's, not while its training writes it."""
    if run.is_demo:
        raise ValueError(
            "The demo model is part of the app, so its folder takes no results; train a run of your own and check "
            f"its labels. Received: run={run.id!r}"
        )
    if run.status == "running":
        raise ValueError(f"Run '{run.name}' is still training; check its labels once it ends. Received: run={run.id!r}")


def _out_of_fold(
    run: Run,
    prepared: data.PreparedData,
    indices: np.ndarray,
    *,
    train_config: TrainConfig,
    precision: Precision,
    folds: int,
    hooks: TrainingHooks,
) -> np.ndarray | None:
    """Each image's probabilities from the fold model that did not train on it; None once stopped."""
    from cnnlab.analysis.evaluate import probabilities
    from cnnlab.training.engine import train_run

    fold_of = stratified_folds(prepared.labels[indices], folds, train_config.seed)
    probs = np.zeros((len(indices), len(run.class_names)))
    record = RunRecord(
        model_config=run.record.model_config,
        train_config=train_config.to_dict(),
        precision=precision,
        class_names=run.record.class_names,
        dataset=run.record.dataset,
    )
    started = time.perf_counter()
    none = np.zeros(0, dtype=np.int64)
    for fold in range(folds):
        if hooks.stop_requested:
            return None
        held = indices[fold_of == fold]
        parts = {"train": indices[fold_of != fold], "validation": none, "test": none}
        split = {part: [prepared.report.files[i] for i in found] for part, found in parts.items()}
        with _scratch_store(run) as store:
            fold_run = store.create(
                dataclasses.replace(record, name=f"fold {fold + 1} of {folds}"), split, f"fold-{fold + 1}"
            )
            fold_hooks = dataclasses.replace(
                hooks,
                on_epoch=None if hooks.on_epoch is None else _with_fold(hooks.on_epoch, fold),
                on_batch=None if hooks.on_batch is None else _whole_pass(hooks.on_batch, fold, folds, started),
            )
            train_run(fold_run, prepared, parts, hooks=fold_hooks)
            if fold_run.status == "stopped":
                return None
            probs[fold_of == fold] = probabilities(fold_run.load_model(), data.make_dataset(prepared, held, 64))
    return probs


@contextlib.contextmanager
def _scratch_store(run: Run) -> Iterator[RunStore]:
    """A run store in a temporary folder inside the run's (a killed process leaves a temporary that the
    clean-up of stale temporaries removes), deleted when the block ends."""
    folder = temporary_name(run.path / "crossval")
    folder.mkdir()
    try:
        yield RunStore(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _with_fold(on_epoch: RowCallback, fold: int) -> RowCallback:
    """A fold's epoch rows, each saying which fold (1-based) it belongs to."""
    return lambda row: on_epoch({**row, "fold": fold + 1})


def _whole_pass(on_batch: RowCallback, fold: int, folds: int, started: float) -> RowCallback:
    """A fold's batch progress restated as the whole pass's: the fraction and time left over every fold."""

    def report(progress: dict[str, Any]) -> None:
        fraction = (fold + progress["fraction"]) / folds
        elapsed = time.perf_counter() - started
        eta = elapsed / fraction * (1 - fraction) if fraction > 0 else 0.0
        on_batch(
            {**progress, "fold": fold + 1, "folds": folds, "fraction": fraction, "elapsed_s": elapsed, "eta_s": eta}
        )

    return report
