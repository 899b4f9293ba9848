"""Explanations: how long each method takes on one image, for the default model and the demo model.

For each model and each method (Grad-CAM, integrated gradients with 32 steps in one batch,
occlusion with every patch in batches of 64, SmoothGrad with 24 noisy copies in one batch): the
first call (traces the gradient functions) and the median of the repeats; then all four together
(what the Predict page computes per image) and the randomisation check of all four. The default
model is `ModelConfig()` built untrained for five classes (weights do not change the time).
Measures and prints; asserts nothing. Target: one image's explanation within about a second.

    python -m bench.bench_explain [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from bench.machine import machine
from cnnlab.analysis.saliency import METHODS, explain, explain_image
from cnnlab.analysis.sanity import randomisation_check
from cnnlab.settings import DEMO_RUN_DIR


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, model, repeats: int) -> None:
    """Print one model's figures."""
    height, width, channels = model.inputs[0].shape[1:]
    image = np.random.default_rng(0).integers(0, 256, (height, width, channels), dtype=np.uint8)
    print(f"\n{name}: {model.count_params():,} weights, input {height}x{width}x{channels}")
    for method in METHODS:
        first = timed(lambda method=method: explain(model, image, method))
        median = statistics.median(timed(lambda method=method: explain(model, image, method)) for _ in range(repeats))
        print(f"  {method:<21} first call {first:.3f} s, median of {repeats} {median:.3f} s")
    together = statistics.median(timed(lambda: explain_image(model, image, "all")) for _ in range(repeats))
    print(f"  all four, one image:  median of {repeats} {together:.3f} s  (target about 1 s)")
    print(f"  randomisation check, all four: {timed(lambda: randomisation_check(model, image, 'all')):.2f} s")


def main() -> None:
    """Measure the default model and the demo model."""
    import keras

    from cnnlab.model import ModelConfig, build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    keras.utils.set_random_seed(0)
    measure("default model (ModelConfig(), 5 classes)", build_model(ModelConfig(), 5), args.repeats)
    demo = keras.saving.load_model(DEMO_RUN_DIR / "model.keras", compile=False)
    measure("demo model (models/demo)", demo, args.repeats)


if __name__ == "__main__":
    main()
