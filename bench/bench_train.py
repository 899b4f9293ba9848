"""Training throughput: `cnnlab.training.engine` against plain `model.fit` on in-memory arrays, like with like.

Same model config, same images (the built-in sample), same split and batch size. Four sides:
- plain: `model.fit` on arrays, no augmentation;
- plain+aug: the same, with the config's augmentation layers (Keras's Random* layers) inside the model;
- cnnlab: `cnnlab.train` with the config's augmentation (stateless, in the tf.data pipeline);
- cnnlab-noaug: `cnnlab.train` with augmentation off.
Each trains `--epochs` epochs, `--repeats` times, interleaved (A B C D A B C D ...) so machine noise
hits all; the first epoch of each run (graph tracing) is dropped. Prints the machine, its load, the
median seconds per epoch of each side, the throughput ratios of cnnlab against each plain side
(plain / cnnlab seconds: 1.0 means no overhead), and what augmentation costs each (with / without
seconds; target <= 1.15 for cnnlab).

All sides train in `--precision` (default auto: what `cnnlab.training.engine` picks here). It also
prints the model's training FLOPs per image and the achieved fraction of the CPU's peak for that
precision, with the assumptions behind the peak (`bench.cpu_peak`: cores x clock x FLOPs per cycle,
from the CPU's feature flags).

    python -m bench.bench_train [--epochs 4] [--repeats 3] [--per-class N] [--cache DIR] [--precision auto] [--ghz G]
        [--fp32-flops-per-cycle N] [--bf16-flops-per-cycle N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.cpu_peak import cpu_ghz, cpu_peak, cpuinfo
from bench.machine import machine
from bench.subset import sample_slice
from cnnlab import data
from cnnlab.model import ModelConfig, build_model, training_flops
from cnnlab.model.augment import PRESETS, augmentation_model
from cnnlab.model.build import compile_model
from cnnlab.model.precision import Precision, choose_precision
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import Settings
from cnnlab.training.engine import TrainConfig, train
from cnnlab.training.hooks import TrainingHooks

SIDES = {
    "plain": "model.fit on arrays, no augmentation",
    "plain+aug": "model.fit on arrays, the augmentation layers inside the model",
    "cnnlab": "cnnlab.train, default augmentation (stateless, in the tf.data pipeline)",
    "cnnlab-noaug": "cnnlab.train, augmentation off",
}
# The feature flags the peak depends on, printed with it.
PEAK_FLAGS = {"amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2", "fma"}


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
    data_dir: Path, model_config: ModelConfig, train_config: TrainConfig, cache: Path, policy: str, augment: bool
) -> list[float]:
    """Per-epoch seconds of `model.fit` on NumPy arrays already in memory; with `augment`, the
    config's augmentation layers sit inside the model, as a plain Keras script would put them."""
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
    layers = augmentation_model(model_config) if augment else None
    if layers is not None:
        inputs = keras.Input(shape=model.inputs[0].shape[1:])
        model = keras.Model(inputs, model(layers(inputs)))
        compile_model(model, model_config, model_config.learning_rate, policy)
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


def print_peak(args: argparse.Namespace, precision: Precision, flops: int, n_train: int, n_val: int, s: float) -> None:
    """The achieved FLOP rate of one epoch (training plus the validation's forward passes) against the peak."""
    achieved = (flops * n_train + flops / 3 * n_val) / s
    print(
        f"training FLOPs per image: {flops / 1e6:.0f} MFLOP (conv and dense multiply-adds x2, x3 for forward+backward)"
    )
    if precision.device.startswith("GPU"):
        print(f"achieved {achieved / 1e9:.0f} GFLOP/s on {precision.device}; no CPU peak applies")
        return
    flags = sorted(set(cpuinfo().get("flags", "").split()) & PEAK_FLAGS)
    print(f"CPU: {cpuinfo().get('vendor_id', '?')} family {cpuinfo().get('cpu family', '?')}, flags {' '.join(flags)}")
    peak = cpu_peak(
        precision.policy,
        ghz=args.ghz or cpu_ghz(),
        fp32_per_cycle=args.fp32_flops_per_cycle,
        bf16_per_cycle=args.bf16_flops_per_cycle,
    )
    print(f"peak assumed: {peak.describe()}")
    print(f"achieved: {achieved / 1e9:.0f} GFLOP/s in {precision.policy} = {achieved / peak.flops:.0%} of that peak")


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    parser.add_argument(
        "--per-class", type=int, help="images per class of the sample (default: all 480; the tests use fewer)"
    )
    parser.add_argument("--precision", default="auto", help="auto, float32, mixed_bfloat16 or mixed_float16")
    parser.add_argument("--ghz", type=float, help="clock for the peak (default: /proc/cpuinfo's cpu MHz)")
    parser.add_argument("--fp32-flops-per-cycle", type=int, help="per core, for the peak (default: from the CPU flags)")
    parser.add_argument("--bf16-flops-per-cycle", type=int, help="per core, for the peak (default: from the CPU flags)")
    args = parser.parse_args()
    data_dir = sample_slice(args.cache, args.per_class)
    model_config = ModelConfig()
    no_aug = replace(model_config, **PRESETS["none"].values)
    train_config = TrainConfig(epochs=args.epochs, patience=0, precision=args.precision)
    precision = choose_precision(args.precision)
    sides: dict[str, list[float]] = {name: [] for name in SIDES}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        data.prepare(data.scan(data_dir, cache=args.cache), model_config.image_size, cache=args.cache)  # warm all
        for _ in range(args.repeats):
            for augment, name in ((False, "plain"), (True, "plain+aug")):
                sides[name] += plain_epochs(data_dir, model_config, train_config, args.cache, precision.policy, augment)
            sides["cnnlab"] += cnnlab_epochs(data_dir, model_config, train_config, store, args.cache)
            sides["cnnlab-noaug"] += cnnlab_epochs(data_dir, no_aug, train_config, store, args.cache)
            loads.append(os.getloadavg()[0])
    parts = data.split(data.scan(data_dir, cache=args.cache).labels)
    n_train, n_val = len(parts["train"]), len(parts["validation"])
    s = {name: statistics.median(times) for name, times in sides.items()}
    print(f"machine: {machine()}")
    print(f"load average (1 min) before and after each round: {' '.join(f'{x:.1f}' for x in loads)}")
    print(f"precision: {precision.policy} ({precision.reason}) on {precision.device}")
    print(f"data: built-in sample, {n_train} training images, batch {train_config.batch_size}, default ModelConfig")
    print(f"epochs measured per side: {len(sides['cnnlab'])} (first epoch of each run dropped)")
    for name, what in SIDES.items():
        print(f"{name:>13}: median {s[name]:.3f} s/epoch ({n_train / s[name]:.0f} img/s incl. validation)  {what}")
    print(
        f"throughput ratio cnnlab/plain: {s['plain+aug'] / s['cnnlab']:.3f} "
        "(against plain+aug, the same augmentation: like with like; target >= 0.95)"
    )
    print(f"throughput ratio cnnlab/plain without augmentation: {s['plain'] / s['cnnlab']:.3f}")
    print(f"throughput ratio cnnlab-noaug/plain (both without augmentation): {s['plain'] / s['cnnlab-noaug']:.3f}")
    print(
        f"augmentation cost, with/without s/epoch: cnnlab {s['cnnlab'] / s['cnnlab-noaug']:.3f} (target <= 1.15), "
        f"plain with layers in the model {s['plain+aug'] / s['plain']:.3f}"
    )
    print_peak(
        args,
        precision,
        training_flops(model_config, len(data.scan(data_dir, cache=args.cache).class_names)),
        n_train,
        n_val,
        s["cnnlab"],
    )


if __name__ == "__main__":
    main()
