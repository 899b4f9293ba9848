"""The run store: one folder per training, written atomically so a crash never breaks it."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import secrets
import shutil
import socket
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.common.files import atomic_path, build_folder, temporary_name, write_json
from cnnlab.runs import heartbeat
from cnnlab.runs.record import HistoryRow, RunRecord, read_record

if TYPE_CHECKING:
    from cnnlab.model import ModelConfig
    from cnnlab.training.config import TrainConfig

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
SPLIT_FILE = "split.json"
EVALUATION_FILE = "evaluation.json"
# Taken while a record is read and rewritten (a hidden file: never a run, never a temporary).
LOCK_FILE = ".run.lock"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.json"
# The settings that runs tables and parallel coordinates compare, local and team runs alike.
HYPERPARAMETERS = (
    "backbone",
    "conv_blocks",
    "filters",
    "kernel_size",
    "dense_units",
    "dropout",
    "optimizer",
    "learning_rate",
    "image_size",
    "batch_size",
)


@dataclass
class Run:
    """A run folder and its `run.json` record; the only writer is the training that created it.

    `is_demo`: the read-only demo model shipped with the app (its store was given it as `demo`).
    """

    path: Path
    record: RunRecord
    is_demo: bool = False

    @property
    def id(self) -> str:
        """The folder name, unique in the store."""
        return self.path.name

    @property
    def name(self) -> str:
        """The display name (renamable)."""
        return self.record.name or self.id

    @property
    def status(self) -> str:
        """The stored status, or "interrupted" when its training is gone (its heartbeat went stale)."""
        status = self.record.status
        if status == "running" and not heartbeat.is_alive(self.path, self.record.host, self.record.pid):
            return "interrupted"
        return status

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return list(self.record.class_names)

    @property
    def history(self) -> tuple[HistoryRow, ...]:
        """Per-epoch metric rows."""
        return self.record.history

    def epoch_rows(self) -> list[dict[str, Any]]:
        """The history as the rows `on_epoch` callbacks get and charts draw."""
        return [row.to_dict() for row in self.record.history]

    @property
    def is_team_copy(self) -> bool:
        """Whether this is a teammate's run opened here from the team server (read-only, like the demo)."""
        return self.record.team is not None and self.record.team.opened

    @property
    def temperature(self) -> float | None:
        """The temperature that calibrates the model's probabilities; None when none was fitted."""
        return self.record.calibration.temperature if self.record.calibration else None

    @property
    def checkpoint_dir(self) -> Path:
        """Where the training keeps what resuming or continuing it needs (see `cnnlab.training.checkpoint`)."""
        return self.path / CHECKPOINT_DIR

    @property
    def has_checkpoint(self) -> bool:
        """Whether the run kept a training state to resume or continue from."""
        return (self.checkpoint_dir / CHECKPOINT_STATE).is_file()

    @property
    def model_path(self) -> Path:
        """Where the best model is saved."""
        return self.path / MODEL_FILE

    def model_config(self) -> ModelConfig:
        """The run's `ModelConfig`."""
        from cnnlab.model import ModelConfig

        return ModelConfig.from_dict(dict(self.record.model_config))

    def train_config(self) -> TrainConfig:
        """The run's `TrainConfig`."""
        from cnnlab.training.config import TrainConfig

        return TrainConfig.from_dict(dict(self.record.train_config))

    def dataset_root(self, cache: Path) -> Path:
        """The run's dataset folder; the built-in sample is found again (in `cache`) on any machine."""
        dataset = self.record.dataset
        path = Path(dataset.path)
        if not path.is_dir() and dataset.builtin == "sample":
            from cnnlab.data.sample import sample_dir

            return sample_dir(cache)
        return path

    def image_path(self, rel: str, cache: Path) -> Path:
        """Where an image of the run's split is: under its dataset folder, or, for an image added to a
        dataset version (a path starting with ".added/"), in that dataset's own folder."""
        from cnnlab.data.scanning import ADDED

        folder = self.record.dataset.versions_folder
        return Path(folder) / rel if folder and rel.startswith(ADDED) else self.dataset_root(cache) / rel

    def split(self) -> dict[str, list[str]]:
        """Relative paths of the train, validation and test images."""
        return json.loads((self.path / SPLIT_FILE).read_text())

    def update(self, **changes: Any) -> None:
        """Change fields of the record (`RunRecord` field names, typed values) and write it atomically.

        The changes apply to the record as it is on disk now, read under the run's lock, so a
        process holding an older copy (a sync after a long upload, a rename in another tab) never
        undoes another's change. A training whose run another process has since claimed (it
        resumed the run after this one's heartbeat went stale) is refused: one writer per run.
        """
        with _locked(self.path):
            current = self._on_disk()
            if current.status == "running" and (current.host, current.pid) != (self.record.host, self.record.pid):
                raise ValueError(
                    f"Run '{current.name}' is now written by another process (pid {current.pid} on "
                    f"{current.host!r}); this one stops writing it. Received: run={self.id!r}"
                )
            data, record = _as_written(dataclasses.replace(current, **changes))
            write_json(self.path / RUN_FILE, data)
        self.record = record

    def claim(self) -> None:
        """Make this process the run's writer (to resume it), beating its heartbeat now.

        The check and the claim are one step under the run's lock, so of two processes (on one
        machine or several sharing the folder) that resume the same run at once, one trains it
        and the other gets a ValueError, however long each took to get there.
        """
        with _locked(self.path):
            current = self._on_disk()
            if current.status == "running" and heartbeat.is_alive(self.path, current.host, current.pid):
                raise ValueError(
                    f"Run '{current.name}' was resumed meanwhile by another process (pid {current.pid} on "
                    f"{current.host!r}); watch that training instead. Received: run={self.id!r}"
                )
            heartbeat.beat(self.path)
            mine = dataclasses.replace(
                current, status="running", pid=os.getpid(), host=socket.gethostname(), error=None
            )
            data, record = _as_written(mine)
            write_json(self.path / RUN_FILE, data)
        self.record = record

    def _on_disk(self) -> RunRecord:
        """The record as its file holds it now (this copy when the file cannot be read)."""
        try:
            return read_record(json.loads((self.path / RUN_FILE).read_text()))
        except (OSError, ValueError):
            return self.record

    def append_history(self, row: HistoryRow) -> None:
        """Add one epoch's metrics."""
        self.update(history=(*self.record.history, row))

    def save_model(self, model) -> None:
        """Save the model atomically (Keras writes a temporary file that is renamed into place).

        The optimizer's state is left out: Adam's two moments per weight would triple the file that
        the app loads and users download; resuming and continuing use the checkpoint instead. A
        model trained in mixed precision is saved as its float32 copy, so it loads and predicts anywhere.
        """
        import keras

        from cnnlab.model.precision import float32_copy

        bare = float32_copy(keras.Model(model.inputs, model.outputs, name=model.name))
        with atomic_path(self.model_path) as tmp:
            bare.save(tmp)

    def load_model(self):
        """Load the saved Keras model, with a clear error when there is none yet or it cannot be read."""
        if not self.model_path.exists():
            raise ValueError(
                f"Run '{self.name}' has no saved model yet (it ended before its first epoch); "
                f"train a new run. Received: run={self.id!r}"
            )
        import keras

        try:
            return keras.saving.load_model(self.model_path, compile=False)
        # Keras reports a file that is not a zip as "File not found" and a zip without its parts as a
        # KeyError; neither names the real problem, and both name the server path.
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(
                f"The model file of run '{self.name}' is unreadable (damaged, or saved by another Keras "
                f"version); train the run again or delete it. Received: run={self.id!r}"
            ) from exc

    def summary(self) -> dict[str, Any]:
        """One flat row for the runs table."""
        record, metrics = self.record, self.record.metrics
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": record.created,
            "dataset": Path(record.dataset.path).name,
            "sweep": record.sweep.study if record.sweep else None,
            "epochs_run": len(record.history),
            "best_val_accuracy": metrics.best_val_accuracy,
            "test_accuracy": metrics.test_accuracy,
            "test_balanced_accuracy": metrics.test_balanced_accuracy,
            "test_macro_f1": metrics.test_macro_f1,
            "duration_s": record.duration_s,
            **hyperparameters(record.configs()),
            "epochs": record.train_config.get("epochs"),
        }


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the run's lock (an exclusive `flock` on its lock file, which NFS also honours) for the block."""
    with open(folder / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _as_written(record: RunRecord) -> tuple[dict[str, Any], RunRecord]:
    """The record's run.json data, and the record as that data reads back: a run's record in memory is
    the one on disk (its settings' tuples as JSON lists), and a value of the wrong type fails the write."""
    data = record.to_dict()
    return data, read_record(json.loads(json.dumps(data, default=str)))  # `default` as `write_json` writes


def hyperparameters(settings: dict[str, Any]) -> dict[str, Any]:
    """The `HYPERPARAMETERS` of a run's model and training settings, as table cells (image size "HxW")."""
    row = {name: settings.get(name) for name in HYPERPARAMETERS}
    row["backbone"] = row["backbone"] or "none"  # runs from before backbones were conv-block CNNs
    if isinstance(row["image_size"], (list, tuple)):
        row["image_size"] = "x".join(str(v) for v in row["image_size"])
    return row


def library_versions() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "pillow"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def new_run_id() -> str:
    """A new run folder name: the time (UTC) plus a random suffix, so names sort by creation."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class RunStore:
    """All runs under one folder (the CLI and the app use `Settings.models_dir`), plus a `demo` run
    folder listed with them, read-only (the CLI and the app pass `cnnlab.settings.DEMO_RUN_DIR`).

    With `owner` (a hosted visitor's id), the store is that visitor's view of the folder: it lists,
    opens, renames, deletes and resumes only their own runs (and shows the demo), so no page can
    offer another visitor's run, or one the host trained, to act on; new runs are theirs.
    """

    def __init__(self, root: str | Path, demo: Path | None = None, owner: str | None = None) -> None:
        self.root = Path(root)
        self.demo = demo
        self.owner = owner

    def create(self, record: RunRecord, split: dict[str, list[str]], run_id: str | None = None) -> Run:
        """Create a run folder with its record and split, all at once (folder renamed into place).

        The store sets the record's `id`, `created`, `pid`, `host` and `versions`, and its `name`
        when it has none. `run_id` names the folder (default: creation time plus a random suffix);
        it must be new.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = run_id or new_run_id()
        if run_id.startswith(".") or Path(run_id).name != run_id or (self.root / run_id).exists():
            raise ValueError(
                f"A run folder must be a new folder name in the models folder {str(self.root)!r}; choose "
                f"another name or delete the old run. Received: run_id={run_id!r}"
            )
        data, full = _as_written(
            dataclasses.replace(
                record,
                owner=self.owner or record.owner,
                id=run_id,
                name=record.name or run_id,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                pid=os.getpid(),
                host=socket.gethostname(),
                versions=library_versions(),
            )
        )

        def fill(folder: Path) -> None:
            write_json(folder / SPLIT_FILE, split)
            heartbeat.beat(folder)  # alive from its first listing on
            write_json(folder / RUN_FILE, data)

        return Run(build_folder(self.root / run_id, fill), full)

    def list(self, sweep: str | None = None) -> list[Run]:
        """Runs, newest first; folders that are not complete runs (no readable record) are skipped,
        and so are other owners' runs in an owner's view."""
        found = [run for run in map(self._read, self._folders()) if run is not None]
        if sweep is not None:
            found = [r for r in found if r.record.sweep is not None and r.record.sweep.study == sweep]
        return sorted(found, key=lambda r: r.record.created, reverse=True)

    def _folders(self) -> builtins.list[Path]:
        folders = (
            [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")] if self.root.is_dir() else []
        )
        if self.demo is not None and self.demo.is_dir() and self.demo.resolve() not in {p.resolve() for p in folders}:
            folders.append(self.demo)
        return folders

    def _read(self, folder: Path) -> Run | None:
        """The run in `folder`, or None when its record is missing or unreadable (see `read_record`)."""
        try:
            record = read_record(json.loads((folder / RUN_FILE).read_text()))
        except (OSError, ValueError):
            return None
        is_demo = self.demo is not None and folder.resolve() == self.demo.resolve()
        if self.owner is not None and not is_demo and record.owner != self.owner:
            return None  # as if it were not there: a visitor learns nothing of others' runs
        return Run(folder, record, is_demo)

    def get(self, ref: str | Path) -> Run:
        """A run by id, by name, or by folder path."""
        candidate = Path(ref)
        for folder in (candidate, self.root / str(ref)):
            run = self._read(folder) if folder.is_dir() else None
            if run is not None:
                return run
        for run in self.list():
            if str(ref) in (run.id, run.name):
                return run
        raise ValueError(
            f"No run found with that id, name or folder; list runs with `python -m cnnlab runs`. Received: run={str(ref)!r}"
        )

    def rename(self, ref: str | Path, new_name: str) -> Run:
        """Change a run's display name."""
        name = new_name.strip()
        if not name or len(name) > 80:
            raise ValueError(f"A run name must be 1 to 80 characters. Received: name={new_name!r}")
        run = self._changeable(ref, "renamed")
        run.update(name=name)
        return run

    def delete(self, ref: str | Path) -> None:
        """Delete a run's folder (moved aside first, so a failure never leaves half a run listed)."""
        run = self._changeable(ref, "deleted")
        trash = temporary_name(run.path)  # a killed delete leaves a temporary the clean-up removes
        os.replace(run.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _changeable(self, ref: str | Path, action: str) -> Run:
        """The run, if it may be renamed or deleted: not the shared demo nor a teammate's run, not while it trains."""
        run = self.get(ref)
        if run.is_demo:
            raise ValueError(f"The demo model is part of the app and cannot be {action}. Received: run={run.id!r}")
        if run.is_team_copy:
            raise ValueError(
                f"Run '{run.name}' is a teammate's run opened from the team server: it is read-only here and cannot "
                f"be {action}. Received: run={run.id!r}"
            )
        if run.status == "running":
            # Its training rewrites the record every epoch and needs the folder until it ends.
            raise ValueError(
                f"Run '{run.name}' is still training and cannot be {action}; stop it or wait until it ends. "
                f"Received: run={run.id!r}"
            )
        return run
