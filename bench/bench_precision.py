"""Training precision: float32 against mixed_bfloat16 on several datasets and seeds, side by side.

Trains the default model through `cnnlab.training.engine` on each dataset, once per seed and precision,
interleaved (float32, bfloat16, float32, ...) so machine noise hits both, and prints each run's
test accuracy and median seconds per epoch, then per dataset the mean accuracy of each side, the
spread between seeds (the noise) and the speed ratio. This is what decides whether `auto` may pick
bfloat16 on a CPU that has it. Measures and prints; asserts nothing.

    python -m bench.bench_precision [--epochs 6] [--seeds 1 2 3] [--datasets sample gratings spots] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.machine import machine
from cnnlab.data.sample import sample_dir
from cnnlab.model import ModelConfig
from cnnlab.model.precision import choose_precision
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import Settings
from cnnlab.training.engine import TrainConfig, train

SIDES = ("float32", "mixed_bfloat16")
SIZE = 64


def write_gratings(root: Path, per_class: int = 200, seed: int = 0) -> Path:
    """4 classes: sine gratings at 0, 45, 90 or 135 degrees, random frequency, phase, colours and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for k, angle in enumerate((0, 45, 90, 135)):
        folder = root / f"angle_{angle:03d}"
        folder.mkdir(parents=True)
        theta = np.deg2rad(angle)
        for i in range(per_class):
            freq = rng.uniform(0.12, 0.35)
            wave = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
            low, high = rng.integers(0, 100, 3), rng.integers(150, 256, 3)
            pixels = low + (high - low) * ((wave[..., None] + 1) / 2) + rng.normal(0, 25, (SIZE, SIZE, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{k}_{i:04d}.png")
    return root


def write_spots(root: Path, per_class: int = 400, seed: int = 0) -> Path:
    """2 classes (the sigmoid head): clutter of bright bars, and the same with one small bright square."""
    rng = np.random.default_rng(seed)
    for label in ("bars", "bars_and_square"):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (SIZE, SIZE, 3)).astype(np.uint8)
            for _ in range(3):
                row, col = rng.integers(0, SIZE), rng.integers(0, SIZE - 14)
                pixels[row, col : col + 14] = rng.integers(180, 256, 3)
            if label == "bars_and_square":
                row, col = rng.integers(0, SIZE - 8, 2)
                pixels[row : row + 8, col : col + 8] = rng.integers(180, 256, 3)
            Image.fromarray(pixels).save(folder / f"{label}_{i:04d}.png")
    return root


def one_run(
    data_dir: Path, precision: str, seed: int, epochs: int, store: RunStore, cache: Path
) -> tuple[float, float]:
    """Test accuracy and median seconds per epoch (first epoch dropped) of one training."""
    config = TrainConfig(epochs=epochs, patience=0, seed=seed, precision=precision)
    run = train(data_dir, ModelConfig(), config, workspace=Workspace(store, cache))
    seconds = [row.seconds for row in run.history[1:]] or [row.seconds for row in run.history]
    return float(run.record.metrics.test_accuracy or 0.0), statistics.median(seconds)


def main() -> None:
    """Train every dataset, seed and precision, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--datasets", nargs="+", default=["sample", "gratings", "spots"])
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"device: {choose_precision('auto').device}; bfloat16 side: {choose_precision('mixed_bfloat16').reason}")
    print(f"default ModelConfig, {args.epochs} epochs, no early stopping, seeds {args.seeds}")
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        writers = {
            "sample": lambda: sample_dir(args.cache),
            "gratings": lambda: write_gratings(Path(tmp) / "gratings"),
            "spots": lambda: write_spots(Path(tmp) / "spots"),
        }
        store = RunStore(Path(tmp) / "models")
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for name in args.datasets:
            data_dir = writers[name]()
            results[name] = {side: [] for side in SIDES}
            for seed in args.seeds:
                for side in SIDES:
                    accuracy, seconds = one_run(data_dir, side, seed, args.epochs, store, args.cache)
                    results[name][side].append((accuracy, seconds))
                    print(f"{name:<9} seed {seed}  {side:<15} test accuracy {accuracy:.3f}  {seconds:.2f} s/epoch")
    print()
    print(
        "| dataset | float32 test accuracy (per seed) | mixed_bfloat16 test accuracy (per seed) | mean difference | s/epoch float32 | s/epoch bfloat16 | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, sides in results.items():
        acc = {side: [a for a, _ in runs] for side, runs in sides.items()}
        secs = {side: statistics.median(s for _, s in runs) for side, runs in sides.items()}
        diff = statistics.mean(acc["mixed_bfloat16"]) - statistics.mean(acc["float32"])
        print(
            f"| {name} | {' / '.join(f'{a:.3f}' for a in acc['float32'])} | "
            f"{' / '.join(f'{a:.3f}' for a in acc['mixed_bfloat16'])} | {diff:+.3f} | "
            f"{secs['float32']:.2f} | {secs['mixed_bfloat16']:.2f} | {secs['float32'] / secs['mixed_bfloat16']:.2f}x |"
        )


if __name__ == "__main__":
    main()
