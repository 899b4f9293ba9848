"""A one-line description of the machine, printed with every benchmark."""

from __future__ import annotations

import contextlib
import os
import platform


def machine() -> str:
    """One line describing where the numbers were taken."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow {tf.__version__}"
