"""The built-in sample, or a smaller slice of it for quick runs of the benchmarks (the tests' runs).

A slice is a folder of hard links to the first images of each class, made once per cache folder,
so it costs no copies and its images are the sample's own bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.common.files import build_folder
from cnnlab.data.sample import DEFAULT_NUM_PER_CLASS, sample_dir


def sample_slice(cache: Path, per_class: int | None) -> Path:
    """The built-in sample in `cache`; with `per_class`, the first `per_class` images of each of its classes."""
    if per_class is not None and per_class < 2:
        raise ValueError(
            "A slice of the sample needs at least 2 images per class; "
            f"pass --per-class 2 or more, or leave it out for all. Received: per_class={per_class}"
        )
    full = sample_dir(cache)
    if per_class is None or per_class >= DEFAULT_NUM_PER_CLASS:
        return full
    return build_folder(
        Path(cache) / f"bench-sample-{per_class}", lambda out: _link(full, out, per_class), keep_existing=True
    )


def _link(full: Path, out: Path, per_class: int) -> None:
    for folder in sorted(p for p in full.iterdir() if p.is_dir()):
        (out / folder.name).mkdir()
        for image in sorted(folder.iterdir())[:per_class]:
            os.link(image, out / folder.name / image.name)
