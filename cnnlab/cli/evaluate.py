"""`evaluate RUN`: evaluate a run (a local one, or a teammate's by team run id) on its held-out test split."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.cli.progress import pct
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run and the tracking options (to open a teammate's run)."""
    parser.add_argument("run")
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Evaluate the run and print its accuracy, loss, calibration and per-class figures."""
    from cnnlab.analysis.calibration import calibration_line
    from cnnlab.analysis.evaluate import evaluate_run

    evaluation = evaluate_run(open_run(args, settings), cache=settings.cache_dir, max_cache_mb=settings.max_cache_mb)
    for warning in evaluation.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.json:
        print(f"test accuracy {pct(evaluation.accuracy)}  test loss {evaluation.loss:.4f}")
        print(evaluation.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if evaluation.calibration is not None:
            print(calibration_line(evaluation.calibration))
        if evaluation.num_leaked_test_images:
            print(
                f"{evaluation.num_leaked_test_images} test images are copies of training images (see `cnnlab dataset "
                f"duplicates`); test accuracy without them {pct(evaluation.accuracy_without_leaks)}"
            )
    result = evaluation.to_dict()
    result.pop("predictions")
    result.pop("roc_curves")  # every class's curve: in the run's evaluation.json, too long for a terminal
    return result


COMMAND = Command(
    "evaluate",
    "evaluate a run (a local run, or a teammate's by team run id) on its held-out test split",
    add_arguments,
    run,
    tensorflow=True,
)
