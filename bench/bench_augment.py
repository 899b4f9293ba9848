"""Default augmentation on data it was never tuned on: new default, old default, classic recipe.

Three sides, trained through `cnnlab.training.engine` for each dataset and seed, interleaved so machine
noise hits all of them:

- new: today's `ModelConfig()` defaults (label-safe augmentation);
- old: the defaults before issue 13 (random horizontal flip and rotation up to 0.1 of a turn);
- classic: the classic two-block recipe without augmentation (`conv_blocks=2`, no augmentation).

Datasets: three generated here, small (32x32, 4 classes x 120 images) so the bench runs in
minutes on two cores (the stripes' 6 classes have 80 each), and the built-in sample at its usual 64x64 settings:

- arrows: an arrow pointing left, right, up or down; a horizontal flip turns left into right;
- photos: photo-like scenes (textured, lit, noisy) of a ball, a leaf, a box or a ring at any
  position and angle; flips and rotation keep every class;
- stripes: gratings at 0, 30, 60, 90, 120 or 150 degrees; a flip swaps 30 and 150 (60 and 120),
  a 36-degree rotation turns one class into its neighbour.

With `--light`, the sides are instead the default model with no augmentation and with each light,
label-safe change alone (shift 0.05, zoom 0.1, contrast 0.1, rotation 0.02 of a turn) and all
together: what decides whether one of them belongs in the default.

Prints each run's test accuracy, then per dataset and side the median over seeds (min, max).
Measures and prints; asserts nothing.

    python -m bench.bench_augment [--seeds 1 2 3] [--datasets arrows photos stripes sample] [--light] [--cache DIR]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.machine import machine
from cnnlab import data
from cnnlab.data.sample import sample_dir
from cnnlab.model import ModelConfig
from cnnlab.model.augment import with_preset
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import Settings
from cnnlab.training.engine import TrainConfig, train

SIDE = 32
PER_CLASS = 120
OLD_DEFAULT = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.0, "translation": 0.0, "contrast": 0.0}


# `--light`: each light, label-safe change alone and all together, against none, on the default model.
LIGHT = {
    "none": {},
    "shift": {"translation": 0.05},
    "zoom": {"zoom": 0.1},
    "contrast": {"contrast": 0.1},
    "rotate7": {"rotation": 0.02},
    "all": {"translation": 0.05, "zoom": 0.1, "contrast": 0.1},
}


def sides(image_size: tuple[int, int], light: bool = False) -> dict[str, ModelConfig]:
    """The model configurations compared, at the dataset's image size."""
    if light:
        base = with_preset(ModelConfig(image_size=image_size), "none")
        return {name: replace(base, **changes) for name, changes in LIGHT.items()}
    return {
        "new": ModelConfig(image_size=image_size),
        "old": ModelConfig(image_size=image_size, **OLD_DEFAULT),
        "classic": with_preset(ModelConfig(image_size=image_size, conv_blocks=2), "none"),
    }


def _canvas(rng: np.random.Generator, side: int) -> Image.Image:
    """A lit, blurred-noise background: low-frequency texture like a photo's out-of-focus scene."""
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    ys, xs = np.mgrid[0:side, 0:side] / side
    angle = rng.uniform(0, 2 * math.pi)
    light = 0.6 + 0.4 * (np.cos(angle) * xs + np.sin(angle) * ys)
    return Image.fromarray(np.clip(texture * 0.6 * light[..., None] + 20, 0, 255).astype(np.uint8))


def _finish(img: Image.Image, rng: np.random.Generator, sigma: float = 12.0) -> Image.Image:
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, sigma, size=(img.height, img.width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _bright(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(150, 256, size=3))
    return r, g, b


def draw_arrow(name: str, rng: np.random.Generator, side: int = SIDE) -> Image.Image:
    """An arrow pointing `name` (left, right, up, down) at a random place, length and colour."""
    img = _canvas(rng, side)
    draw = ImageDraw.Draw(img)
    length = rng.uniform(0.45, 0.7) * side
    cx, cy = rng.uniform(0.35, 0.65, size=2) * side
    direction = {"right": 0.0, "down": 90.0, "left": 180.0, "up": 270.0}[name] + rng.uniform(-10, 10)
    c, s = math.cos(math.radians(direction)), math.sin(math.radians(direction))
    tip = (cx + c * length / 2, cy + s * length / 2)
    tail = (cx - c * length / 2, cy - s * length / 2)
    color = _bright(rng)
    draw.line([tail, tip], fill=color, width=max(2, side // 12))
    head = length * 0.4
    for turn in (150, -150):
        a = math.radians(direction + turn)
        draw.line(
            [tip, (tip[0] + math.cos(a) * head, tip[1] + math.sin(a) * head)], fill=color, width=max(2, side // 12)
        )
    return _finish(img, rng)


def draw_photo(name: str, rng: np.random.Generator, side: int = SIDE) -> Image.Image:
    """A photo-like scene: a shaded object (ball, leaf, box, ring) at any place and angle, blurred a little."""
    big = side * 4
    img = _canvas(rng, big)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.18, 0.3) * big
    cx, cy = rng.uniform(r, big - r, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    color = _bright(rng)
    if name == "ball":
        for k in range(8, 0, -1):  # shading: brighter towards a highlight
            shade = tuple(min(255, int(v * (0.55 + 0.45 * (8 - k) / 8))) for v in color)
            rk, off = r * k / 8, r * (8 - k) / 16
            draw.ellipse((cx + off - rk, cy - off - rk, cx + off + rk, cy - off + rk), fill=shade)
    elif name == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=color, width=int(r * 0.3))
    else:
        half_w, half_h = (r, r * 0.4) if name == "leaf" else (r * 0.8, r * 0.8)
        corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
        if name == "leaf":
            corners = [(-half_w, 0), (0, -half_h), (half_w, 0), (0, half_h)]
        c, s = math.cos(angle), math.sin(angle)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners], fill=color)
    small = img.filter(ImageFilter.GaussianBlur(2)).resize((side, side), Image.Resampling.BOX)
    return _finish(small, rng, sigma=8.0)


def draw_stripes(name: str, rng: np.random.Generator, side: int = SIDE) -> Image.Image:
    """A grating at the angle in its class name (deg0 ... deg150), random period, phase and colour."""
    angle = math.radians(float(name.removeprefix("deg")) + rng.uniform(-6, 6))
    period = rng.uniform(5, 9)
    ys, xs = np.mgrid[0:side, 0:side]
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period + rng.uniform(0, 7))
    low, high = np.asarray(_bright(rng)) * 0.3, np.asarray(_bright(rng))
    pixels = low + (high - low) * wave[..., None]
    return _finish(Image.fromarray(pixels.astype(np.uint8)), rng, sigma=25.0)


GENERATED: dict[str, tuple[tuple[str, ...], Callable[[str, np.random.Generator], Image.Image]]] = {
    "arrows": (("down", "left", "right", "up"), draw_arrow),
    "photos": (("ball", "box", "leaf", "ring"), draw_photo),
    "stripes": (("deg0", "deg120", "deg150", "deg30", "deg60", "deg90"), draw_stripes),
}


def write_generated(name: str, root: Path, per_class: int = PER_CLASS) -> Path:
    """Write generated dataset `name` as class folders under `root/name` and return that folder."""
    classes, draw = GENERATED[name]
    per_class = per_class * 4 // len(classes)  # the same number of images in every dataset
    for class_index, class_name in enumerate(classes):
        folder = root / name / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(class_name, np.random.default_rng([class_index, i])).save(folder / f"{class_name}_{i:03d}.png")
    return root / name


def main() -> None:
    """Train every side on every dataset once per seed and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--datasets", nargs="+", default=[*GENERATED, "sample"], choices=[*GENERATED, "sample"])
    parser.add_argument("--light", action="store_true", help="compare each light change alone instead")
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"new default augmentation: { {k: v for k, v in ModelConfig().to_dict().items() if k in OLD_DEFAULT} }")
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        for dataset in args.datasets:
            data_dir = sample_dir(args.cache) if dataset == "sample" else write_generated(dataset, Path(tmp))
            size = (64, 64) if dataset == "sample" else (SIDE, SIDE)
            report = data.scan(data_dir, cache=args.cache)
            data.prepare(report, size, cache=args.cache)  # decode once up front, so no side pays for the cache
            print(f"data: {dataset}, {len(report.files)} images in {report.num_classes} classes at {size[0]} px")
            for seed in args.seeds:
                for side, model_config in sides(size, args.light).items():
                    started = time.perf_counter()
                    run = train(data_dir, model_config, TrainConfig(seed=seed), workspace=Workspace(store, args.cache))
                    accuracy = run.record.metrics.test_accuracy
                    results.setdefault((dataset, side), []).append(accuracy)
                    print(
                        f"{dataset:<8} seed {seed}  {side:<8} test accuracy {accuracy:.3f}  "
                        f"{time.perf_counter() - started:5.1f} s  {len(run.history)} epochs",
                        flush=True,
                    )
    names = list(sides((SIDE, SIDE), args.light))
    print("\nmedian test accuracy over seeds (min-max)")
    print("| dataset | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for dataset in args.datasets:
        cells = []
        for side in names:
            values = results[(dataset, side)]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"| {dataset} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
