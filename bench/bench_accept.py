"""Accepting an upload of many tiny images: the Data page's check of a zip, before and after.

The zip is the hostile trainer's of `bench_hostile`: 7,000 PNGs of 8x8 pixels (about 2.5 MB).
Each measurement runs in a fresh process against one side's code (`--before REF` exported with
`git archive`, then the working tree) with fresh folders, as the hosted Data page does it:
`archive.open_upload` with the decode budget's scan as its check, then the page's own scan of the
accepted dataset ("upload" is `open_upload` alone: extraction and check, in a child process
since the extraction change); then the first preparation of its images at 32 px (where decoding
happens anyway). With `--busy`, every measurement also runs with a thread spinning in pure Python beside
it, as other visitors' sessions do on a shared server (each file's system calls then wait for
the interpreter lock). Sides alternate; medians of `--repeats`. Measures and prints; asserts
nothing.

    python -m bench.bench_accept [--before main] [--images 7000] [--repeats 3] [--busy]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_hostile import export, png, write_zip
from bench.child import run_child
from bench.machine import machine
from tests.e2e_server import REPO_ROOT

# Runs in the side's own tree: prints one JSON line of timings.
CHILD = """
import functools, json, sys, threading, time
from pathlib import Path
from cnnlab.data import archive
from cnnlab import data

zip_path, work, busy = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"

def spin():
    while True:
        pass

if busy:
    threading.Thread(target=spin, daemon=True).start()
cache = work / "cache"
# As the Data page passes it: picklable, since it may run in the extracting process.
check = functools.partial(data.scan, cache=cache, max_total_pixels=200_000_000)
start = time.perf_counter()
root = archive.open_upload(zip_path.read_bytes(), zip_path.name, work / "uploads", check=check)
upload = time.perf_counter() - start
report = data.scan(root, cache=cache)
accept = time.perf_counter() - start
start = time.perf_counter()
data.prepare(report, (32, 32), cache=cache)
prepare = time.perf_counter() - start
print(json.dumps({"accept": accept, "upload": upload, "prepare": prepare, "images": len(report.files)}))
"""


def measure(tree: Path, zip_path: Path, busy: bool, work: Path) -> dict[str, float]:
    """One acceptance and first preparation in a fresh process running `tree`'s code."""
    work.mkdir()
    return run_child(CHILD, str(zip_path), str(work), "1" if busy else "0", cwd=tree, env={"PYTHONPATH": str(tree)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the commit to compare with (default: main)")
    parser.add_argument("--images", type=int, default=7000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="also measure beside a busy Python thread")
    args = parser.parse_args()
    sha = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=REPO_ROOT, capture_output=True, text=True)
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-accept-") as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        half = args.images // 2
        members = {
            f"{c}/{c}_{i:04d}.png": png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            for c in "ab"
            for i in range(half)
        }
        zip_path = write_zip(work / "tiny.zip", members)
        print(
            f"zip: {len(members)} PNGs of 8x8, {zip_path.stat().st_size / 2**20:.1f} MB; {args.repeats} repeats, medians"
        )
        sides = {
            f"before ({args.before} {sha.stdout.strip()})": export(args.before, work / "before"),
            "after": REPO_ROOT,
        }
        for busy in (False, True) if args.busy else (False,):
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
            for repeat in range(args.repeats):
                for side, tree in sides.items():
                    runs[side].append(measure(tree, zip_path, busy, work / f"{side.split()[0]}-{busy}-{repeat}"))
            report(runs, "beside a busy Python thread" if busy else "idle")


def report(runs: dict[str, list[dict[str, float]]], condition: str) -> None:
    """Medians per side and the after/before ratios."""
    medians = {side: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for side, rows in runs.items()}
    print(f"\n{condition}:")
    print(f"{'':<28} {'accept (s)':>11} {'of it, upload':>14} {'first prepare':>14} {'images':>7}")
    for side, m in medians.items():
        print(f"{side:<28} {m['accept']:>11.2f} {m['upload']:>14.2f} {m['prepare']:>14.2f} {m['images']:>7.0f}")
    before, after = medians.values()
    print(
        f"{'after / before':<28} {after['accept'] / before['accept']:>11.2f} "
        f"{after['upload'] / before['upload']:>14.2f} {after['prepare'] / before['prepare']:>14.2f}"
    )


if __name__ == "__main__":
    main()
