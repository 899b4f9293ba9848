"""`scan DATA_DIR`: check a class-folder dataset and report what can be used."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset folder."""
    parser.add_argument("data_dir", type=Path)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Scan the folder and print its classes, image sizes and skipped files."""
    from cnnlab.data import scan

    report = scan(args.data_dir, cache=settings.cache_dir, max_total_pixels=settings.max_dataset_pixels).to_dict()
    if not args.json:
        print(f"{report['num_images']} usable images in {len(report['classes'])} classes at {report['root']}")
        for name, count in report["counts"].items():
            print(f"  {name:<24} {count}")
        for empty in report["empty_classes"]:
            print(f"  {empty:<24} 0 (empty class folder, ignored)")
        stats = report["size_stats"]
        if stats:
            print(
                f"image sizes: width {stats['min_width']}-{stats['max_width']} (median {stats['median_width']:g}), "
                f"height {stats['min_height']}-{stats['max_height']} (median {stats['median_height']:g})"
            )
        print(f"{len(report['skipped'])} skipped file(s)")
        for skipped in report["skipped"]:
            print(f"  {skipped['path']}: {skipped['reason']}")
    return report


COMMAND = Command("scan", "check a class-folder dataset and report what can be used", add_arguments, run)
