"""The built-in sample as an exercise: the default model against a deliberately weak one.

Trains both through `cnnlab.training.engine` (the same call the app and CLI make) on the built-in sample,
once per seed, interleaved so machine noise hits both, and prints each run's test accuracy and
wall-clock seconds, then the medians. The claim it checks: the default model passes 95% test
accuracy in about a minute of CPU, and the weak one (one small conv block, three epochs) scores
clearly lower. Measures and prints; asserts nothing.

    python -m bench.bench_sample [--seeds 1337 1 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import machine
from cnnlab import data
from cnnlab.data.sample import sample_dir
from cnnlab.model import ModelConfig
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import Settings
from cnnlab.training.engine import TrainConfig, train

CONTENDERS = {
    "default": (ModelConfig(), TrainConfig()),
    "weak": (ModelConfig(conv_blocks=1, filters=8, dense_units=16), TrainConfig(epochs=3)),
}


def main() -> None:
    """Train every contender once per seed and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    data_dir = sample_dir(args.cache)
    report = data.scan(data_dir, cache=args.cache)
    for model_config, _ in CONTENDERS.values():  # decode once up front, so no side pays for the cache
        data.prepare(report, model_config.image_size, cache=args.cache)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in CONTENDERS}
    print(f"machine: {machine()}")
    print(f"data: built-in sample, {len(report.files)} images in {report.num_classes} classes")
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        for seed in args.seeds:
            for name, (model_config, train_config) in CONTENDERS.items():
                started = time.perf_counter()
                seeded = TrainConfig(**{**train_config.to_dict(), "seed": seed})
                run = train(data_dir, model_config, seeded, workspace=Workspace(store, args.cache))
                seconds = time.perf_counter() - started
                accuracy = run.record.metrics.test_accuracy
                results[name].append((accuracy, seconds, len(run.history)))
                print(
                    f"seed {seed:<5} {name:<8} test accuracy {accuracy:.3f}  {seconds:5.1f} s  {len(run.history)} epochs"
                )
    for name, rows in results.items():
        accuracies, seconds = [r[0] for r in rows], [r[1] for r in rows]
        print(
            f"{name:<8} median test accuracy {statistics.median(accuracies):.3f} "
            f"(min {min(accuracies):.3f}), median {statistics.median(seconds):.1f} s per training"
        )


if __name__ == "__main__":
    main()
