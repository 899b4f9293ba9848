"""`export RUN`: export a run's model, checked against the Keras model after writing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command, run_store
from cnnlab.cli.progress import say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the format and the output folder."""
    from cnnlab.deploy.export import EXPORT_FORMATS

    parser.add_argument("run")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="keras", help="onnx needs the onnx extra")
    parser.add_argument("--out", type=Path, help="folder to create (default: inside the run folder)")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Export the model and print how far the export's outputs are from the Keras model's."""
    from cnnlab.deploy.export import export_run, read_export

    folder = export_run(run_store(settings).get(args.run), args.format, args.out, cache=settings.cache_dir)
    manifest = read_export(folder)
    say(
        args, f"Exported {args.format} to {folder} (max difference from the Keras model {manifest['max_abs_diff']:.2g})"
    )
    return {
        "export_dir": str(folder),
        "format": args.format,
        "max_abs_diff": manifest["max_abs_diff"],
        "class_names": manifest["class_names"],
        "temperature": manifest.get("temperature"),
    }


COMMAND = Command(
    "export",
    "export a run's model (checked against the Keras model after writing)",
    add_arguments,
    run,
    tensorflow=True,
)
