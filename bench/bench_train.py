"""Training throughput: `cnnlab.training.engine` against a plain `model.fit` on in-memory arrays.

Same model config, same images (the built-in sample), same split and batch size. Each side trains
`--epochs` epochs, `--repeats` times, interleaved (A B A B ...) so machine noise hits both; the
first epoch of each run (graph tracing) is dropped. Prints the machine, the median seconds per
epoch of each side and the throughput ratio (plain / cnnlab seconds: 1.0 means no overhead).

Both sides train in `--precision` (default auto: what `cnnlab.training.engine` picks here). It also prints
the model's training FLOPs per image and the achieved fraction of the CPU's peak for that
precision, with the assumptions behind the peak (cores x clock x FLOPs per cycle).

    python -m bench.bench_train [--epochs 4] [--repeats 3] [--cache DIR] [--precision auto] [--ghz G] [--fp32-flops-per-cycle N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import machine
from cnnlab import data
from cnnlab.data.sample import sample_dir
from cnnlab.model import ModelConfig, build_model, training_flops
from cnnlab.model.precision import Precision, choose_precision
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import Settings
from cnnlab.training.engine import TrainConfig, train
from cnnlab.training.hooks import TrainingHooks


def cnnlab_epochs(
    data_dir: Path, model_config: ModelConfig, train_config: TrainConfig, store: RunStore, cache: Path
) -> list[float]:
    """Per-epoch wall seconds of a cnnlab training, from one epoch's report to the next.

    So each figure includes everything `train` does per epoch: the pipeline, the progress
    callbacks, and saving the previous epoch's checkpoint and history to the run folder.
    """
    reported: list[float] = []
    train(
        data_dir,
        model_config,
        train_config,
        workspace=Workspace(store, cache),
        hooks=TrainingHooks(on_epoch=lambda _: reported.append(time.perf_counter())),
    )
    return [later - earlier for earlier, later in zip(reported, reported[1:], strict=False)]


def plain_epochs(
    data_dir: Path, model_config: ModelConfig, train_config: TrainConfig, cache: Path, policy: str
) -> list[float]:
    """Per-epoch seconds of `model.fit` on NumPy arrays already in memory."""
    import keras

    report = data.scan(data_dir, cache=cache)
    prepared = data.prepare(
        report, model_config.image_size, model_config.color_mode, model_config.resize_mode, cache=cache
    )
    parts = data.split(report.labels, train_config.validation_split, train_config.test_split, train_config.seed)
    x, y = (prepared.images[parts["train"]].copy(), prepared.labels[parts["train"]])
    val = (prepared.images[parts["validation"]].copy(), prepared.labels[parts["validation"]])
    keras.utils.set_random_seed(train_config.seed)
    model = build_model(model_config, report.num_classes, policy)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(
        x,
        y,
        batch_size=train_config.batch_size,
        epochs=train_config.epochs,
        validation_data=val,
        callbacks=[Timer()],
        verbose=0,
    )
    return times[1:]


def cpu_ghz() -> float:
    """The clock /proc/cpuinfo reports (the current or nominal one; turbo may run higher)."""
    with open("/proc/cpuinfo") as info:
        return next(float(line.split(":")[1]) for line in info if line.startswith("cpu MHz")) / 1000


def print_peak(args: argparse.Namespace, precision: Precision, flops: int, n_train: int, n_val: int, s: float) -> None:
    """The achieved FLOP rate of one epoch (training plus the validation's forward passes) against the peak."""
    achieved = (flops * n_train + flops / 3 * n_val) / s
    print(
        f"training FLOPs per image: {flops / 1e6:.0f} MFLOP (conv and dense multiply-adds x2, x3 for forward+backward)"
    )
    if precision.device.startswith("GPU"):
        print(f"achieved {achieved / 1e9:.0f} GFLOP/s on {precision.device}; no CPU peak applies")
        return
    cores, ghz = os.cpu_count() or 1, args.ghz or cpu_ghz()
    per_cycle = args.fp32_flops_per_cycle * (2 if precision.policy == "mixed_bfloat16" else 1)
    peak = cores * ghz * 1e9 * per_cycle
    print(
        f"peak assumed: {cores} cores x {ghz:.2f} GHz x {per_cycle} FLOPs/cycle = {peak / 1e9:.0f} GFLOP/s "
        f"({args.fp32_flops_per_cycle} float32 FLOPs/cycle/core: two 256-bit FMA pipes running AVX-512 as on "
        "AMD Zen 4, 8 lanes x 2 x 2; Intel cores with two 512-bit FMA units do 64"
        + (
            "; x2 for bfloat16 dot products (VDPBF16PS: two products per float32 lane)"
            if per_cycle > args.fp32_flops_per_cycle
            else ""
        )
        + ")"
    )
    print(f"achieved: {achieved / 1e9:.0f} GFLOP/s in {precision.policy} = {achieved / peak:.0%} of that peak")


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    parser.add_argument("--precision", default="auto", help="auto, float32, mixed_bfloat16 or mixed_float16")
    parser.add_argument("--ghz", type=float, help="clock for the peak (default: /proc/cpuinfo's cpu MHz)")
    parser.add_argument("--fp32-flops-per-cycle", type=int, default=32, help="per core, for the peak (default 32)")
    args = parser.parse_args()
    data_dir = sample_dir(args.cache)
    model_config = ModelConfig()
    train_config = TrainConfig(epochs=args.epochs, patience=0, precision=args.precision)
    precision = choose_precision(args.precision)
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        data.prepare(data.scan(data_dir, cache=args.cache), model_config.image_size, cache=args.cache)  # warm both
        for _ in range(args.repeats):
            plain.extend(plain_epochs(data_dir, model_config, train_config, args.cache, precision.policy))
            ours.extend(cnnlab_epochs(data_dir, model_config, train_config, store, args.cache))
    parts = data.split(data.scan(data_dir, cache=args.cache).labels)
    n_train, n_val = len(parts["train"]), len(parts["validation"])
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    print(f"machine: {machine()}")
    print(f"precision: {precision.policy} ({precision.reason}) on {precision.device}")
    print(f"data: built-in sample, {n_train} training images, batch {train_config.batch_size}, default ModelConfig")
    print(f"epochs measured per side: {len(ours)} (first epoch of each run dropped)")
    print(f"plain model.fit on arrays: median {plain_s:.3f} s/epoch ({n_train / plain_s:.0f} img/s incl. validation)")
    print(
        f"cnnlab.training.engine:              median {ours_s:.3f} s/epoch ({n_train / ours_s:.0f} img/s incl. validation)"
    )
    print(f"throughput ratio cnnlab/plain: {plain_s / ours_s:.3f} (target >= 0.95)")
    print_peak(
        args,
        precision,
        training_flops(model_config, len(data.scan(data_dir, cache=args.cache).class_names)),
        n_train,
        n_val,
        ours_s,
    )


if __name__ == "__main__":
    main()
