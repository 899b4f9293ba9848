"""The built-in sample dataset: coloured shapes on cluttered backgrounds, generated from a seed.

Each image shows one filled shape (the class) with a random colour, size, position and rotation,
over a gradient background with lines, dots, small blobs and pixel noise. Every
image has its own random stream seeded by (seed, class, index), so the same seed always gives
byte-identical PNG files and the first images do not depend on how many are written.
"""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cnnlab.common.checks import check_range
from cnnlab.common.files import build_folder

SAMPLE_CLASSES: tuple[str, ...] = ("circle", "cross", "square", "star", "triangle")
SAMPLE_VERSION = 1
DEFAULT_NUM_PER_CLASS = 480
DEFAULT_SEED = 0
# Shapes are drawn this many times larger and shrunk, which anti-aliases their edges.
SUPERSAMPLE = 2
# Circumradius range as a fraction of the image side.
MIN_RADIUS, MAX_RADIUS = 0.22, 0.42
# Every channel of a shape is brighter than every channel of the background: a small CNN learns
# edges of one polarity many times faster than edges whose polarity flips per colour channel,
# which is what keeps ten epochs enough. Hue still varies freely on both sides.
SHAPE_CHANNELS = (150, 255)
BACKGROUND_CHANNELS = (0, 110)
CLUTTER_CHANNELS = (0, 140)
MAX_NOISE_SIGMA = 10.0
DRAWING_THREADS = 2
_SAMPLE_FOLDER = f"sample-v{SAMPLE_VERSION}-seed{DEFAULT_SEED}"
# One generation at a time in this process: a page arriving while the server's warm-up (or another
# session) generates the sample waits for that copy instead of drawing its own beside it.
_GENERATING = threading.Lock()


def write_sample(
    out_dir: Path,
    num_per_class: int = DEFAULT_NUM_PER_CLASS,
    seed: int = DEFAULT_SEED,
    image_size: int = 64,
) -> Path:
    """Write the sample as `out_dir/<class>/<class>_NNNN.png` and return `out_dir`.

    `out_dir` must not exist or be empty, so a stale, larger sample is never mixed in.
    """
    check_range("num_per_class", num_per_class, 1, 10_000, int)
    check_range("seed", seed, 0, 2**32 - 1, int)
    check_range("image_size", image_size, 16, 512, int)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(
            "The sample dataset needs a new or empty folder, and this one already has files; "
            f"choose another folder or empty it. Received: out_dir={str(out_dir)!r}"
        )
    for name in SAMPLE_CLASSES:
        (out_dir / name).mkdir(parents=True, exist_ok=True)

    def write(image: tuple[int, int]) -> None:
        class_index, i = image
        name = SAMPLE_CLASSES[class_index]
        rng = np.random.default_rng([seed, class_index, i])
        draw_sample_image(name, rng, image_size).save(out_dir / name / f"{name}_{i:04d}.png", optimize=False)

    # Pillow's PNG encoder and the file system work without the interpreter lock, so two threads
    # write the sample about 1.25x faster; each image has its own random stream, so order is free.
    images = [(c, i) for c in range(len(SAMPLE_CLASSES)) for i in range(num_per_class)]
    with ThreadPoolExecutor(DRAWING_THREADS, thread_name_prefix="cnnlab-sample") as pool:
        for _ in pool.map(write, images, chunksize=16):  # raises the first failure
            pass
    return out_dir


def is_sample_dir(path: str | Path) -> bool:
    """Whether `path` is the default sample folder made by `sample_dir` (in any cache folder)."""
    return Path(path).name == _SAMPLE_FOLDER


def sample_dir(cache: Path) -> Path:
    """The default sample (seed 0) in `<cache>/sample-v1-seed0`, generated on first use.

    Generation writes into a temporary folder beside the target and renames it into place, so a
    crash never leaves a half-written sample and two processes racing both end up with one copy.
    Within one process a second caller waits for the first one's copy rather than drawing its own.
    """
    target = Path(cache) / _SAMPLE_FOLDER
    if target.is_dir():
        return target
    with _GENERATING:
        if target.is_dir():  # made while this caller waited
            return target
        return build_folder(
            target, lambda folder: write_sample(folder, DEFAULT_NUM_PER_CLASS, DEFAULT_SEED), keep_existing=True
        )


def draw_sample_image(name: str, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """Draw one RGB image of shape class `name` using random numbers from `rng`."""
    if name not in SAMPLE_CLASSES:
        raise ValueError(f"Unknown shape; expected one of {', '.join(SAMPLE_CLASSES)}. Received: name={name!r}")
    side = image_size * SUPERSAMPLE
    canvas = Image.fromarray(_background(rng, side))
    draw = ImageDraw.Draw(canvas)
    _clutter(draw, rng, side)
    shape_color = _color(rng, SHAPE_CHANNELS)
    radius = rng.uniform(MIN_RADIUS, MAX_RADIUS) * side
    center = rng.uniform(radius + 0.03 * side, side - radius - 0.03 * side, size=2)
    angle = rng.uniform(0.0, 2 * math.pi)
    # Version 1 drew a number here for a filled-or-outline choice that was always "filled"; drawing
    # it still keeps every sample-v1 image (and the demo model's dataset) byte for byte the same.
    rng.random()
    _draw_shape(draw, name, center, radius, angle, shape_color)
    # Now and then a line across the shape, so no clean outline gives the class away.
    _lines(draw, rng, side, int(rng.random() < 0.35))
    small = canvas.resize((image_size, image_size), Image.Resampling.BOX)
    return Image.fromarray(_add_noise(np.asarray(small), rng))


def _color(rng: np.random.Generator, channels: tuple[int, int] = (0, 255)) -> np.ndarray:
    low, high = channels
    return rng.integers(low, high + 1, size=3).astype(np.float64)


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    start = _color(rng, BACKGROUND_CHANNELS)
    end = _color(rng, BACKGROUND_CHANNELS) if rng.random() < 0.7 else start
    angle = rng.uniform(0.0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    ys, xs = _unit_grid(side)
    # Position along the gradient direction, scaled to 0..1 across the image. Computed in place and
    # a channel at a time (six times faster than whole-array temporaries), with the same float64
    # operations in the same order, so every pixel and every sample-v1 file stays byte for byte.
    t = xs * c
    t += ys * s
    t -= min(0.0, c)
    t -= min(0.0, s)
    t /= abs(c) + abs(s)
    rest = 1 - t
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    channel, part = np.empty_like(t), np.empty_like(t)
    for k in range(3):
        np.multiply(rest, start[k], out=channel)
        channel += np.multiply(t, end[k], out=part)
        pixels[..., k] = np.clip(channel, 0, 255, out=channel)  # truncated to uint8 as astype does
    return pixels


@functools.lru_cache(maxsize=4)
def _unit_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates over `side`, as fractions of it; shared, so read-only."""
    ys, xs = np.mgrid[0:side, 0:side] / side
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, side: int) -> None:
    _lines(draw, rng, side, int(rng.integers(0, 5)))
    for _ in range(int(rng.integers(0, 40))):
        x, y = rng.uniform(0, side, size=2)
        r = rng.uniform(0.5, 1.5) * SUPERSAMPLE
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_rgb(_color(rng)))
    # Blobs well under the smallest shape, so they distract without passing for a circle.
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(0, side, size=2)
        rx, ry = rng.uniform(0.02, 0.06, size=2) * side
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=_rgb(_color(rng)))


def _lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, side: int, count: int) -> None:
    for _ in range(count):
        x0, y0, x1, y1 = rng.uniform(0, side, size=4)
        width = int(rng.integers(1, 3)) * SUPERSAMPLE
        draw.line((x0, y0, x1, y1), fill=_rgb(_color(rng, CLUTTER_CHANNELS)), width=width)


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    name: str,
    center: np.ndarray,
    radius: float,
    angle: float,
    color: np.ndarray,
) -> None:
    if name == "circle":
        cx, cy = center
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_rgb(color))
        return
    points = [(center[0] + x, center[1] + y) for x, y in _rotate(_outline_points(name, radius), angle)]
    draw.polygon(points, fill=_rgb(color))


def _outline_points(name: str, radius: float) -> list[tuple[float, float]]:
    if name == "square":
        return _regular_polygon(4, radius)
    if name == "triangle":
        return _regular_polygon(3, radius)
    if name == "star":
        outer = _regular_polygon(5, radius)
        inner = _regular_polygon(5, radius * 0.45, offset=math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    arm = radius * 0.36  # cross: a plus sign whose arms reach the circumradius
    reach = radius / math.sqrt(1 + (arm / radius) ** 2)
    quarter = [(arm, -arm), (reach, -arm), (reach, arm), (arm, arm)]
    points: list[tuple[float, float]] = []
    for k in range(4):
        points.extend(_rotate(quarter, k * math.pi / 2))
    return points


def _regular_polygon(sides: int, radius: float, offset: float = 0.0) -> list[tuple[float, float]]:
    step = 2 * math.pi / sides
    return [(radius * math.cos(offset + k * step), radius * math.sin(offset + k * step)) for k in range(sides)]


def _rotate(points: list[tuple[float, float]], angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in points]


def _add_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.0, MAX_NOISE_SIGMA)
    noisy = pixels.astype(np.float32) + rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _rgb(color: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in color)
    return r, g, b
