"""`predict RUN IMAGE...`: predict the class of one or more images with a run's model (local or team run id)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the images and the tracking options (to open a teammate's run)."""
    parser.add_argument("run")
    parser.add_argument("images", nargs="+", type=Path)
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Predict every image (an unreadable one is reported, not fatal, unless all are) and print the labels."""
    from cnnlab.deploy.prediction import predict

    run = open_run(args, settings)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise ValueError(f"Image file not found; check the path. Received: image={missing[0]!r}")
    results = predict(
        run.load_model(),
        run.class_names,
        run.model_config(),
        args.images,
        names=[str(p) for p in args.images],
        errors="report",
        temperature=run.temperature,
    )
    for r in results if not args.json else []:
        print(f"{r.name}: {r.error}" if r.error else f"{r.name}: {r.label} ({r.confidence:.1%})")
    failed = [r for r in results if r.error]
    if failed and len(failed) == len(results):
        raise ValueError(failed[0].error)
    return {"predictions": [r.to_dict() for r in results], "temperature": run.temperature}


COMMAND = Command(
    "predict",
    "predict the class of one or more images with a run's model (local or team run id)",
    add_arguments,
    run,
    tensorflow=True,
)
