"""Channel grids: many small 2-D maps laid out in one array, and written as PNG files with Pillow.

Used by the Plotly figures (one heatmap for up to 128 channels instead of 128 subplots) and by
the `inspect` command, which needs no browser or Plotly image export.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.common.files import atomic_write

# Each tile of a PNG grid is enlarged (nearest neighbour) to at least this many pixels a side.
MIN_TILE_PX = 32


def grid_columns(count: int, tile_height: int = 1, tile_width: int = 1) -> int:
    """How many columns make a grid of `count` tiles roughly square."""
    return max(1, math.ceil(math.sqrt(count * tile_height / max(tile_width, 1))))


def tile(tiles: np.ndarray, columns: int | None = None, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """Lay out `tiles` (N, h, w) or (N, h, w, colours) row by row, `gap` pixels of `fill` between them.

    Returns float32 (rows * (h + gap) - gap, columns * (w + gap) - gap[, colours]); tile i is at
    row i // columns, column i % columns.
    """
    stack = np.asarray(tiles, dtype=np.float32)
    if stack.ndim not in (3, 4) or not len(stack):
        raise ValueError(
            f"tiles must be a non-empty (N, height, width) or (N, height, width, colours) array. "
            f"Received: tiles.shape={stack.shape}"
        )
    count, height, width = stack.shape[:3]
    columns = columns or grid_columns(count, height, width)
    rows = math.ceil(count / columns)
    out = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, *stack.shape[3:]), fill, np.float32)
    for i, image in enumerate(stack):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        out[top : top + height, left : left + width] = image
    return out


def channels_first(values: np.ndarray) -> np.ndarray:
    """(h, w, channels) feature maps as (channels, h, w) tiles."""
    return np.moveaxis(np.asarray(values), -1, 0)


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scale `values` from [low, high] to 0-255 (NaN, the gaps, becomes white)."""
    span = high - low if high > low else 1.0
    scaled = np.clip((np.nan_to_num(values, nan=high) - low) / span, 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def view_to_uint8(view: np.ndarray) -> np.ndarray:
    """The image as the model sees it (after its rescaling) as displayable 0-255 pixels.

    [0, 1] (Rescaling 1/255) and [-1, 1] (a backbone's rescaling) map back to 0-255 as they
    came; any other range, a normalised input say, is stretched from its own min to max.
    """
    values = np.asarray(view, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif low >= -1.0 and high <= 1.0:
        low, high = -1.0, 1.0
    return to_uint8(values, low, high)


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor, so small maps keep sharp pixels."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def filter_patches(weights: np.ndarray) -> np.ndarray:
    """Each filter of a kernel (h, w, in, out) as a patch (out, h, w, in) in [0, 1] for display.

    Zero is mid-grey; each filter is scaled by its own largest absolute weight, so its pattern
    shows whatever its size. A first layer's RGB filters show as small colour patches.
    """
    patches = np.moveaxis(np.asarray(weights, dtype=np.float32), -1, 0)
    peak = np.abs(patches).max(axis=(1, 2, 3), keepdims=True)
    return 0.5 + 0.5 * np.divide(patches, peak, out=np.zeros_like(patches), where=peak > 0)


def feature_grid_png(values: np.ndarray) -> np.ndarray:
    """A layer's feature maps (h, w, channels) as one grey uint8 grid, white = the layer's highest value."""
    maps = channels_first(values)
    factor = max(1, MIN_TILE_PX // max(maps.shape[1:]))
    grid = tile(np.stack([enlarge(m, factor) for m in maps]), gap=2)
    return to_uint8(grid, float(np.min(values)), float(np.max(values)))


def filter_grid_png(weights: np.ndarray) -> np.ndarray:
    """A conv kernel (h, w, in, out) as one uint8 grid.

    With 1 or 3 input channels (a first layer), each filter is one grey or RGB patch as
    `filter_patches` shows it; deeper, one row per filter and one column per input channel, in
    grey on the layer's own symmetric scale (mid-grey = 0).
    """
    kernel = np.asarray(weights, dtype=np.float32)
    if kernel.shape[2] in (1, 3):
        factor = max(1, MIN_TILE_PX // max(kernel.shape[:2]))
        grid = tile(np.stack([enlarge(p, factor) for p in filter_patches(kernel)]), gap=2, fill=1.0)
        return to_uint8(grid, 0.0, 1.0)
    factor = max(1, MIN_TILE_PX // 2 // max(kernel.shape[:2]))  # rows of hundreds of small kernels
    peak = float(np.abs(kernel).max()) or 1.0
    patches = np.moveaxis(kernel, (3, 2), (0, 1)).reshape(-1, *kernel.shape[:2])
    grid = tile(np.stack([enlarge(p, factor) for p in patches]), columns=kernel.shape[2], gap=2, fill=peak)
    return to_uint8(grid, -peak, peak)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W), (H, W, 1) or (H, W, 3) array as a PNG file, atomically."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    with atomic_write(path, "wb") as fh:
        Image.fromarray(array).save(fh, "PNG")
    return path
