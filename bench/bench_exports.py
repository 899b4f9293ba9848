"""Export formats of the demo run side by side: size, test accuracy, agreement with Keras, batch-1 speed.

`cnnlab.deploy.benchmark.benchmark_run` on the shipped demo model (5 shapes, 64x64, 360 test
images of the built-in sample): each format exported and checked, every test image predicted one
at a time in the format's own runtime, then `--repeats` timed single-image calls after warm-up
(median). Measures and prints; asserts nothing. The result is kept in the cache folder, not the
demo's.

    python -m bench.bench_exports [--repeats 200] [--cache DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.machine import machine
from cnnlab.deploy.benchmark import BENCHMARK_FORMATS, benchmark_run, benchmark_table
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR, Settings


def main() -> None:
    """Benchmark every format and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--formats", default=",".join(BENCHMARK_FORMATS))
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    run = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get(DEMO_RUN_DIR.name)
    start = time.perf_counter()
    result = benchmark_run(run, args.formats, cache=args.cache, repeats=args.repeats)
    print(f"machine: {machine()}")
    print(benchmark_table(result).fillna("").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"{result['num_test_images']} test images; median of {result['repeats']} single-image calls after "
        f"{result['warmup']} warm-up calls; {time.perf_counter() - start:.0f} s in all"
    )


if __name__ == "__main__":
    main()
