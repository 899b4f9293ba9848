"""Serving a model over HTTP with MLflow's own scoring server (`mlflow models serve`), in the foreground.

A run is first saved as a pyfunc model folder in the cache (`served/<run id>-<model stamp>`, made
once per saved model); a registered model (`models:/NAME@ALIAS`) is served as it is, MLflow
downloading it from the registry. The server runs with `--env-manager local`: in this Python,
which must have CNN Lab installed, creating no environment and reaching no network. Its API is
MLflow's: POST `/invocations` with `{"dataframe_split": {"columns": ["image"], "data": [[<base64>]]}}`
(or `dataframe_records`), GET `/health`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cnnlab.common.files import build_folder
from cnnlab.runs.store import Run

SERVED_FOLDER = "served"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001  # MLflow's tracking server takes 5000 by default
GRACE_S = 5  # for the server to stop on the Ctrl-C it had too
STOP_WAIT_S = 10


def served_model(run: Run, cache: Path) -> Path:
    """The run's pyfunc model folder in the cache, saved the first time (again after the run's model changes)."""
    from cnnlab.deploy.mlflow_model import save_pyfunc

    if not run.model_path.is_file():
        raise ValueError(f"Run '{run.name}' has no saved model yet; choose a completed run. Received: run={run.id!r}")
    stat = run.model_path.stat()
    folder = cache / SERVED_FOLDER / f"{run.id}-{stat.st_size}-{stat.st_mtime_ns}"
    if (folder / "MLmodel").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    return build_folder(folder, lambda into: save_pyfunc(run, into), keep_existing=True)


def serve_command(model: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The `mlflow models serve` command line for a model folder or a `models:/` URI."""
    if not 0 < port < 65536:
        raise ValueError(f"A port is a number from 1 to 65535. Received: port={port}")
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        str(model),
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
    ]


def serve_environment(tracking_uri: str | None) -> dict[str, str]:
    """The server's environment: this one, the registry it loads `models:/` URIs from, TensorFlow's start-up log quiet."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def serve(
    model: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tracking_uri: str | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> int:
    """Run MLflow's scoring server for `model` until it exits or Ctrl-C; returns its exit status (0 after Ctrl-C).

    Ctrl-C reaches the server too (one process group) and MLflow's server shuts down by itself;
    one that lingers is signalled (`_stop`). No traceback is printed.
    """
    from cnnlab.deploy.registry import require_mlflow

    require_mlflow()
    process = subprocess.Popen(serve_command(model, host, port), env=serve_environment(tracking_uri))
    if on_start is not None:
        on_start(process)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return _stop(process)


def _stop(process: subprocess.Popen) -> int:
    """Stop the server after Ctrl-C. A terminal's Ctrl-C reaches the server too (one process group) and it
    shuts down by itself; otherwise it is sent SIGINT, then SIGTERM, then SIGKILL, each given time to work."""
    for sig, wait in (
        (None, GRACE_S),
        (signal.SIGINT, STOP_WAIT_S),
        (signal.SIGTERM, STOP_WAIT_S),
        (signal.SIGKILL, 5),
    ):
        if sig is not None and process.poll() is None:
            process.send_signal(sig)
        try:
            process.wait(timeout=wait)
            return 0
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # Ctrl-C again: on to the next, firmer signal
            continue
    return 0
