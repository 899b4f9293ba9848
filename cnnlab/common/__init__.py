"""Plumbing every other package uses: argument checks with one-line errors, atomic file writes,
and background threads whose result or error is collected later."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.common.background import submit, wait
    from cnnlab.common.checks import (
        MB,
        check_choice,
        check_image_size,
        check_range,
        megabytes,
        one_line,
        short_repr,
        shorten,
    )
    from cnnlab.common.files import atomic_path, atomic_write, build_folder, temporary_name, user_path, write_json

__all__ = [
    "MB",
    "atomic_path",
    "atomic_write",
    "build_folder",
    "check_choice",
    "check_image_size",
    "check_range",
    "megabytes",
    "one_line",
    "short_repr",
    "shorten",
    "submit",
    "temporary_name",
    "user_path",
    "wait",
    "write_json",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "submit": "background",
        "wait": "background",
        "MB": "checks",
        "check_choice": "checks",
        "check_image_size": "checks",
        "check_range": "checks",
        "megabytes": "checks",
        "one_line": "checks",
        "short_repr": "checks",
        "shorten": "checks",
        "atomic_path": "files",
        "atomic_write": "files",
        "build_folder": "files",
        "temporary_name": "files",
        "user_path": "files",
        "write_json": "files",
    },
)
