"""`runs`: list the saved runs, or with `--team` every run on the team tracking server; `sync`:
publish every run not yet on the team server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import Command, add_tracking_options, require_tracking, run_store
from cnnlab.cli.progress import pct, say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--team` and the tracking options."""
    parser.add_argument("--team", action="store_true", help="list the team's runs from the tracking server")
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Print one line per run, newest first, with the dataset and its version it trained on."""

    if args.team:
        return _team_runs(args, settings)
    rows = [{**run.summary(), "dataset_version": run.record.dataset.version} for run in run_store(settings).list()]
    if not args.json:
        for row in rows:
            version = f" v{row['dataset_version']}" if row["dataset_version"] else ""
            print(
                f"{row['id']:<28} {row['status']:<11} {row['name'][:30]:<30} {(row['dataset'][:20] + version):<25} "
                f"test acc {pct(row['test_accuracy'])}"
            )
        if not rows:
            print("No runs yet: train one with `python -m cnnlab train`.")
    return {"runs": rows}


def _team_runs(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.team.remote import team_runs

    tracking = require_tracking(args, settings)
    rows = team_runs(tracking)
    if not args.json:
        for row in rows:
            print(
                f"{row['id']:<34} {row['status']:<11} {(row['user'] or '')[:12]:<12} {(row['name'] or '')[:30]:<30} "
                f"val acc {pct(row['best_val_accuracy'])}  test acc {pct(row['test_accuracy'])}"
            )
        if not rows:
            print(f"No runs in experiment {tracking.experiment!r} yet: train one with a tracking URI set.")
    return {"runs": rows}


def sync(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Publish the runs the team server lacks and print how many were published."""
    from cnnlab.team.tracking import sync_runs

    result = sync_runs(require_tracking(args, settings), run_store(settings))
    for failure in result["failed"]:
        print(f"warning: run {failure['id']} was not published: {failure['error']}", file=sys.stderr)
    say(
        args,
        f"Published {len(result['published'])} run(s); {result['up_to_date']} already published; "
        f"{len(result['failed'])} failed.",
    )
    return result


COMMAND = Command("runs", "list saved runs (with --team: every run on the team tracking server)", add_arguments, run)
SYNC = Command(
    "sync", "publish every run not yet on the team tracking server (whole, never twice)", add_tracking_options, sync
)
