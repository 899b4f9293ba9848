"""`predict RUN IMAGE...`: predict the class of one or more images with a run's model (local or team run id);
`predict RUN FOLDER|ZIP --csv OUT.csv`: every image of a folder or zip, streamed into a CSV (`cnnlab.deploy.batch`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.cli.options import Command, add_tracking_options, open_run
from cnnlab.settings import Settings

if TYPE_CHECKING:
    from cnnlab.analysis.novelty import NoveltyReference
    from cnnlab.runs.store import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the images and the tracking options (to open a teammate's run)."""
    parser.add_argument("run")
    parser.add_argument("images", nargs="+", type=Path, help="image files, or one folder or .zip of images with --csv")
    parser.add_argument(
        "--csv", type=Path, help="write one row per image of a folder or zip to this CSV (streamed, any number)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="images per model pass with --csv (default: %(default)s)"
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="average over the run's test-time augmentation transforms (one model pass each: N times the time)",
    )
    add_tracking_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Predict every image (an unreadable one is reported, not fatal, unless all are) and print the labels,
    each with the unfamiliar-image flag (`cnnlab.analysis.novelty`) when the run's dataset is here to fit it."""
    from cnnlab.analysis.novelty import flag_images
    from cnnlab.analysis.tta import tta_transforms
    from cnnlab.deploy.prediction import predict

    batch = args.csv is not None or any(_is_collection(p) for p in args.images)
    if batch:
        return _batch(args, settings)
    run = open_run(args, settings)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise ValueError(f"Image file not found; check the path. Received: image={missing[0]!r}")
    model = run.load_model()
    results = predict(
        model,
        run.class_names,
        run.model_config(),
        args.images,
        names=[str(p) for p in args.images],
        errors="report",
        tta=args.tta,
        temperature=run.temperature,
    )
    failed = [r for r in results if r.error]
    if failed and len(failed) == len(results):
        raise ValueError(failed[0].error)
    reference = _reference(run, settings)
    good = [r.image for r in results if r.image is not None]
    found = iter(flag_images(model, reference, good) if reference is not None else [])
    flags = [None if r.image is None or reference is None else next(found) for r in results]
    for r, flag in zip(results, flags, strict=True) if not args.json else []:
        note = f"  [{flag.explanation}]" if flag is not None and flag.novel else ""
        print(f"{r.name}: {r.error}" if r.error else f"{r.name}: {r.label} ({r.confidence:.1%}){note}")
    rows = [
        r.to_dict() if r.error else {**r.to_dict(), "novelty": None if flag is None else flag.to_dict()}
        for r, flag in zip(results, flags, strict=True)
    ]
    return {
        "predictions": rows,
        "temperature": run.temperature,
        "tta_transforms": list(tta_transforms(run.model_config())) if args.tta else None,
    }


def _is_collection(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".zip"


def _batch(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Every image of one folder or zip into the `--csv` file, with a progress line and one summary line."""
    from cnnlab.cli.progress import print_images, say
    from cnnlab.deploy.batch import path_source, predict_to_csv

    source_path = args.images[0]
    if args.csv is None:
        raise ValueError(
            "A folder or zip of images is predicted into a CSV file; add --csv OUT.csv. "
            f"Received: images={str(source_path)!r}"
        )
    if len(args.images) != 1 or not source_path.exists():
        what = "does not exist" if len(args.images) == 1 else f"is one of {len(args.images)} inputs"
        raise ValueError(
            f"--csv takes exactly one existing folder or .zip of images; the input {what}. "
            f"Received: images={str(source_path)!r}"
        )
    if args.tta:
        raise ValueError("--tta is for image files, not a folder or zip with --csv; leave it out. Received: tta=True")
    run = open_run(args, settings)
    source = path_source(source_path)
    model = run.load_model()
    reference = _reference(run, settings)
    summary = predict_to_csv(
        model,
        run.class_names,
        run.model_config(),
        source,
        args.csv,
        batch_size=args.batch_size,
        temperature=run.temperature,
        reference=reference,
        progress=print_images,
    )
    say(
        args,
        f"{summary.num_images} images, {summary.num_unreadable} unreadable, {summary.images_per_s:.0f} images/s; "
        f"wrote {args.csv}",
    )
    return {"csv": str(args.csv), **summary.to_dict(), "temperature": run.temperature}


def _reference(run: Run, settings: Settings) -> NoveltyReference | None:
    """The run's novelty reference, or None with a warning when it cannot be fitted here (no dataset)."""
    from cnnlab.analysis.novelty import run_reference

    try:
        return run_reference(run, cache=settings.cache_dir)
    except ValueError as exc:
        print(f"warning: no unfamiliar-image flag: {exc}", file=sys.stderr)
        return None


COMMAND = Command(
    "predict",
    "predict the class of one or more images with a run's model (local or team run id)",
    add_arguments,
    run,
    tensorflow=True,
)
