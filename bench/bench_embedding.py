"""The embedding map's features against one validation pass over the same images, at the default model.

A run of the default `ModelConfig` (untrained weights: what is measured is compute) on generated
images (default 20,000 random 16x16 PNGs in 4 classes, prepared at the model's 64x64 RGB before
anything is timed). Each measurement runs in a fresh process, so no memory peak carries over:
- features: `run_embedding` with no stored embedding (dataset check, model load, one batched pass
  giving features and probabilities, the `.npz` written into the run folder);
- validation pass: `run.load_model()`, `open_split` and `model.predict` (`evaluate.probabilities`)
  over the same images, as an evaluation does;
- cached: `run_embedding` again, its stored embedding fresh.
The sides are interleaved, medians of `--repeats` reported, each with the process's peak RSS and
its growth over the RSS before the call (TensorFlow imported). Measures and prints; asserts nothing.

    python -m bench.bench_embedding [--images 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.child import run_child
from bench.machine import machine

CLASSES = ("a", "b", "c", "d")
PARTS = ("train", "validation", "test")

SETUP = """
import sys
from pathlib import Path
from cnnlab.model import ModelConfig, build_model
from cnnlab.runs.record import DatasetInfo, RunRecord
from cnnlab.runs.store import RunStore
from cnnlab.analysis.evaluate import open_split
root, models, cache = (Path(a) for a in sys.argv[1:4])
classes = sorted(p.name for p in root.iterdir())
files = sorted(f"{c}/{f.name}" for c in classes for f in (root / c).iterdir())
parts = ("train", "validation", "test")
split = {part: [f for i, f in enumerate(files) if (0 if i % 20 < 14 else 1 if i % 20 < 17 else 2) == k]
         for k, part in enumerate(parts)}
config = ModelConfig()
record = RunRecord(name="bench", status="completed", model_config=config.to_dict(), class_names=tuple(classes),
                   dataset=DatasetInfo(path=str(root)))
run = RunStore(models).create(record, split, run_id="bench")
run.save_model(build_model(config, len(classes)))
with open_split(run, cache=cache) as (prepared, parts):  # decodes every image once, before any timing
    print('{"images": %d, "decoded": %d}' % (sum(len(p) for p in parts.values()), prepared.decoded))
"""

CHILD = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
import keras  # imported before the RSS baseline, as in the app, where TensorFlow is loaded already
from bench.child import resident_bytes
from cnnlab.analysis.embedding import EMBEDDING_FILE, run_embedding
from cnnlab.analysis.evaluate import open_split, probabilities
from cnnlab.data import make_dataset
from cnnlab.runs.store import RunStore
side, models, cache = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
run = RunStore(models).get("bench")
if side == "features":
    (run.path / EMBEDDING_FILE).unlink(missing_ok=True)
before = resident_bytes()
started = time.perf_counter()
if side == "validation":
    model = run.load_model()
    with open_split(run, cache=cache) as (prepared, parts):
        indices = np.sort(np.concatenate(list(parts.values())))
        count = len(probabilities(model, make_dataset(prepared, indices, 64)))
else:
    count = len(run_embedding(run, cache=cache).paths)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "images": count, "peak": peak, "growth": peak - before}))
"""

SIDES = {
    "features": "features (run_embedding, nothing stored)",
    "validation": "one validation pass (load, open_split, predict)",
    "cached": "features again (run_embedding, stored)",
}


def write_pngs(root: Path, count: int) -> None:
    """`count` random 16x16 PNGs spread over the class folders."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(out, "PNG")
        (root / CLASSES[i % len(CLASSES)] / f"{i:06d}.png").write_bytes(out.getvalue())


def mb(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:6.0f} MB"


def main() -> None:
    """Time both sides in fresh processes and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, models, cache = Path(tmp) / "pngs", Path(tmp) / "models", Path(tmp) / "cache"
        write_pngs(root, args.images)
        setup = run_child(SETUP, str(root), str(models), str(cache))
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for _ in range(args.repeats):
            for side in ("features", "validation"):
                results[side].append(run_child(CHILD, side, str(models), str(cache)))
        for _ in range(args.repeats):  # after the last features run, whose stored embedding they read
            results["cached"].append(run_child(CHILD, "cached", str(models), str(cache)))

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    print(f"machine: {machine()}")
    print(
        f"data: {setup['images']:,} random 16x16 PNGs in {len(CLASSES)} classes, prepared at 64x64 RGB beforehand "
        f"({setup['decoded']:,} decoded); default ModelConfig, untrained; batch 64; each call in a fresh process, "
        f"medians of {args.repeats}"
    )
    for side, label in SIDES.items():
        print(
            f"{label:<50} {median(side, 'seconds'):7.2f} s  {setup['images'] / median(side, 'seconds'):7.0f} img/s  "
            f"peak RSS {mb(median(side, 'peak'))} ({median(side, 'growth') / 2**20:+.0f} MB over the RSS before the call)"
        )
    ratio = median("features", "seconds") / median("validation", "seconds")
    print(f"features / validation pass: {ratio:.2f}x (target: about 1x)")


if __name__ == "__main__":
    main()
