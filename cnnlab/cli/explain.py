"""`explain RUN IMAGE`: heatmaps of what made a run's model choose a class, by one or more methods."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.analysis.saliency import METHODS
from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the image, the methods, the class, the output folder and the sanity check."""
    parser.add_argument("run")
    parser.add_argument("image", type=Path)
    parser.add_argument(
        "--method", action="append", choices=(*METHODS, "all"), help="repeat for several, or all (default gradcam)"
    )
    parser.add_argument("--class", dest="class_name", help="the class to explain (default: the predicted class)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files (created if missing)")
    parser.add_argument(
        "--sanity", action="store_true", help="also run the randomisation check (maps of a model with random weights)"
    )
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Write each method's heatmap and overlay PNGs into --out, print what each measures and where it went."""
    from cnnlab.analysis.saliency import check_methods, class_index_of, explain_image
    from cnnlab.analysis.sanity import randomisation_check
    from cnnlab.common.files import user_path
    from cnnlab.data.images import load_array

    methods = check_methods(args.method or ["gradcam"])
    run = open_run(args, settings)
    image_path = user_path(args.image, "image")
    if not image_path.is_file():
        raise ValueError(f"Image file not found; check the path. Received: image={str(args.image)!r}")
    config = run.model_config()
    image = load_array(image_path, config.image_size, config.color_mode, config.resize_mode, name=str(args.image))
    model = run.load_model()
    class_index = None if args.class_name is None else class_index_of(run.class_names, args.class_name)
    explanations = explain_image(model, image, methods, class_index)
    out = user_path(args.out, "out")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for e in explanations:
        heatmap, overlay = write_pngs(out, image_path.stem, e.method, image, e.heatmap)
        written.append(
            {"method": e.method, "note": e.note, "heatmap": str(heatmap), "overlay": str(overlay), "seconds": e.seconds}
        )
        if not args.json:
            print(f"{e.label} ({e.seconds:.2f} s): {heatmap}, {overlay}\n  {e.note}")
    class_name = run.class_names[explanations[0].class_index]
    result: dict[str, Any] = {"image": str(args.image), "class": class_name, "explanations": written}
    if args.sanity:
        check = randomisation_check(model, image, methods, explanations[0].class_index)
        result["sanity"] = check.to_dict()
        for method in methods if not args.json else ():
            steps = ", ".join(f"{s.layer} {s.correlations[method]:.2f}" for s in check.steps)
            print(f"randomisation check, {method}: {check.verdict(method)}\n  rank correlation by step: {steps}")
    if not args.json:
        print(f"explained class {class_name!r}")
    return result


def write_pngs(out: Path, stem: str, method: str, image, heatmap) -> tuple[Path, Path]:
    """Write `<stem>_<method>_heatmap.png` (the map in jet colours) and `..._overlay.png` atomically."""
    import numpy as np
    from PIL import Image

    from cnnlab.analysis.explain import jet_colormap, overlay
    from cnnlab.common.files import atomic_write

    paths = out / f"{stem}_{method}_heatmap.png", out / f"{stem}_{method}_overlay.png"
    colours = np.rint(jet_colormap(heatmap) * 255).astype(np.uint8)
    for path, pixels in zip(paths, (colours, overlay(image, heatmap)), strict=True):
        with atomic_write(path, "wb") as fh:
            Image.fromarray(pixels).save(fh, "PNG")
    return paths


COMMAND = Command(
    "explain",
    "heatmaps of what made a run's model choose a class (Grad-CAM, integrated gradients, occlusion, SmoothGrad)",
    add_arguments,
    run,
    tensorflow=True,
)
