"""Inspect: how long looking inside a model takes, for the default model and the demo model.

For each model: loading it from its `.keras` file; the feature maps of one image for every
layer (one forward pass; the first call builds the sub-model, then the median of the repeats);
the top-activating pass per layer (every channel's mean over the built-in sample's training
split, 1,680 images, in one batched pass), then the same channel from the run's cache; and
gradient ascent per filter (40 steps) on the first and last conv layers. The default model is
`ModelConfig()` built untrained for the sample's five classes: its weights do not change the
time. Measures and prints; asserts nothing. Targets: feature maps under 1 s after load,
gradient ascent within a few seconds per filter.

    python -m bench.bench_inspect [--repeats 5] [--layers conv_1 relu_2 conv_3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.machine import machine
from cnnlab import data
from cnnlab.analysis import inspect
from cnnlab.analysis.evaluate import open_split
from cnnlab.analysis.top_activating import channel_means, top_images
from cnnlab.data.images import load_array
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR, Settings


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def default_run(folder: Path):
    """A copy of the demo run whose model is `ModelConfig()` built afresh (untrained)."""
    from cnnlab.model import ModelConfig, build_model

    run = demo_copy(folder)
    run.save_model(build_model(ModelConfig(), len(run.class_names)))
    return run


def demo_copy(folder: Path):
    """The demo run copied into `folder`, so its channel-means cache starts empty and is thrown away."""
    shutil.copytree(DEMO_RUN_DIR, folder / "run")
    return RunStore(folder).get("run")


def measure(name: str, run, layers: list[str], repeats: int, cache: Path) -> None:
    """Print one model's figures."""
    import keras

    load_s = timed(lambda: keras.saving.load_model(run.model_path, compile=False))
    model = keras.saving.load_model(run.model_path, compile=False)
    with open_split(run, cache=cache) as (prepared, parts):
        train = parts["train"]
        config = run.model_config()
        path = run.dataset_root(cache) / prepared.report.files[int(train[0])]
        image = load_array(path, config.image_size, config.color_mode, config.resize_mode)
        first_maps = timed(lambda: inspect.feature_maps(model, image))
        maps = statistics.median(timed(lambda: inspect.feature_maps(model, image)) for _ in range(repeats))
        print(f"\n{name}: {model.count_params():,} weights, {len(inspect.list_layers(model))} inspectable layers")
        print(f"  load model:                                {load_s:.3f} s")
        print(f"  feature maps, all layers, first call:      {first_maps:.3f} s")
        print(f"  feature maps, all layers, median of {repeats}:     {maps:.3f} s  (target < 1 s)")
        batches = data.make_dataset(prepared, train, 64)
        for layer in layers:
            passed = timed(lambda layer=layer: channel_means(model, [layer], batches))
            cold = timed(lambda layer=layer: top_images(run, model, layer, 0, cache=cache))
            warm = timed(lambda layer=layer: top_images(run, model, layer, 1, cache=cache))
            print(
                f"  top images {layer:<7}: pass over {len(train)} images {passed:.2f} s, "
                f"first channel {cold:.2f} s, next channel from the cache {warm:.3f} s"
            )
        for layer in (layers[0], layers[-1]):
            times = [timed(lambda layer=layer, c=c: inspect.gradient_ascent(model, layer, c)) for c in range(repeats)]
            print(
                f"  gradient ascent {layer:<7} (40 steps): median {statistics.median(times):.2f} s, "
                f"max {max(times):.2f} s over channels 0-{repeats - 1}"
            )


def main() -> None:
    """Measure both models and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", nargs="+", default=["conv_1", "relu_2", "conv_3"])
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        default = default_run(Path(tmp) / "default")
        measure("default model (ModelConfig(), untrained)", default, args.layers, args.repeats, args.cache)
        measure("demo model (models/demo)", demo_copy(Path(tmp) / "demo"), args.layers, args.repeats, args.cache)


if __name__ == "__main__":
    main()
