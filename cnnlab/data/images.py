"""One image: open it safely and normalise it the same way for training and prediction."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.common.checks import check_choice

SUPPORTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "MPO"})
COLOR_MODES = ("rgb", "grayscale")
RESIZE_MODES = ("stretch", "crop", "pad")
# About 40 megapixels: far above any photo a CNN here needs, far below what exhausts a small server.
MAX_PIXELS = 40_000_000

ImageSource = bytes | str | Path | BinaryIO | Image.Image


class ImageError(ValueError):
    """An input that is not a usable image; the message says why in one line."""


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name
    return Path(getattr(source, "name", None) or "uploaded image").name


def open_image(
    source: ImageSource, max_pixels: int = MAX_PIXELS, draft_size: int | None = None, name: str | None = None
) -> Image.Image:
    """Open, check and fully decode an image, applying its EXIF orientation.

    Refuses empty input, non-images, unsupported formats, images over `max_pixels` (checked from the
    header, before decoding) and truncated or corrupt data, raising `ImageError`. With `draft_size`,
    a JPEG is decoded at the smallest DCT scale whose sides stay at least that many pixels, which is
    several times faster when the target is much smaller than the photo.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source, max_pixels, "image")
        return ImageOps.exif_transpose(source)
    img = _open(source, max_pixels, name, decode=True, draft_size=draft_size)
    oriented = ImageOps.exif_transpose(img)  # a copy, so the file (kept open for animations) can close
    if oriented is not img:
        img.close()
    return oriented


def header_size(
    source: bytes | str | Path | BinaryIO, max_pixels: int = MAX_PIXELS, name: str | None = None
) -> tuple[int, int]:
    """An image's (width, height) as its header states it, without decoding any pixel.

    Refuses what `open_image` refuses before decoding (empty input, non-images, unsupported
    formats, images over `max_pixels`), raising `ImageError`; truncated or corrupt pixel data is
    only found by decoding (`open_image`). Reading a header costs a fraction of decoding.
    """
    with _open(source, max_pixels, name, decode=False) as img:
        return img.size


def _open(
    source: bytes | str | Path | BinaryIO,
    max_pixels: int,
    name: str | None,
    decode: bool,
    draft_size: int | None = None,
) -> Image.Image:
    """Open and check an image (decoding it with `decode`), turning every failure into an `ImageError`."""
    name = name or _describe(source)
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    if isinstance(fp, (str, Path)) and not Path(fp).is_file():
        raise ImageError(f"'{name}' was not found or is not a file; check the path. Received: file={str(fp)!r}")
    if _is_empty(fp):
        raise ImageError(f"'{name}' is an empty file (0 bytes); re-export or remove it. Received: file={name!r}")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own bomb limit; we apply ours first and want no noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _open_checked(fp, max_pixels, name, decode, draft_size)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"'{name}' is too large to decode safely; resize it. Received: error={exc!s}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else "truncated or corrupt"
        raise ImageError(
            f"'{name}' is {reason} and cannot be read; replace it with a valid JPEG or PNG. Received: file={name!r}"
        ) from None


def _open_checked(fp, max_pixels: int, name: str, decode: bool, draft_size: int | None) -> Image.Image:
    """Open, check format and size from the header, then decode if asked; the file is closed on any failure."""
    img = Image.open(fp)
    try:
        if img.format not in SUPPORTED_FORMATS:
            raise ImageError(
                f"'{name}' is in {img.format} format, which is not supported; convert it to PNG or JPEG. "
                f"Received: format={img.format!r}"
            )
        _check_pixels(img, max_pixels, name)
        if decode:
            if draft_size and img.format == "JPEG":
                img.draft(img.mode, (draft_size, draft_size))
            img.load()
    except BaseException:
        img.close()  # Pillow only closes a file it opened itself after a complete load
        raise
    return img


def _is_empty(fp: str | Path | BinaryIO | io.BytesIO) -> bool:
    if isinstance(fp, (str, Path)):
        return Path(fp).stat().st_size == 0
    position = fp.tell()
    empty = not fp.read(1)
    fp.seek(position)
    return empty


def _check_pixels(img: Image.Image, max_pixels: int, name: str) -> None:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"'{name}' has {width}x{height} pixels, over the {max_pixels:,}-pixel safety cap "
            f"(a possible decompression bomb); resize it before use. Received: size={width}x{height}"
        )


def to_color_mode(img: Image.Image, color_mode: str) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB or grayscale.

    Transparency is composited on white (not dropped to black), CMYK and palettes are converted
    through RGB, and 16/32-bit images are scaled to 0-255 by their range, not clipped.
    """
    check_choice("color_mode", color_mode, COLOR_MODES)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        img = _scale_to_8bit(img)
    elif img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa") or "transparency" in img.info:
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    target = "RGB" if color_mode == "rgb" else "L"
    if img.mode != target:
        img = img.convert("RGB").convert(target) if img.mode not in ("RGB", "L") else img.convert(target)
    return img


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    array = np.asarray(img, dtype=np.float64)
    # 16-bit PNGs use the full 0-65535 range; float/32-bit images are scaled by their own range.
    top = 65535.0 if img.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    if img.mode == "F":
        low, high = float(array.min(initial=0)), float(array.max(initial=1))
        array = (array - low) / max(high - low, 1e-12) * 255.0
    else:
        array = array / top * 255.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def resize(img: Image.Image, image_size: tuple[int, int], resize_mode: str = "stretch") -> Image.Image:
    """Resize to `image_size` (height, width): stretch, centre-crop to the aspect ratio, or pad."""
    check_choice("resize_mode", resize_mode, RESIZE_MODES)
    height, width = image_size
    if resize_mode == "crop":
        return ImageOps.fit(img, (width, height), Image.Resampling.BILINEAR)
    if resize_mode == "pad":
        fill = 255 if img.mode == "L" else (255, 255, 255)
        return ImageOps.pad(img, (width, height), Image.Resampling.BILINEAR, color=fill)
    if img.size == (width, height):
        return img
    return img.resize((width, height), Image.Resampling.BILINEAR)


def normalize(
    img: Image.Image, image_size: tuple[int, int], color_mode: str = "rgb", resize_mode: str = "stretch"
) -> np.ndarray:
    """Turn an opened image into the model's input: uint8 array (height, width, channels)."""
    img = resize(to_color_mode(img, color_mode), image_size, resize_mode)
    array = np.asarray(img, dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


def load_array(
    source: ImageSource,
    image_size: tuple[int, int],
    color_mode: str = "rgb",
    resize_mode: str = "stretch",
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Open and normalise one image from bytes, a path, a file object or a PIL image."""
    img = open_image(source, max_pixels, draft_size=max(image_size), name=name)
    return normalize(img, image_size, color_mode, resize_mode)


def thumbnail(source: ImageSource, max_side: int = 160) -> np.ndarray:
    """A small 8-bit RGB view of an image for display, aspect ratio kept.

    Displays take 8-bit RGB, so every mode goes through the same conversion as training (16-bit
    scaled, transparency on white). Raises `ImageError` for a missing or unreadable file.
    """
    img = to_color_mode(open_image(source, draft_size=max_side), "rgb")
    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
