"""Plumbing every other package uses: argument checks with one-line errors, atomic file writes,
and background threads whose result or error is collected later."""

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
