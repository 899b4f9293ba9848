"""Resumable training state: after every full epoch, what resuming or continuing a run needs.

A run folder's `checkpoint/` holds
- `epoch-NNNN.weights.h5`: the model's weights and the optimizer's state after epoch NNNN
  (Keras's `save_weights` writes both), for the latest epoch and for the best one;
- `state.json`: which epoch that is, which file holds the best epoch, the counters of early
  stopping and of learning-rate reduction on a plateau, and the states of the layers' random
  generators (dropout; augmentation keeps no state: its draws are keyed by seed and batch number).
The weights go first, then `state.json`, each written atomically: `state.json` is the commit
point, so a crash at any moment leaves the previous complete state. Files it no longer names
are deleted after it is written.

This follows `keras.callbacks.BackupAndRestore` (weights with optimizer state, plus the epoch)
and adds what it lacks: it writes weights and metadata in place (a kill between the two pairs
new weights with an old epoch), saves a stopped, half-trained epoch as if it were whole, deletes
its backup when `fit` ends (a stopped run could not be resumed), and keeps neither the callbacks'
counters, nor the best weights, nor the random generators' states. The data order is
not state at all: `data.make_dataset` shuffles each epoch as a function of (seed, epoch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cnnlab.common.files import atomic_path, write_json
from cnnlab.runs.store import CHECKPOINT_STATE as STATE_FILE

# The counters of Keras's stateful callbacks (the learning rate itself is an optimizer variable).
CALLBACK_FIELDS = {
    "EarlyStopping": ("wait", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


def read_state(folder: Path) -> dict[str, Any] | None:
    """The checkpoint's `state.json`, or None when there is none (or it is unreadable)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and (folder / str(state.get("weights"))).is_file() else None


def seed_states(model: keras.Model) -> list:
    """The random generators' state variables: in `model.variables` but not in `model.weights`."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_state(
    folder: Path,
    model: keras.Model,
    epoch: int,
    *,
    best_epoch: int,
    best_loss: float,
    callbacks: list | None = None,
    finished: bool = False,
) -> None:
    """Save the state after `epoch` (1-based, complete); `finished`: the training chose to end there."""
    folder.mkdir(exist_ok=True)
    name = f"epoch-{epoch:04d}.weights.h5"
    with atomic_path(folder / name) as tmp:
        model.save_weights(tmp)
    previous = read_state(folder) or {}
    best = name if best_epoch == epoch else previous.get("best_weights") if best_epoch else None
    state = {
        "epoch": epoch,
        "weights": name,
        "best_weights": best,
        "best_epoch": best_epoch,
        "best_loss": float(best_loss) if np.isfinite(best_loss) else None,
        "callbacks": callback_state(callbacks or []),
        "seed_states": [np.asarray(v.numpy()).tolist() for v in seed_states(model)],
        "finished": finished,
    }
    write_json(folder / STATE_FILE, state)
    _remove_unnamed(folder, {name, best})


def callback_state(callbacks: list) -> dict[str, dict[str, Any]]:
    """The counters of the stateful callbacks among `callbacks`, by class name."""
    return {
        type(c).__name__: {key: _plain(getattr(c, key, None)) for key in CALLBACK_FIELDS[type(c).__name__]}
        for c in callbacks
        if type(c).__name__ in CALLBACK_FIELDS
    }


def _plain(value: Any) -> Any:
    """A JSON value for a callback's counter (NumPy floats, None)."""
    return None if value is None else float(value) if isinstance(value, (float, np.floating)) else int(value)


def _remove_unnamed(folder: Path, keep: set[str | None]) -> None:
    for path in folder.glob("epoch-*.weights.h5"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


def restore(model: keras.Model, folder: Path, state: dict[str, Any], with_best: bool = True) -> list | None:
    """Load the saved state into a compiled `model`: weights, optimizer and random generators.

    Returns the best epoch's weights (`model.get_weights()` form) when `with_best` and the state
    names them; the model is left holding the latest epoch's.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to be loaded
    best = None
    if with_best and state.get("best_weights"):
        model.load_weights(folder / state["best_weights"])
        best = model.get_weights()
    model.load_weights(folder / state["weights"])
    for variable, value in zip(seed_states(model), state.get("seed_states") or [], strict=False):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return best


def keep_latest_only(folder: Path) -> None:
    """After a run completes: keep the last epoch's weights and optimizer state (what continuing
    needs), drop the best epoch's copy (the run's `model.keras` has those weights)."""
    state = read_state(folder)
    if state is None:
        return
    write_json(folder / STATE_FILE, {**state, "best_weights": None})
    _remove_unnamed(folder, {state["weights"]})


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the resumable state after every complete epoch; restores the callbacks' counters.

    Placed after the progress callback and `callbacks` (early stopping, learning-rate reduction),
    so their state for the epoch is final. An epoch cut short by a stop is not saved: resuming
    trains it again, whole. `carried` is a saved state's `callbacks` entry, to resume with.
    """

    def __init__(
        self, folder: Path, progress, callbacks: list | None = None, carried: dict[str, dict] | None = None
    ) -> None:
        super().__init__()
        self.folder, self.progress = folder, progress
        self.callbacks, self.carried = list(callbacks or []), carried or {}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # After the callbacks' own on_train_begin, which resets their counters.
        for callback in self.callbacks:
            for key, value in self.carried.get(type(callback).__name__, {}).items():
                setattr(callback, key, value)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.progress.batches_done < self.progress.steps:
            return
        save_state(
            self.folder,
            self.model,
            epoch + 1,
            best_epoch=self.progress.best_epoch,
            best_loss=self.progress.best_loss,
            callbacks=self.callbacks,
            finished=bool(self.model.stop_training) and not self.progress.stopped_by_user,
        )
