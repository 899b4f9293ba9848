"""A measurement in a fresh process, so that no import, cache or memory peak carries over, and
the resident memory the measurements read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def run_child(code: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> Any:
    """Run `code` with `python -c` in `cwd` and return the JSON of the last line it printed.

    TensorFlow's own logging is silenced (it writes to stderr, which is kept for the error
    raised when the child fails).
    """
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def resident_bytes(pid: int | str = "self") -> int:
    """A process's resident memory now (RSS), in bytes, from /proc (Linux)."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE
