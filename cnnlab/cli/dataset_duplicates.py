"""`dataset duplicates DATASET`: the groups of images that are the same picture (exact copies, or
re-encoded, resized, cropped or recoloured ones), flagging those that leak across splits or carry
two labels. Nothing is changed; `dataset exclude` removes the copies as a new version."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.dataset_edits import add_dataset_argument, open_versioned
from cnnlab.cli.options import Command, version_number
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset and its version."""
    add_dataset_argument(parser)
    parser.add_argument("--version", type=version_number, help="version to look in (default: the latest)")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Find the version's duplicate groups; print a summary line and one line per group."""
    from cnnlab.data.duplicates import find_duplicates

    dataset = open_versioned(args.dataset, settings)
    version = dataset.manifest(args.version).version
    report = find_duplicates(dataset, version, cache=settings.cache_dir)
    if not args.json:
        print(
            f"Version {version} of '{dataset.name}' ({report.num_images} images): {len(report.groups)} duplicate "
            f"group(s), {len(report.leaks)} leaking across splits, {len(report.conflicts)} with two labels"
        )
        for group in report.groups:
            flags = "".join(f" [{flag}]" for flag in ("leak", "conflict") if getattr(group, flag))
            images = ", ".join(
                f"{path} ({label}, {part})"
                for path, label, part in zip(group.paths, group.labels, group.splits, strict=True)
            )
            print(f"  {group.kind:<5}{flags} {images}")
        if report.groups:
            print(
                f"Keep one image of each group with `cnnlab dataset exclude {args.dataset} IMAGE...` (a new version)."
            )
    return {"dataset": dataset.name, "version": version, **report.to_dict()}


COMMAND = Command(
    "duplicates",
    "list the images that are the same picture (exact, re-encoded, resized, cropped or recoloured copies), "
    "flagging copies across splits (leaks) and under two labels (conflicts)",
    add_arguments,
    run,
)
