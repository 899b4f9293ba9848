"""`dataset outliers RUN`: the images of a run's dataset least like their class in its model's eyes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.settings import Settings


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of images, 1 or more; got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, how many outliers to list, and the tracking options (to open a teammate's run)."""
    parser.add_argument("run", metavar="RUN", help="run id, name or folder")
    parser.add_argument("--top", type=_count, default=20, metavar="N", help="how many to list (default 20)")
    add_tracking_options(parser)


def _print_progress(done: int, total: int) -> None:
    """The features pass's progress in place, in a terminal only."""
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\rcomputing features: {done}/{total} images   ", end=end, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Rank the images by how far they are from their class in feature space and print the top ones."""
    from cnnlab.analysis.embedding import run_embedding
    from cnnlab.analysis.outliers import outliers

    found = open_run(args, settings)
    table = outliers(run_embedding(found, cache=settings.cache_dir, progress=_print_progress), args.top)
    if not args.json:
        for row in table.itertuples(index=False):
            print(
                f"{row.score:6.2f}  {row.path}  label {row.label}, predicted {row.prediction} "
                f"({row.confidence:.0%}), {row.split}"
            )
    return {"run": found.id, "outliers": table.to_dict(orient="records")}


COMMAND = Command(
    "outliers",
    "list the images least like their class as a run's model sees them (distance to the class in feature "
    "space, relative to the class's spread), most unusual first",
    add_arguments,
    run,
    tensorflow=True,
)
