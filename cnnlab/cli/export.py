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
    from cnnlab.deploy.quantize import QUANTIZATIONS

    parser.add_argument("run")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="keras", help="onnx needs the onnx extra")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="tflite only: float16 weights, dynamic-range, or int8 calibrated on the run's training images",
    )
    parser.add_argument("--out", type=Path, help="folder to create (default: inside the run folder)")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Export the model and print how far the export's outputs are from the Keras model's."""
    from cnnlab.deploy.export import export_run, read_export

    run = run_store(settings).get(args.run)
    folder = export_run(run, args.format, args.out, cache=settings.cache_dir, quantize=args.quantize)
    manifest = read_export(folder)
    quantized = manifest.get("quantization")
    agreement = f", top-1 agreement {quantized['top1_agreement']:.0%}" if quantized else ""
    kind = f"{args.format} ({args.quantize})" if args.quantize else args.format
    say(
        args,
        f"Exported {kind} to {folder} (max difference from the Keras model {manifest['max_abs_diff']:.2g}{agreement})",
    )
    return {
        "export_dir": str(folder),
        "format": args.format,
        "quantize": args.quantize,
        "max_abs_diff": manifest["max_abs_diff"],
        "top1_agreement": quantized["top1_agreement"] if quantized else None,
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
