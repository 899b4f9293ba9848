"""`evaluate RUN`: evaluate a run (a local one, or a teammate's by team run id) on its held-out test split."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.cli.progress import pct
from cnnlab.settings import Settings

if TYPE_CHECKING:
    from cnnlab.runs.store import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run and the tracking options (to open a teammate's run)."""
    parser.add_argument("run")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="also predict the test images with test-time augmentation (one model pass per transform) and compare",
    )
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Evaluate the run and print its accuracy, loss, calibration and per-class figures."""
    from cnnlab.analysis.calibration import calibration_line
    from cnnlab.analysis.evaluate import evaluate_run

    run = open_run(args, settings)
    evaluation = evaluate_run(run, cache=settings.cache_dir, max_cache_mb=settings.max_cache_mb)
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
    if args.tta:
        result.update(_tta(run, args, settings))
    return result


def _tta(run: Run, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The test accuracy with and without test-time augmentation, printed unless `--json`."""
    from cnnlab.analysis.tta import evaluate_tta

    tta = evaluate_tta(run, cache=settings.cache_dir, max_cache_mb=settings.max_cache_mb)
    if not args.json:
        print(
            f"test accuracy with TTA {pct(tta.accuracy_tta)} (without {pct(tta.accuracy)}) over "
            f"{len(tta.transforms)} transforms: {', '.join(tta.transforms)}; "
            f"{tta.seconds_tta:.2f} s against {tta.seconds:.2f} s without"
        )
    return tta.to_dict()


COMMAND = Command(
    "evaluate",
    "evaluate a run (a local run, or a teammate's by team run id) on its held-out test split",
    add_arguments,
    run,
    tensorflow=True,
)
