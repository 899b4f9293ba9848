"""`sweep [DATA_DIR] [--dataset-version V] --space FILE --trials N`: search hyperparameters with Optuna; every trial is a saved run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command, add_dataset_options, add_tracking_options, tracking_from, workspace_from
from cnnlab.cli.progress import interruptible, say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset, the search space, the trials and time limit, the study, its fault tolerance and tracking."""
    add_dataset_options(parser, "sweep on")
    parser.add_argument("--space", type=Path, required=True, help="YAML or JSON file: objective, params, fixed")
    parser.add_argument("--trials", type=int, required=True, help="trials this process runs")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--storage", help="SQLAlchemy URL of the study database (default: SQLite in the models folder)")
    parser.add_argument("--study", help="study name; processes with the same name and storage share it")
    parser.add_argument(
        "--heartbeat-interval", type=int, default=None, help="seconds between a running trial's heartbeats (default 10)"
    )
    parser.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="seconds without a heartbeat after which a trial counts as failed and is retried (default 30)",
    )
    parser.add_argument("--max-retry", type=int, default=None, help="retries of a trial whose worker died (default 3)")
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run this process's trials, one line per trial and epoch, and print the best trial so far."""
    from cnnlab.sweep import SweepConfig, load_space, masked_url, run_sweep
    from cnnlab.training.hooks import TrainingHooks

    space = load_space(args.space)  # a bad space file fails here, before anything heavy is imported
    config = SweepConfig(
        trials=args.trials,
        timeout=args.timeout,
        storage=args.storage,
        study_name=args.study,
        fault_tolerance=_fault_tolerance(args),
    )
    if args.data_dir is None:
        from cnnlab.data.sample import sample_dir

        data_dir = sample_dir(settings.cache_dir)
    else:
        data_dir = args.data_dir
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trial lines below replace Optuna's log

    def show_trial(trial: dict[str, Any]) -> None:
        value = "n/a" if trial["value"] is None else f"{trial['value']:.4f}"
        print(
            f"trial {trial['number']} {trial['state']}: {space.objective} {value}  {trial['params']}  run {trial['run_id']}",
            file=sys.stderr,
        )

    def show_epoch(row: dict[str, Any]) -> None:
        print(
            f"trial {row['trial']} epoch {row['epoch']}  {space.objective} {row.get(space.objective, float('nan')):.4f}",
            file=sys.stderr,
        )

    result = interruptible(
        args,
        lambda stop: run_sweep(
            data_dir,
            space,
            config,
            workspace=workspace_from(settings, tracking=tracking_from(args, settings)),
            hooks=TrainingHooks(on_epoch=show_epoch, stop_event=stop),
            on_trial=show_trial,
            dataset_version=args.dataset_version,
        ),
        "Every finished trial is saved in the study and its run; start the sweep again to run more trials.",
    )
    finished = [t for t in result.trials if t["state"] in ("complete", "pruned", "fail")]
    summary = {
        "study": result.study,
        "storage": masked_url(result.storage),
        "best_run_dir": str(result.best_run_dir) if result.best_run_dir else None,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "trials": len(finished),
        "trials_run": result.trials_run,
        "objective": result.objective,
    }
    best = (
        "no completed trial yet"
        if result.best_value is None
        else f"best {result.objective} {result.best_value:.4f} with {result.best_params}, run {result.best_run_dir}"
    )
    say(args, f"Study {result.study}: {len(finished)} finished trial(s), {best}")
    return summary


def _fault_tolerance(args: argparse.Namespace):
    from dataclasses import replace

    from cnnlab.sweep import FaultTolerance

    chosen = {
        "heartbeat_interval": args.heartbeat_interval,
        "grace_period": args.grace_period,
        "max_retry": args.max_retry,
    }
    return replace(FaultTolerance(), **{k: v for k, v in chosen.items() if v is not None})


COMMAND = Command(
    "sweep", "search hyperparameters with Optuna; every trial is a saved run", add_arguments, run, tensorflow=True
)
