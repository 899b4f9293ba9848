"""`resume RUN`: continue an interrupted or stopped run in place, from its last complete epoch."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import Command, add_tracking_options, tracking_from, workspace_from
from cnnlab.cli.progress import interruptible, intro, print_batch_after, print_epoch, resumable_at, run_result, say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run and the tracking options."""
    parser.add_argument("run")
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Train the run's remaining epochs and print its outcome."""
    from cnnlab.training.engine import run_epochs
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.resuming import resume

    workspace = workspace_from(settings, tracking=tracking_from(args, settings))
    run = workspace.store.get(args.run)
    say(args, f"Resuming run {run.id} from {run.path}")
    run = interruptible(
        args,
        lambda stop: resume(
            run.path,
            workspace=workspace,
            hooks=TrainingHooks(
                on_epoch=print_epoch(run_epochs(run)),
                on_batch=print_batch_after(intro(run.record.precision)),
                stop_event=stop,
            ),
        ),
        resumable_at(run.path),
    )
    return run_result(args, run)


COMMAND = Command(
    "resume",
    "continue an interrupted or stopped run in place, from its last complete epoch",
    add_arguments,
    run,
    tensorflow=True,
)
