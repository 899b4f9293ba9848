"""`benchmark RUN`: the run's model in each export format, side by side on its test split."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.options import Command, run_store
from cnnlab.cli.progress import say
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the formats and how many timed calls."""
    from cnnlab.deploy.benchmark import BENCHMARK_FORMATS

    parser.add_argument("run")
    parser.add_argument(
        "--formats",
        default=",".join(BENCHMARK_FORMATS),
        help=f"comma-separated, from {','.join(BENCHMARK_FORMATS)} (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed single-image calls per format (median shown)")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Export, load, evaluate and time each format; print the table unless `--json`."""
    from cnnlab.deploy.benchmark import benchmark_run, benchmark_table, parse_formats

    formats = parse_formats(args.formats)  # bad input fails before the run is opened
    run = run_store(settings).get(args.run)
    say(args, f"Benchmarking {len(formats)} formats on the test split of {run.name}...")
    result = benchmark_run(
        run, formats, cache=settings.cache_dir, repeats=args.repeats, max_cache_mb=settings.max_cache_mb
    )
    if not args.json:
        table = benchmark_table(result).fillna("")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(
            f"{result['num_test_images']} test images; ms per image: median of {result['repeats']} single-image "
            f"calls after {result['warmup']} warm-up calls ({result['machine']})"
        )
    return result


COMMAND = Command(
    "benchmark",
    "compare a run's export formats: size, test accuracy, agreement, speed",
    add_arguments,
    run,
    tensorflow=True,
)
