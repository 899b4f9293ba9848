"""Training throughput: `cnnlab.train` against a plain `model.fit` on in-memory arrays.

Same model config, same images (the built-in sample), same split and batch size. Each side trains
`--epochs` epochs, `--repeats` times, interleaved (A B A B ...) so machine noise hits both; the
first epoch of each run (graph tracing) is dropped. Prints the machine, the median seconds per
epoch of each side and the throughput ratio (plain / cnnlab seconds: 1.0 means no overhead).

    python -m bench.bench_train [--epochs 4] [--repeats 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import machine
from cnnlab import data
from cnnlab.model import ModelConfig, build_model
from cnnlab.runs import RunStore
from cnnlab.sample import sample_dir
from cnnlab.settings import Settings
from cnnlab.train import TrainConfig, train


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
        store=store,
        cache=cache,
        on_epoch=lambda _: reported.append(time.perf_counter()),
    )
    return [later - earlier for earlier, later in zip(reported, reported[1:], strict=False)]


def plain_epochs(data_dir: Path, model_config: ModelConfig, train_config: TrainConfig, cache: Path) -> list[float]:
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
    model = build_model(model_config, report.num_classes)
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


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    data_dir = sample_dir(args.cache)
    model_config = ModelConfig()
    train_config = TrainConfig(epochs=args.epochs, patience=0)
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp, include_demo=False)
        data.prepare(data.scan(data_dir, cache=args.cache), model_config.image_size, cache=args.cache)  # warm both
        for _ in range(args.repeats):
            plain.extend(plain_epochs(data_dir, model_config, train_config, args.cache))
            ours.extend(cnnlab_epochs(data_dir, model_config, train_config, store, args.cache))
    n_train = len(data.split(data.scan(data_dir, cache=args.cache).labels)["train"])
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    print(f"machine: {machine()}")
    print(f"data: built-in sample, {n_train} training images, batch {train_config.batch_size}, default ModelConfig")
    print(f"epochs measured per side: {len(ours)} (first epoch of each run dropped)")
    print(f"plain model.fit on arrays: median {plain_s:.3f} s/epoch ({n_train / plain_s:.0f} img/s incl. validation)")
    print(f"cnnlab.train:              median {ours_s:.3f} s/epoch ({n_train / ours_s:.0f} img/s incl. validation)")
    print(f"throughput ratio cnnlab/plain: {plain_s / ours_s:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
