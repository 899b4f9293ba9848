"""`train [DATA_DIR]`: train a CNN (on the built-in sample when no folder is given), or with
`--continue-from RUN` train more epochs of a completed run as a new run."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from cnnlab.cli.options import (
    Command,
    UsageError,
    add_config_options,
    add_dataset_options,
    add_tracking_options,
    config_from,
    run_store,
    tracking_from,
    workspace_from,
)
from cnnlab.cli.progress import (
    interruptible,
    intro,
    print_batch_after,
    print_epoch,
    print_weights_download,
    resumable_at,
    run_result,
)
from cnnlab.model import ModelConfig
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset, the run's name and folder, the run to continue, every config field and the tracking options."""
    from cnnlab.training.config import TrainConfig

    add_dataset_options(parser)
    parser.add_argument("--name", help="display name of the run")
    parser.add_argument(
        "--run-dir", type=Path, help="new folder to save the run in (default: a new folder in the models folder)"
    )
    parser.add_argument(
        "--continue-from",
        metavar="RUN",
        help="train --epochs more epochs of a completed run as a new run (its dataset, split and settings)",
    )
    add_config_options(parser, ModelConfig)
    add_config_options(parser, TrainConfig)
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Plan the training (refusing one over the memory budget), train it and print its outcome."""
    from cnnlab.data.sample import sample_dir
    from cnnlab.runs.store import new_run_id
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.engine import train
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.plan import training_plan

    if args.continue_from is not None:
        return _continue(args, settings)
    model_config = config_from(args, ModelConfig)
    train_config = config_from(args, TrainConfig)
    data_dir = args.data_dir or sample_dir(settings.cache_dir)
    store = run_store(settings, args.run_dir.parent if args.run_dir else None)
    run_id = args.run_dir.name if args.run_dir else new_run_id()
    workspace = workspace_from(settings, store, tracking_from(args, settings))
    plan = training_plan(
        data_dir, model_config, train_config, workspace=workspace, dataset_version=args.dataset_version
    )
    plan.check()
    run = interruptible(
        args,
        lambda stop: train(
            plan.data_dir,
            plan.model_config,
            plan.train_config,
            workspace=workspace,
            hooks=TrainingHooks(
                on_epoch=print_epoch(plan.epochs),
                on_batch=print_batch_after("\n".join(plan.describe())),
                on_download=print_weights_download,
                stop_event=stop,
            ),
            name=args.name,
            run_id=run_id,
            precision=plan.precision,
            dataset_version=plan.dataset_version,
        ),
        resumable_at(store.root / run_id),
    )
    return run_result(args, run)


def _continue(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.runs.store import new_run_id
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.resuming import continue_training

    given = [f.name for f in (*fields(ModelConfig), *fields(TrainConfig)) if getattr(args, f.name, None) is not None]
    given += [name for name in ("dataset_version", "data_dir") if getattr(args, name) is not None]
    if args.epochs is None or any(name != "epochs" for name in given):
        raise UsageError(
            "--continue-from takes the dataset and every setting from the run it continues: give only --epochs N "
            "(how many more), and --name or --run-dir if you like (see `python -m cnnlab train --help`). "
            f"Received: options={given}"
        )
    store = run_store(settings, args.run_dir.parent if args.run_dir else None)
    parent = run_store(settings).get(args.continue_from)
    run_id = args.run_dir.name if args.run_dir else new_run_id()
    run = interruptible(
        args,
        lambda stop: continue_training(
            parent.path,
            args.epochs,
            workspace=workspace_from(settings, store, tracking_from(args, settings)),
            hooks=TrainingHooks(
                on_epoch=print_epoch(len(parent.history) + args.epochs),
                on_batch=print_batch_after(intro(parent.record.precision)),
                stop_event=stop,
            ),
            name=args.name,
            run_id=run_id,
        ),
        resumable_at(store.root / run_id),
    )
    return {**run_result(args, run), "parent": parent.id}


COMMAND = Command(
    "train", "train a CNN (on the built-in sample when no folder is given)", add_arguments, run, tensorflow=True
)
