"""`inspect RUN IMAGE --out DIR`: write a run's feature maps and filters for one image as PNG grids."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command, run_store
from cnnlab.cli.progress import say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the image, one layer (or all) and the output folder."""
    parser.add_argument("run")
    parser.add_argument("image", type=Path)
    parser.add_argument("--layer", help="a conv, pooling or activation layer (default: every one of them)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files (created when missing)")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Compute the feature maps, write the PNG files and list them."""
    from cnnlab.analysis.inspect import feature_maps, write_pngs
    from cnnlab.data.images import load_array

    run = run_store(settings).get(args.run)
    if not args.image.is_file():
        raise ValueError(f"Image file not found; check the path. Received: image={str(args.image)!r}")
    config = run.model_config()
    image = load_array(args.image, config.image_size, config.color_mode, config.resize_mode)
    model = run.load_model()
    maps = feature_maps(model, image, [args.layer] if args.layer else None)
    written = write_pngs(model, maps, args.out)
    say(args, f"Wrote {len(written)} PNG files to {args.out}:")
    for path in written:
        say(args, f"  {path.name}")
    layers = [
        {"name": m.layer.name, "kind": m.layer.kind, "output_shape": list(m.values.shape), "range": m.value_range}
        for m in maps[1:]
    ]
    return {"run_id": run.id, "out_dir": str(args.out), "files": [str(p) for p in written], "layers": layers}


COMMAND = Command(
    "inspect",
    "write a run's feature maps and filters for one image as PNG grids",
    add_arguments,
    run,
    tensorflow=True,
)
