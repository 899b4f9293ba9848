"""Prediction speed: `cnnlab.deploy.prediction.predict` and Grad-CAM against the bare Keras calls, side by side.

With the demo model loaded once, on built-in sample images (64x64 PNG files):
- one image through `predict` (PNG decode and resize included) against the model's bare
  `predict_on_batch` on the same pixels, and against `model.predict` on them (what `predict` used
  to call), interleaved, medians (target: `predict` within 3x of `predict_on_batch`);
- Grad-CAM for one image: the first call (which traces the gradient function) and the median of
  the following calls on other images (target: a few tens of milliseconds);
- 1,000 images: `predict` on the PNG bytes against bare `model.predict` on the decoded arrays,
  in images per second.
Measures and prints; asserts nothing.

    python -m bench.bench_predict [--repeats 30] [--images 1000] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.machine import machine
from cnnlab.analysis.evaluate import probabilities
from cnnlab.analysis.explain import grad_cam
from cnnlab.data.images import load_array
from cnnlab.data.sample import sample_dir
from cnnlab.deploy.prediction import predict
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR, Settings


def seconds(call: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.2f} ms"


def main() -> None:
    """Run the three comparisons and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    run = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get(DEMO_RUN_DIR.name)
    model, config, names = run.load_model(), run.model_config(), run.class_names
    files = sorted(sample_dir(args.cache).rglob("*.png"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, max(args.images, args.repeats)).astype(int)]
    sources = [f.read_bytes() for f in files]
    arrays = np.stack([load_array(f, config.image_size, config.color_mode, config.resize_mode) for f in files])
    pixels = arrays.astype(np.float32)

    def ours(i: int) -> object:
        return predict(model, names, config, [sources[i]])

    def bare(i: int) -> object:
        return model.predict_on_batch(pixels[i : i + 1])

    def old(i: int) -> object:
        return probabilities(model, arrays[i : i + 1])

    sides: dict[str, tuple[Callable[[int], object], list[float]]] = {
        "cnnlab predict (decode + resize + model)": (ours, []),
        "bare model.predict_on_batch (pixels only)": (bare, []),
        "model.predict (the previous path, pixels only)": (old, []),
    }
    for call, _ in sides.values():  # first calls trace the model's functions
        call(0), call(1)
    for i in range(args.repeats):
        for call, times in sides.values():
            times.append(seconds(lambda call=call, i=i: call(i)))
    first_cam = seconds(lambda: grad_cam(model, arrays[0]))
    cams = [seconds(lambda i=i: grad_cam(model, arrays[i])) for i in range(1, args.repeats + 1)]
    n = args.images
    batch_ours = seconds(lambda: predict(model, names, config, sources[:n]))
    batch_bare = seconds(lambda: model.predict(pixels[:n], verbose=0))

    print(f"machine: {machine()}")
    print(
        f"model: the demo model ({config.image_size[0]}x{config.image_size[1]} RGB, default ModelConfig), loaded once"
    )
    print(f"one image, {args.repeats} interleaved repeats, medians:")
    for label, (_, times) in sides.items():
        print(f"  {label:<48} {ms(times)}")
    ratio = statistics.median(sides["cnnlab predict (decode + resize + model)"][1]) / statistics.median(
        sides["bare model.predict_on_batch (pixels only)"][1]
    )
    print(
        f"  cnnlab predict / bare predict_on_batch: {ratio:.2f}x (target <= 3x: {'met' if ratio <= 3 else 'NOT met'})"
    )
    print(
        f"Grad-CAM, one image: first call (traces) {first_cam * 1000:.0f} ms, then median {ms(cams)} over {len(cams)} images"
    )
    print(f"{n} images: cnnlab predict on PNG bytes {n / batch_ours:6.0f} img/s ({batch_ours:.2f} s, decode included)")
    print(f"{n} images: bare model.predict on arrays {n / batch_bare:6.0f} img/s ({batch_bare:.2f} s)")
    print(f"  ratio cnnlab/bare throughput: {batch_bare / batch_ours:.2f}")


if __name__ == "__main__":
    main()
