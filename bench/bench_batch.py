"""Batch prediction at folder scale: `cnnlab predict RUN FOLDER --csv` against the bare model, and its memory.

With the demo model loaded once, on folders of N built-in sample PNG files (64x64; hard links to
the sample's 2,400 files, so any N costs no disk):
- throughput: `cnnlab.deploy.batch.predict_to_csv` over the folder (walk, decode, model, CSV) against
  the model's bare `predict_on_batch` over the same pixels, decoded beforehand, in batches of the
  same size; interleaved repeats, medians, ratio (target: at least 0.9x);
- memory: the peak resident memory of a fresh process predicting each folder into a CSV, so its
  growth from the smallest N to the largest shows whether memory grows with the number of images.
With `--model-threads N`, TensorFlow runs each op on N threads (both sides alike): on a 2-core
machine, `--model-threads 1` leaves a core beside the model, as a machine with more cores than the
model uses has, where the decoding can overlap the model's pass. Measures and prints; asserts nothing.

    python -m bench.bench_batch [--sizes 1000 10000] [--repeats 3] [--batch-size 64] [--model-threads N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import machine
from cnnlab.data.images import load_array
from cnnlab.data.sample import sample_dir
from cnnlab.deploy.batch import folder_source, predict_to_csv
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR, Settings


def linked_folder(files: list[Path], n: int, folder: Path) -> Path:
    """`n` images in sub-folders of 1,000, hard links to `files` in turn."""
    for i in range(n):
        target = folder / f"{i // 1000:03d}" / f"{i:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(files[i % len(files)], target)
    return folder


def child_peak(folder: Path, batch_size: int) -> int:
    """Peak resident memory (bytes) of a fresh process that loads the demo model and predicts `folder` into a CSV."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_batch", "--child", str(folder), "--batch-size", str(batch_size)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


def child(folder: Path, batch_size: int) -> None:
    """The measured process: predict the folder, then print the peak resident memory in bytes."""
    run = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get(DEMO_RUN_DIR.name)
    with tempfile.TemporaryDirectory() as tmp:
        predict_to_csv(
            run.load_model(),
            run.class_names,
            run.model_config(),
            folder_source(folder),
            Path(tmp) / "out.csv",
            batch_size=batch_size,
            temperature=run.temperature,
        )
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main() -> None:
    """Throughput side by side for each size, then peak memory per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--model-threads", type=int, help="TensorFlow's threads per op, both sides (default: one per core)"
    )
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch_size)
        return
    if args.model_threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.model_threads)
    run = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get(DEMO_RUN_DIR.name)
    model, config = run.load_model(), run.model_config()
    files = sorted(sample_dir(args.cache).rglob("*.png"))
    decoded = np.stack([load_array(f, config.image_size, config.color_mode, config.resize_mode) for f in files])
    b = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        folders = {n: linked_folder(files, n, Path(tmp) / str(n)) for n in args.sizes}

        def ours(n: int) -> float:
            start = time.perf_counter()
            predict_to_csv(
                model, run.class_names, config, folder_source(folders[n]), Path(tmp) / "out.csv", batch_size=b
            )
            return time.perf_counter() - start

        def bare(n: int) -> float:
            pixels = decoded[np.arange(n) % len(decoded)]  # the same pixels, decoded beforehand
            start = time.perf_counter()
            for i in range(0, n, b):
                model.predict_on_batch(pixels[i : i + b].astype(np.float32))
            return time.perf_counter() - start

        ours(min(args.sizes)), bare(min(args.sizes))  # first calls trace the model's functions
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeats):
            for n in args.sizes:
                for side, call in (("ours", ours), ("bare", bare)):
                    times.setdefault((side, n), []).append(call(n))
        peaks = {n: child_peak(folders[n], b) for n in args.sizes}

    print(f"machine: {machine()}")
    threads = f"{args.model_threads} per op" if args.model_threads else "one per core"
    print(
        f"model: the demo model ({config.image_size[0]}x{config.image_size[1]} RGB), batches of {b}, loaded once; "
        f"TensorFlow threads: {threads}"
    )
    print(f"throughput, {args.repeats} interleaved repeats, medians:")
    for n in args.sizes:
        ours_s, bare_s = statistics.median(times[("ours", n)]), statistics.median(times[("bare", n)])
        ratios = [bt / ot for ot, bt in zip(times[("ours", n)], times[("bare", n)], strict=True)]
        print(
            f"  {n:>6} images: cnnlab batch (walk, decode, model, CSV) {n / ours_s:6.0f} img/s, bare predict_on_batch "
            f"on decoded pixels {n / bare_s:6.0f} img/s; ratio {bare_s / ours_s:.2f}x (per repeat: "
            f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.9x: {'met' if bare_s / ours_s >= 0.9 else 'NOT met'})"
        )
    low, high = min(args.sizes), max(args.sizes)
    print("peak resident memory of a fresh process predicting the folder into a CSV:")
    for n in args.sizes:
        print(f"  {n:>6} images: {peaks[n] / 2**20:7.0f} MB")
    print(f"  growth from {low} to {high} images: {(peaks[high] - peaks[low]) / 2**20:+.0f} MB")


if __name__ == "__main__":
    main()
