"""Serving a model over HTTP with MLflow's own scoring server (`mlflow models serve`), in the foreground.

A run is first saved as a pyfunc model folder in the cache (`served/<run id>-<model stamp>`, made
once per saved model); a registered model (`models:/NAME@ALIAS`) is served as it is, MLflow
downloading it from the registry. The server runs with `--env-manager local`: in this Python,
which must have CNN Lab installed, creating no environment and reaching no network. Its API is
MLflow's: POST `/invocations` with `{"dataframe_split": {"columns": ["image"], "data": [[<base64>]]}}`
(or `dataframe_records`), GET `/health`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnnlab.common.files import build_folder
from cnnlab.runs.store import Run

SERVED_FOLDER = "served"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001  # MLflow's tracking server takes 5000 by default
STOP_WAIT_S = 10


def served_model(run: Run, cache: Path) -> Path:
    """The run's pyfunc model folder in the cache, saved the first time (again after the run's model or
    temperature changes)."""
    from cnnlab.deploy.mlflow_model import save_pyfunc

    if not run.model_path.is_file():
        raise ValueError(f"Run '{run.name}' has no saved model yet; choose a completed run. Received: run={run.id!r}")
    stat = run.model_path.stat()
    # The temperature is part of the served model, and an evaluation may fit it after training.
    folder = cache / SERVED_FOLDER / f"{run.id}-{stat.st_size}-{stat.st_mtime_ns}-t{run.temperature}"
    if (folder / "MLmodel").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    return build_folder(folder, lambda into: save_pyfunc(run, into, cache=cache), keep_existing=True)


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
    model: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, tracking_uri: str | None = None
) -> int:
    """Run MLflow's scoring server for `model` until it exits, Ctrl-C or SIGTERM; returns its exit status
    (0 when stopped that way), with no traceback.

    The server runs in a process group of its own, so that stopping it stops all of it (MLflow's
    command and the uvicorn server it starts) and nothing is left listening: Ctrl-C or SIGTERM is
    passed on as SIGINT (a graceful shutdown), then SIGTERM, then SIGKILL, each given time to work.
    """
    from cnnlab.deploy.registry import require_mlflow

    require_mlflow()
    process = subprocess.Popen(
        serve_command(model, host, port), env=serve_environment(tracking_uri), start_new_session=True
    )
    previous = _sigterm_as_interrupt()
    try:
        return process.wait()
    except KeyboardInterrupt:
        _stop(process)
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _stop(process)  # whatever the server left running (it exited, or this process is failing)


def _sigterm_as_interrupt():
    """SIGTERM (a supervisor stopping `cnnlab serve`) handled as Ctrl-C; the handler it replaces, or None
    where no handler can be set (not the main thread)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group: SIGINT, then SIGTERM, then SIGKILL, each given time to work."""
    for sig, wait in ((signal.SIGINT, STOP_WAIT_S), (signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, 5)):
        if not _group_alive(process.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(process.pid):
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):  # Ctrl-C again: wait on
                process.wait(timeout=0.1)
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (a zombie leader is reaped by `wait`)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
