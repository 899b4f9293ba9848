"""`sample OUT_DIR`: write the built-in sample dataset as class folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command
from cnnlab.cli.progress import say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The output folder and the seed."""
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Write the sample dataset."""
    from cnnlab.data.sample import write_sample

    out = write_sample(args.out_dir, seed=args.seed)
    say(args, f"Wrote the sample dataset to {out}")
    return {"data_dir": str(out)}


COMMAND = Command("sample", "write the built-in sample dataset as class folders", add_arguments, run)
