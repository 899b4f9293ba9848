"""What the commands print while they work and when they are done, and the Ctrl-C handling of the
long ones: progress goes to standard error, so standard output stays clean."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.common import background

if TYPE_CHECKING:
    from cnnlab.model.precision import Precision


def say(args: argparse.Namespace, text: str) -> None:
    """Print a result line: to standard output, or to standard error when the output is JSON."""
    print(text, file=sys.stderr if args.json else sys.stdout)


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, or n/a."""
    return "n/a" if value is None else f"{value:.1%}"


def interruptible(args: argparse.Namespace, work: Callable[[threading.Event], Any], aborted: str) -> Any:
    """Run `work(stop_event)` in the background so Ctrl-C asks it to stop cleanly instead of killing it.

    After a first Ctrl-C the work still finishes (a training evaluates its stopped run) and the
    command exits with status 130 (`args.interrupted`). A second Ctrl-C while it stops ends the
    process at once with status 130, printing `aborted` (where the work can be picked up again):
    TensorFlow would not stop a background thread, and the saved files are whole at any moment.
    """
    stop = threading.Event()
    future = background.submit(work, stop)
    try:
        try:
            return background.wait(future)
        except KeyboardInterrupt:
            # Everything from here on is covered by the outer handler: a second Ctrl-C may come at any moment.
            args.interrupted = True
            stop.set()
            print(
                "\nStopping after the current batch (the best weights are kept; Ctrl-C again to abort)...",
                file=sys.stderr,
            )
            return background.wait(future)
    except KeyboardInterrupt:
        print(f"\nAborted. {aborted}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def print_epoch(epochs: int) -> Callable[[dict[str, Any]], None]:
    """An epoch printer for a training of `epochs` epochs in all."""

    def show(row: dict[str, Any]) -> None:
        phase = "  (fine-tuning)" if row.get("phase") == "fine_tune" else ""
        print(
            f"\repoch {row['epoch']}/{epochs}{phase}  loss {row['loss']:.4f}  acc {row['accuracy']:.3f}  "
            f"val_loss {row.get('val_loss', float('nan')):.4f}  val_acc {row.get('val_accuracy', float('nan')):.3f}  "
            f"{row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s",
            file=sys.stderr,
        )

    return show


def print_batch_after(intro: str) -> Callable[[dict[str, Any]], None]:
    """Batch progress, preceded once by `intro` when the first batch is done (not before bad input is caught)."""
    pending = [intro]

    def show(progress: dict[str, Any]) -> None:
        if pending:
            print(pending.pop(), file=sys.stderr)
        print_batch(progress)

    return show


def print_fold_epoch(row: dict[str, Any]) -> None:
    """One line per epoch of a cross-validation fold."""
    print(
        f"fold {row['fold']} epoch {row['epoch']}  loss {row['loss']:.4f}  acc {row['accuracy']:.3f}", file=sys.stderr
    )


def print_batch(progress: dict[str, Any]) -> None:
    """Batch progress in place, in a terminal only."""
    fold = f"fold {progress['fold']}/{progress['folds']} " if "fold" in progress else ""
    if sys.stderr.isatty():
        print(
            f"\r{fold}epoch {progress['epoch']} batch {progress['batch']}/{progress['steps']}  "
            f"{progress['fraction']:.0%}  ETA {progress['eta_s']:.0f}s   ",
            end="",
            file=sys.stderr,
            flush=True,
        )


def print_images(done: int, total: int) -> None:
    """A batch prediction's progress in place, in a terminal only."""
    if sys.stderr.isatty():
        print(
            f"\rpredicting {done}/{total} images  {done / max(total, 1):.0%}   ",
            end="\n" if done >= total else "",
            file=sys.stderr,
            flush=True,
        )


def print_download(done: int, total: int) -> None:
    """A dataset download's progress in place, in a terminal only."""
    if sys.stderr.isatty():
        print(f"\rdownloading {done / 2**20:.1f} of {total / 2**20:.1f} MB   ", end="", file=sys.stderr, flush=True)


def print_weights_download(done: int) -> None:
    """An ImageNet weights download's progress in place, in a terminal only."""
    if sys.stderr.isatty():
        print(f"\rdownloading ImageNet weights: {done / 2**20:.1f} MB   ", end="", file=sys.stderr, flush=True)


def intro(precision: Precision | None) -> str:
    """The line that says where and in what precision a resumed or continued training runs, as recorded
    (a run recorded without one trained in float32)."""
    return precision.describe() if precision else "Training in float32"


def resumable_at(folder: Path) -> str:
    """What a second Ctrl-C leaves: where the run is, and how to go on with it."""
    return f"The run is in {folder} with its last complete epoch; continue it with `python -m cnnlab resume {folder}`."


def run_result(args: argparse.Namespace, run) -> dict[str, Any]:
    """The JSON result of a training command, and its summary line (with how to resume a stopped run)."""
    record, metrics, precision = run.record, run.record.metrics, run.record.precision
    result = {
        "run_id": run.id,
        "run_dir": str(run.path),
        "status": run.status,
        "epochs_run": len(run.history),
        "val_accuracy": metrics.best_val_accuracy,
        "test_accuracy": metrics.test_accuracy,
        "test_balanced_accuracy": metrics.test_balanced_accuracy,
        "test_macro_f1": metrics.test_macro_f1,
        "train_images_per_s": metrics.train_images_per_s,
        "duration_s": record.duration_s,
        "team": dataclasses.asdict(record.team) if record.team else None,
        "precision": precision.policy if precision else None,
        "device": precision.device if precision else None,
        "devices": list(record.devices.names) if record.devices else None,
        "strategy": record.devices.strategy if record.devices else None,
        "per_device_batch": record.devices.per_device_batch if record.devices else None,
    }
    resumable = f" Resume it with `python -m cnnlab resume {run.id}`." if run.status == "stopped" else ""
    say(
        args,
        f"Run {run.id} {run.status}: test accuracy {pct(result['test_accuracy'])}, saved in {run.path}.{resumable}",
    )
    return result
