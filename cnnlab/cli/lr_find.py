"""`lr-find [DATA_DIR] [--dataset-version V]`: find a learning rate with a short run whose rate grows every batch."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import Command, add_config_options, add_dataset_options, config_from, workspace_from
from cnnlab.cli.progress import say
from cnnlab.model import ModelConfig
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset, the range of rates, the number of steps and every config field."""
    from cnnlab.training.config import TrainConfig

    add_dataset_options(parser, "try rates on")
    parser.add_argument("--min-lr", type=float, default=1e-6, help="first rate tried (default 1e-6)")
    parser.add_argument("--max-lr", type=float, default=1.0, help="last rate tried (default 1)")
    parser.add_argument("--steps", type=int, default=100, help="batches, one rate each (default 100)")
    add_config_options(parser, ModelConfig)
    add_config_options(parser, TrainConfig)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run the rate sweep and print the suggested rate."""
    from cnnlab.data.sample import sample_dir
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.lr_find import find_learning_rate

    result = find_learning_rate(
        args.data_dir or sample_dir(settings.cache_dir),
        config_from(args, ModelConfig),
        config_from(args, TrainConfig),
        workspace=workspace_from(settings),
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num_steps=args.steps,
        dataset_version=args.dataset_version,
    )
    say(
        args,
        f"Suggested learning rate: {result.suggested_learning_rate:.2g} "
        f"(tried {len(result.learning_rates)} rates from {result.min_lr:g} to {result.learning_rates[-1]:.2g})",
    )
    return result.to_dict()


COMMAND = Command(
    "lr-find",
    "find a learning rate: a short run with a growing rate (on the built-in sample by default)",
    add_arguments,
    run,
    tensorflow=True,
)
