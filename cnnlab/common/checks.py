"""Argument checks shared by the configs, each raising a one-line ValueError ending `Received: ...`,
and the one-line form of any error for such messages."""

from __future__ import annotations

from typing import Any


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise the house-style ValueError when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"Unknown {name}; expected one of {', '.join(choices)}. Received: {name}={value!r}")


def check_range(name: str, value: Any, low: float, high: float, kind: type) -> None:
    """Raise the house-style ValueError unless `value` is a `kind` (int or float) in [low, high]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok or not low <= value <= high:
        raise ValueError(f"{name} must be a {kind.__name__} from {low} to {high}. Received: {name}={value!r}")


def check_image_size(value: Any, max_side: int = 512) -> tuple[int, int]:
    """Validate `image_size` as (height, width) (an int means square) and return it as a tuple."""
    if isinstance(value, int):
        value = (value, value)
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        height = width = 0
    if not (8 <= height <= max_side and 8 <= width <= max_side):
        raise ValueError(
            f"image_size must be (height, width) with sides from 8 to {max_side} pixels, e.g. (64, 64). "
            f"Received: image_size={value!r}"
        )
    return height, width


def one_line(exc: BaseException) -> str:
    """An error's message on one line (its type's name when it has none), to quote inside another message."""
    return " ".join(str(exc).split()) or type(exc).__name__


def short_repr(value: Any, limit: int = 80) -> str:
    """`repr(value)` on one line, cut in the middle to `limit` characters, to quote a bad value in a message."""
    return shorten(" ".join(repr(value).split()), limit)


def shorten(text: str, limit: int = 300) -> str:
    """`text` cut in the middle to at most `limit` characters, keeping both ends (a file name's
    folder and its extension are what a reader needs)."""
    if len(text) <= limit:
        return text
    head = (limit - 3) // 2
    return f"{text[:head]}...{text[len(text) - (limit - 3 - head) :]}"


MB = 2**20


def megabytes(num_bytes: float) -> str:
    """A size for a message, in the MB (2**20 bytes) that the limits are set in: "12.3 MB" (small sizes in bytes)."""
    return f"{num_bytes / MB:,.1f} MB" if num_bytes >= MB / 10 else f"{int(num_bytes):,} bytes"
