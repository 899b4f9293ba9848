"""Dataset preparation: `cnnlab.data.prepare` against a sequential Pillow decode-and-resize loop.

The data are photo-like JPEGs (default 600 files of 500x375, the size of Kaggle's cats-vs-dogs
pictures) written to a temporary folder. Each measurement starts from a cold prepared-image cache
(the OS file cache is warm for both sides, since both read the same files). Repeats are
interleaved and medians reported; prints the machine and the speed-up ratios.

    python -m bench.bench_prepare [--files 600] [--repeats 3] [--size 64] [--format jpeg|png]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.machine import machine
from cnnlab import data


def write_photos(root: Path, files: int, fmt: str = "jpeg", seed: int = 0) -> None:
    """Photo-like images (smooth gradients plus grain) in two class folders, as JPEG or PNG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for i in range(files):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0.005, 0.03, 3)
        base = np.stack([np.sin(xx * a + i), np.cos(yy * b), np.sin((xx + yy) * c)], axis=-1) * 90 + 128
        grain = rng.normal(0, 18, base.shape)
        Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)).save(
            folder / f"{i:05d}.{'jpg' if fmt == 'jpeg' else 'png'}", quality=90
        )


def sequential_loop(report: data.DatasetReport, size: int) -> np.ndarray:
    """What tutorials do: open, convert, resize, one file after another."""
    return np.stack(
        [
            np.asarray(Image.open(report.root / rel).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for rel in report.files
        ]
    )


def timed(fn) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg", help="PNG has no reduced-scale decoding")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, caches = Path(tmp) / "photos", Path(tmp) / "caches"
        write_photos(root, args.files, args.format)
        report = data.scan(root, cache=caches / "scan")
        loop, first, again, scans = [], [], [], []
        for repeat in range(args.repeats):
            cache = caches / f"cold-{repeat}"
            loop.append(timed(lambda: sequential_loop(report, args.size)))
            scans.append(timed(lambda cache=cache: data.scan(root, cache=cache)))
            first.append(timed(lambda cache=cache: data.prepare(report, (args.size, args.size), cache=cache)))
            again.append(
                timed(
                    lambda cache=cache: np.asarray(
                        data.prepare(report, (args.size, args.size), cache=cache).images
                    ).sum()
                )
            )
    loop_s, first_s, again_s, scan_s = (statistics.median(v) for v in (loop, first, again, scans))
    print(f"machine: {machine()}")
    print(
        f"data: {args.files} {args.format.upper()} files of 500x375 -> {args.size}x{args.size} RGB, {args.repeats} interleaved repeats, medians"
    )
    print(f"sequential Pillow loop:            {loop_s:.3f} s")
    print(f"cnnlab prepare, first time:        {first_s:.3f} s  -> {loop_s / first_s:.2f}x faster (target >= 1.8x)")
    print(
        f"cnnlab prepare, again (cached):    {again_s:.4f} s  -> {first_s / again_s:.1f}x faster than first (target >= 10x)"
    )
    print(
        f"cnnlab scan (checks every file):   {scan_s:.3f} s  (scan + first prepare: {loop_s / (scan_s + first_s):.2f}x the loop's speed)"
    )


if __name__ == "__main__":
    main()
