"""Start the real Streamlit server and a headless Chromium: shared by the browser test and bench.

with StreamlitServer(models_dir, cache_dir) as server:   # healthy on return
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto(server.url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent

# Debian's Chromium, quiet on an offline machine (no background fetches, no QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of a system Chromium (Debian's first), or None when there is none."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_chromium(playwright, executable: str | None = None):
    """A headless Chromium browser from a started `sync_playwright()`."""
    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError(f"No Chromium found; looked for {', '.join(CHROMIUM_CANDIDATES)}.")
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real server in its own process group, healthy once GET `health_path` answers "ok".

    The log goes to a file (`log_path`), so a full pipe never blocks the server; `log()` reads it.
    `stop()` (or leaving the `with` block) kills the whole process group; `start()` may follow again.
    Subclasses say what to run (`command`), where (`cwd`) and with which environment (`environment`).
    """

    name = "server"
    health_path = "/health"

    def __init__(
        self,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
        health_timeout: float = 90.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")[1])
        self.health_timeout = health_timeout
        self.process: subprocess.Popen | None = None
        self.started_at = self.healthy_at = 0.0

    def command(self) -> list[str]:
        """The server's command line."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The server's environment: this process's, plus `env`."""
        return {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}

    @property
    def cwd(self) -> Path:
        """The folder the server runs in."""
        return REPO_ROOT

    @property
    def pid(self) -> int:
        """The server's process id (also its process group id)."""
        if self.process is None:
            raise RuntimeError("The server has not been started.")
        return self.process.pid

    def start(self):
        """Launch the server and wait until its health endpoint answers."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it open; closed in stop()
        self._log_file = log
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_healthy(self.health_timeout)
        except Exception:
            self.stop()
            raise
        self.healthy_at = time.monotonic()
        return self

    def healthy(self) -> bool:
        """Whether the health endpoint answers "ok" now."""
        try:
            with urllib.request.urlopen(f"{self.url}{self.health_path}", timeout=2) as response:
                return response.status == 200 and response.read().decode().strip().lower() == "ok"
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health endpoint until it answers, the server dies, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{self.log()}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} was not healthy after {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        """Everything the server has printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the process group, then kill it if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError):  # anything the server started that outlived it
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()

    def __enter__(self):
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class StreamlitServer(ServerProcess):
    """`streamlit run streamlit_app.py` with its own run store and cache."""

    name = "streamlit"
    health_path = "/_stcore/health"

    def __init__(
        self, models_dir: str | Path, cache_dir: str | Path, *, app_root: str | Path = REPO_ROOT, **options
    ) -> None:
        super().__init__(**options)
        self.models_dir, self.cache_dir = Path(models_dir), Path(cache_dir)
        self.app_root = Path(app_root)  # another checkout of the app (a benchmark's "before")

    @property
    def cwd(self) -> Path:
        """The app's checkout: this one unless another is given."""
        return self.app_root

    def environment(self) -> dict[str, str]:
        """The app's environment: its own models and cache folders, TensorFlow's start-up log quiet."""
        return {
            **super().environment(),
            "CNNLAB_MODELS_DIR": str(self.models_dir),
            "CNNLAB_CACHE_DIR": str(self.cache_dir),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **self.extra_env,
        }

    def command(self) -> list[str]:
        """`streamlit run` on 127.0.0.1, headless, without the file watcher."""
        return [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ]
