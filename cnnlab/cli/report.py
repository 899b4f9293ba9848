"""`report RUN --out report.html`: the run's one-file HTML report (a model card) that opens offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli.options import Command, run_store
from cnnlab.cli.progress import say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the output file and the model card's two fields."""
    parser.add_argument("run")
    parser.add_argument("--out", type=Path, required=True, help="HTML file to write, e.g. report.html")
    parser.add_argument("--intended-use", default="", help="what the model is for (the model card's first field)")
    parser.add_argument("--limitations", default="", help="what it should not be used for, known weaknesses")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Write the report and say where it is."""
    from cnnlab.deploy.report import write_report

    run = run_store(settings).get(args.run)
    out = write_report(
        run,
        args.out,
        cache=settings.cache_dir,
        intended_use=args.intended_use,
        limitations=args.limitations,
        max_cache_mb=settings.max_cache_mb,
    )
    size = out.stat().st_size
    say(args, f"Wrote the report of {run.name} to {out} ({size / 1e6:.1f} MB, opens offline)")
    return {"report": str(out), "bytes": size, "run": run.id}


COMMAND = Command(
    "report",
    "write a run's one-file HTML report (a model card) that opens offline",
    add_arguments,
    run,
    tensorflow=True,
)
