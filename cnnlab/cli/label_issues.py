"""`label-issues RUN`: list a run's images most likely to carry a wrong label, from its validation and
test images, or from all of them with `--cross-validate K`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.cli.options import Command, run_store, workspace_from
from cnnlab.cli.progress import interruptible, print_batch, print_fold_epoch, say
from cnnlab.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from cnnlab.runs.store import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the CSV file, and the folds and epochs of a cross-validated pass."""
    parser.add_argument("run")
    parser.add_argument(
        "--csv",
        type=Path,
        help="CSV file to write (default: label_issues.csv, or label_issues_cv.csv, in the run folder)",
    )
    parser.add_argument(
        "--cross-validate",
        type=int,
        metavar="K",
        help="check every image: train K models with the run's settings, each predicting the fold it left out",
    )
    parser.add_argument("--epochs", type=int, help="epochs of each fold's model (default: the run's own)")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Rank the likely label errors, write them as CSV and print them."""
    from cnnlab.analysis.label_issues import run_label_issues

    run = run_store(settings).get(args.run)
    if args.cross_validate is not None:
        return _cross_validated_issues(args, settings, run)
    if args.epochs is not None:
        raise ValueError(
            f"--epochs sets the epochs of a cross-validated pass; add --cross-validate K or leave it out. "
            f"Received: epochs={args.epochs}"
        )
    table = run_label_issues(run, cache=settings.cache_dir)
    target = args.csv or run.path / "label_issues.csv"
    _write_issues(args, table, target)
    say(args, f"{len(table)} likely label error(s) written to {target}; no image was moved or changed")
    return {
        "run_id": run.id,
        "source": "validation_test",
        "csv": str(target),
        "num_issues": len(table),
        "issues": table.to_dict(orient="records"),
    }


def _cross_validated_issues(args: argparse.Namespace, settings: Settings, run: Run) -> dict[str, Any]:
    """`label-issues --cross-validate K`: every image of the run checked by a K-fold pass, stoppable by Ctrl-C."""
    from cnnlab.analysis.crossval import cross_validated_issues
    from cnnlab.training.hooks import TrainingHooks

    result = interruptible(
        args,
        lambda stop: cross_validated_issues(
            run,
            folds=args.cross_validate,
            epochs=args.epochs,
            workspace=workspace_from(settings),
            hooks=TrainingHooks(on_epoch=print_fold_epoch, on_batch=print_batch, stop_event=stop),
        ),
        "Nothing was saved; run the command again to check the labels.",
    )
    summary = {"run_id": run.id, "source": "cross_validated", **result.to_dict()}
    if result.status == "stopped":
        say(args, "Stopped before every fold was trained; nothing was ranked or saved.")
        return {**summary, "csv": None, "num_issues": None}
    target = args.csv or run.path / "label_issues_cv.csv"
    _write_issues(args, result.issues, target)
    say(
        args,
        f"{len(result.issues)} likely label error(s) among all {result.num_images} images ({result.folds} folds of "
        f"{result.epochs} epoch(s)) written to {target}; no image was moved or changed",
    )
    return {**summary, "csv": str(target), "num_issues": len(result.issues)}


def _write_issues(args: argparse.Namespace, table: pd.DataFrame, target: Path) -> None:
    """Write the label-issue table as a CSV file and print it unless the output is JSON."""
    from cnnlab.analysis.label_issues import write_issues_csv

    write_issues_csv(table, target)
    if not args.json:
        print(
            table.to_string(index=False, float_format=lambda v: f"{v:.3f}") if len(table) else "No likely label errors."
        )


COMMAND = Command(
    "label-issues",
    "list a run's validation and test images (all its images with --cross-validate) most likely to carry a wrong label",
    add_arguments,
    run,
    tensorflow=True,
)
