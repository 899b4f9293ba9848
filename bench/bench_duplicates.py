"""Duplicates and leakage: `find_duplicates` on a large dataset, the first time and from the cache.

The data are photo-like pictures (default 20,000; 64-128 pixels a side, half JPEG and half PNG, in
4 class folders) generated in parallel into a temporary folder; one picture in 50 gets a planted
copy, in turn exact, re-encoded (JPEG at quality 70), resized (0.7x), cropped (5% off two edges)
and recoloured (brighter, less contrast, hue turned), every fourth copy filed under another class
(a conflict). Version 1's split puts some copies across splits (leaks). Each call runs in a fresh
process (`bench.child`), so its peak resident memory is its own: first with an empty cache, then
again with the hashes cached. Prints the machine, both times, the peak RSS, the recall of the
planted pairs and how many groups join distinct pictures (should be none). Then the same two calls
on the built-in sample (`cnnlab.data.sample`, 480 pictures per class unless told otherwise): 2,400
distinct pictures, many alike in layout, so every group found there is a false one.

    python -m bench.bench_duplicates [--images 20000] [--sample-per-class 480]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.child import ROOT, run_child
from bench.machine import machine
from cnnlab.data.sample import DEFAULT_NUM_PER_CLASS, write_sample

sys.path.insert(0, str(ROOT / "tests"))  # the picture generator the tests plant duplicates with
from helpers import NEAR_KINDS, altered_copy, image_bytes, scene_image

CLASSES = ("a", "b", "c", "d")
COPY_EVERY = 50
KINDS = ("exact", *NEAR_KINDS)

# Runs in a fresh process: one call of find_duplicates, timed, with the process's peak memory.
CHILD = """
import json, resource, sys, time
from pathlib import Path
from cnnlab.data.duplicates import find_duplicates
from cnnlab.data.versions import open_dataset
dataset = open_dataset(Path(sys.argv[1]), Path(sys.argv[2]), cache=Path(sys.argv[3]))
start = time.perf_counter()
report = find_duplicates(dataset, cache=Path(sys.argv[3]))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "decoded": report.decoded, "report": report.to_dict()}))
"""


def write_pictures(root: Path, start: int, stop: int) -> list[tuple[str, str, str]]:
    """Pictures `start`..`stop` (each with its own seed) and their planted copies; returns the
    planted pairs as (original, copy, kind)."""
    planted = []
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        label = CLASSES[i % len(CLASSES)]
        array = scene_image(rng, tuple(int(side) for side in rng.integers(64, 129, 2)))
        fmt, suffix = ("JPEG", ".jpg") if i % 2 else ("PNG", ".png")
        original = f"{label}/{i:06d}{suffix}"
        data = image_bytes(array, fmt, quality=90) if fmt == "JPEG" else image_bytes(array)
        (root / original).write_bytes(data)
        if i % COPY_EVERY:
            continue
        number = i // COPY_EVERY
        kind = KINDS[number % len(KINDS)]
        copied, copy_suffix = (data, suffix) if kind == "exact" else altered_copy(array, kind)
        copy_label = CLASSES[(i + 1) % len(CLASSES)] if number % 4 == 3 else label
        copy = f"{copy_label}/{i:06d}-{kind}{copy_suffix}"
        (root / copy).write_bytes(copied)
        planted.append((original, copy, kind))
    return planted


def write_dataset(root: Path, images: int) -> list[tuple[str, str, str]]:
    """About `images` pictures, one in COPY_EVERY with a planted copy, written on every core."""
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
    originals = images * COPY_EVERY // (COPY_EVERY + 1)
    step = max(1, originals // (8 * (os.cpu_count() or 1)))
    with ProcessPoolExecutor() as pool:
        starts = range(0, originals, step)
        parts = pool.map(write_pictures, [root] * len(starts), starts, [min(s + step, originals) for s in starts])
        return [pair for part in parts for pair in part]


def scores(report: dict, planted: list[tuple[str, str, str]]) -> tuple[dict[str, tuple[int, int]], int]:
    """Per kind, (planted pairs found in one group, planted pairs); and how many groups join pictures
    that are not copies of one another."""
    group_of = {path: i for i, group in enumerate(report["groups"]) for path in group["paths"]}
    found: dict[str, tuple[int, int]] = {}
    for original, copy, kind in planted:
        hit = original in group_of and group_of.get(original) == group_of.get(copy)
        done, total = found.get(kind, (0, 0))
        found[kind] = (done + hit, total + 1)
    picture = {copy: original for original, copy, _ in planted}
    impure = sum(len({picture.get(p, p) for p in group["paths"]}) > 1 for group in report["groups"])
    return found, impure


def main() -> None:
    """Generate the pictures, run both calls and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--sample-per-class", type=int, default=DEFAULT_NUM_PER_CLASS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, datasets, cache = Path(tmp) / "pictures", Path(tmp) / "datasets", Path(tmp) / "cache"
        planted = write_dataset(root, args.images)
        first = run_child(CHILD, str(root), str(datasets), str(cache))
        again = run_child(CHILD, str(root), str(datasets), str(cache))
        cache_mb = sum(p.stat().st_size for p in (cache / "image-hashes").rglob("*") if p.is_file()) / 1e6
        sample = write_sample(Path(tmp) / "sample", args.sample_per_class)
        sample_first = run_child(CHILD, str(sample), str(datasets), str(Path(tmp) / "sample-cache"))
        sample_again = run_child(CHILD, str(sample), str(datasets), str(Path(tmp) / "sample-cache"))
    report = first["report"]
    found, impure = scores(report, planted)
    hits, total = sum(h for h, _ in found.values()), sum(t for _, t in found.values())
    print(f"machine: {machine()}")
    print(
        f"data: {report['num_images']:,} pictures of 64-128 px (half JPEG, half PNG) in {len(CLASSES)} classes, "
        f"{total} planted copies ({', '.join(KINDS)}; every fourth under another class)"
    )
    print(f"find_duplicates, first time (decoded {first['decoded']:,}): {first['seconds']:.2f} s")
    print(f"find_duplicates, again (decoded {again['decoded']:,}, hashes cached): {again['seconds']:.2f} s")
    print(f"peak RSS of the process: first {first['peak_rss'] / 1e6:.0f} MB, again {again['peak_rss'] / 1e6:.0f} MB")
    print(f"cache: {cache_mb:.1f} MB")
    print(f"recall of planted pairs: {hits / total:.3f} ({hits}/{total})")
    print("  by kind: " + ", ".join(f"{kind} {h}/{t}" for kind, (h, t) in found.items()))
    print(
        f"groups: {len(report['groups'])}, {report['num_leaks']} leaking across splits, "
        f"{report['num_conflicts']} with two labels; groups joining distinct pictures: {impure}"
    )
    print(f"the second call found the same groups: {'yes' if again['report'] == report else 'NO'}")
    found = sample_first["report"]
    kinds = [group["kind"] for group in found["groups"]]
    print(
        f"built-in sample ({found['num_images']:,} pictures): {kinds.count('near')} near groups "
        f"({sum(len(g['paths']) for g in found['groups'] if g['kind'] == 'near')} pictures), "
        f"{kinds.count('exact')} exact; first time {sample_first['seconds']:.2f} s, "
        f"again {sample_again['seconds']:.2f} s, peak RSS {sample_again['peak_rss'] / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main()
