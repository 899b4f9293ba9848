"""`download NAME`: fetch a well-known dataset, verify it and convert it into class folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command
from cnnlab.cli.progress import print_download, say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The catalog name, the cache folder and a mirror."""
    from cnnlab.data.catalog import CATALOG

    parser.add_argument("name", choices=tuple(CATALOG))
    parser.add_argument("--cache", type=Path, help="cache folder (default: CNNLAB_CACHE_DIR or ~/.cache/cnnlab)")
    parser.add_argument(
        "--base-url", help="fetch the same file names from this server instead (a mirror; default: CNNLAB_DATASETS_URL)"
    )


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Download and convert the dataset (once; it is kept in the cache)."""
    from cnnlab.data.catalog import CATALOG, download

    root = download(
        args.name,
        args.cache or settings.cache_dir,
        on_progress=print_download,
        base_url=args.base_url or settings.datasets_url,
    )
    say(args, f"{CATALOG[args.name].title} is ready at {root}")
    return {"name": args.name, "data_dir": str(root)}


COMMAND = Command(
    "download",
    "fetch a well-known dataset, verify it and convert it into class folders",
    add_arguments,
    run,
    tensorflow=True,
)
