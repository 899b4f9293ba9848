"""Dataset versions: saving an edit on a large dataset, and preparing a version next to a prepared one.

The data are tiny PNGs (default 20,000 of 16x16 in 4 classes) written once to a temporary folder;
version 1 is made from it. (a) `edits.save_version` with 3 relabels and 2 excludes, each repeat on
the latest version (no rescan, no decode). (b) Preparing a version that adds `k` images to one
already prepared, against preparing it from a cold cache, and a relabel-only version; each with
how many images it decoded (`prepare` alone: `version_data`, which a training calls first, is timed
on its own). Repeats are interleaved and medians reported; prints the machine.

    python -m bench.bench_versions [--images 20000] [--repeats 5] [--k 50] [--size 32]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.machine import machine
from cnnlab import data
from cnnlab.data import edits, versions
from cnnlab.data.edits import Add, Exclude, Relabel

CLASSES = ("a", "b", "c", "d")


def png(rng: np.random.Generator, side: int = 16) -> bytes:
    """One small random PNG's bytes."""
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def write_pngs(root: Path, count: int) -> None:
    """`count` random 16x16 PNGs spread over the class folders."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / CLASSES[i % len(CLASSES)] / f"{i:06d}.png").write_bytes(png(rng))


def timed(fn) -> tuple[float, object]:
    """Seconds one call takes, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def edit_batch(manifest: versions.Manifest, repeat: int) -> list:
    """3 relabels and 2 excludes of included images, different ones each repeat."""
    included = manifest.included
    picked = [included[(repeat * 5 + j) * 997 % len(included)] for j in range(5)]
    relabels = [Relabel(e.path, next(c for c in manifest.classes if c != e.label)) for e in picked[:3]]
    return [*relabels, *(Exclude(e.path, "bench") for e in picked[3:])]


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=50, help="images the new version adds")
    parser.add_argument("--size", type=int, default=32, help="side the images are prepared at")
    args = parser.parse_args()
    size = (args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        root, datasets, caches = Path(tmp) / "pngs", Path(tmp) / "datasets", Path(tmp) / "caches"
        write_pngs(root, args.images)
        first_use, dataset = timed(lambda: versions.open_dataset(root, datasets, cache=caches / "scan"))

        saves = []
        for repeat in range(args.repeats):
            batch = edit_batch(dataset.manifest(), repeat)
            saves.append(timed(lambda batch=batch: edits.save_version(dataset, batch))[0])
        base = dataset.latest()
        rng = np.random.default_rng(1)
        edits.save_version(dataset, [Add(png(rng), f"new{i}.png", CLASSES[i % len(CLASSES)]) for i in range(args.k)])
        added = dataset.latest()
        relabelled = edits.save_version(dataset, edit_batch(dataset.manifest(), args.repeats)[:3]).version
        loads = [timed(lambda: versions.version_data(dataset, added))[0] for _ in range(args.repeats)]
        reports = {v: versions.version_data(dataset, v).report for v in (base, added, relabelled)}

        scratch, beside, relabel = [], [], []
        for repeat in range(max(1, args.repeats // 2)):
            cold, warm = caches / f"cold-{repeat}", caches / f"warm-{repeat}"
            scratch.append(timed(lambda cold=cold: data.prepare(reports[added], size, cache=cold)))
            data.prepare(reports[base], size, cache=warm)
            beside.append(timed(lambda warm=warm: data.prepare(reports[added], size, cache=warm)))
            relabel.append(timed(lambda warm=warm: data.prepare(reports[relabelled], size, cache=warm)))

    def median(runs: list) -> float:
        return statistics.median(seconds for seconds, _ in runs)

    scratch_s, beside_s, relabel_s = median(scratch), median(beside), median(relabel)
    print(f"machine: {machine()}")
    print(
        f"data: {args.images:,} PNG files of 16x16 in {len(CLASSES)} classes, prepared at {args.size}x{args.size} RGB; "
        f"{args.repeats} repeats (prepare: {len(scratch)}, interleaved), medians"
    )
    print(f"open_dataset, first use (hash every file, make version 1): {first_use:.2f} s")
    print(
        f"save_version, 3 relabels + 2 excludes:  {statistics.median(saves):.3f} s  "
        f"(min {min(saves):.3f}, max {max(saves):.3f}; target well under 1 s)"
    )
    print(
        f"version_data of {args.images + args.k:,} images (checks each file's size and time; before any prepare): {statistics.median(loads):.3f} s"
    )
    print(f"prepare the version from a cold cache:      {scratch_s:.3f} s, decoded {scratch[0][1].decoded:,}")
    print(
        f"prepare it beside the version before it:    {beside_s:.3f} s, decoded {beside[0][1].decoded:,} "
        f"(k={args.k})  -> {scratch_s / beside_s:.1f}x faster"
    )
    print(
        f"prepare a relabel-only version beside it:   {relabel_s:.3f} s, decoded {relabel[0][1].decoded:,}  "
        f"-> {scratch_s / relabel_s:.1f}x faster"
    )


if __name__ == "__main__":
    main()
