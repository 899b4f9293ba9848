"""`compare BEFORE AFTER`: two runs on the test images both held out, scored against AFTER's labels."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.cli.progress import pct
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The two runs (id, name or folder) and the tracking options (to open a teammate's run)."""
    parser.add_argument("before", help="the earlier run")
    parser.add_argument("after", help="the later run, whose labels both are scored against (the corrected ones)")
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Compare the runs and print the accuracies, the per-class recall and the images that flipped."""
    from cnnlab.analysis.compare import compare_runs

    before, after = (
        open_run(argparse.Namespace(**{**vars(args), "run": ref}), settings) for ref in (args.before, args.after)
    )
    comparison = compare_runs(before, after, cache=settings.cache_dir, max_cache_mb=settings.max_cache_mb)
    if not args.json:
        print(
            f"{comparison.num_shared} shared test images, scored against {comparison.label_source} "
            f"({comparison.num_relabelled} labelled otherwise before)"
        )
        print(f"accuracy before {pct(comparison.accuracy_before)}  after {pct(comparison.accuracy_after)}")
        print(comparison.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for title, frame in (("wrong -> right", comparison.fixed), ("right -> wrong", comparison.broken)):
            print(f"{title}: {len(frame)}")
            for row in frame.itertuples():
                print(f"  {row.path}  {row.label}: {row.predicted_before} -> {row.predicted_after}")
    return comparison.to_dict()


COMMAND = Command(
    "compare",
    "compare two runs on the test images both held out (matched by content), scored against the later run's labels",
    add_arguments,
    run,
    tensorflow=True,
)
