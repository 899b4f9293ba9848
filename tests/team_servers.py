"""The team's servers, real and on 127.0.0.1: PostgreSQL (for shared studies) and an MLflow tracking server.

Session fixtures, registered in conftest.py. Without the software a test that needs it is skipped
with a loud reason, unless CNNLAB_REQUIRE_POSTGRES=1 / CNNLAB_REQUIRE_MLFLOW=1 (as in CI), which
makes it a failure. `MlflowServer` is also used by the team benchmark.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from e2e_server import ServerProcess, free_port


class MlflowServer(ServerProcess):
    """`mlflow server` with a SQLite backend store and an artifacts folder, both in `folder`.

    Stopping and starting it again keeps its data (same port, same files): a server that was down.
    """

    name = "mlflow"
    health_path = "/health"

    def __init__(self, folder: str | Path, **options) -> None:
        options.setdefault("health_timeout", 300.0)  # first start creates the tables: slow on a busy machine
        Path(folder).mkdir(parents=True, exist_ok=True)
        options.setdefault("log_path", Path(folder) / "server.log")
        super().__init__(**options)
        self.folder = Path(folder)
        self.artifacts = self.folder / "artifacts"

    @property
    def cwd(self) -> Path:
        """Its own folder, so nothing it writes lands in the repository."""
        return self.folder

    def environment(self) -> dict[str, str]:
        """No background job runner: CNN Lab uses none of it, and it starts a dozen processes."""
        return {**super().environment(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def command(self) -> list[str]:
        """The README's team server, on 127.0.0.1 with one worker."""
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]


def unavailable(what: str, reason: str, require: str, install: str) -> None:
    """Skip loudly, or fail when CI says the server must be there."""
    message = f"{what} NOT RUN: {reason}. {install}"
    if os.environ.get(require) == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server for the whole session; tests use their own experiment names."""
    if importlib.util.find_spec("mlflow") is None or importlib.util.find_spec("mlflow.server") is None:
        unavailable(
            "Team tracking test",
            "the mlflow package (with its server) is missing",
            "CNNLAB_REQUIRE_MLFLOW",
            "Install it with `pip install -r requirements-dev.txt`.",
        )
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (the reason says why)."""


class PostgresServer:
    """A throwaway PostgreSQL server from Debian's `postgresql` package, on a free port of 127.0.0.1,
    with its data and socket in a temporary folder and an empty database `sweeps` (`url`)."""

    def __init__(self, max_connections: int = 100) -> None:
        self.max_connections = max_connections
        self.base = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://cnnlab@127.0.0.1:{self.port}/sweeps"
        self.bindir = _postgres_bin()
        self._as_server_user: list[str] = []

    def start(self) -> PostgresServer:
        """initdb, start, and create the database; PostgresUnavailable when the software is missing."""
        if self.bindir is None:
            raise PostgresUnavailable("no server binaries under /usr/lib/postgresql/*/bin")
        try:
            import psycopg2
        except ImportError:
            raise PostgresUnavailable("the psycopg2 driver is missing (pip install -r requirements-dev.txt)") from None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no 'postgres' OS user to run the server as"
                ) from None
            os.chown(self.base, user.pw_uid, user.pw_gid)
            runuser = shutil.which("runuser")
            self._as_server_user = [runuser, "-u", "postgres", "--"] if runuser else []
        self._run("initdb", "-D", self.data, "-U", "cnnlab", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.base} -F -c max_connections={self.max_connections}"
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="cnnlab", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE sweeps")
        conn.close()
        return self

    def stop(self) -> None:
        """Stop the server (if it runs) and remove its folder."""
        if self.data.is_dir():
            with contextlib.suppress(RuntimeError):  # it never started
                self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def _run(self, program: str, *args) -> None:
        command = [str(self.bindir / program), *map(str, args)]
        if os.geteuid() == 0 and not self._as_server_user:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run(
            [*self._as_server_user, *command], cwd=self.base, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            server_log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stderr.strip()[-2000:]} {server_log}")


def _postgres_bin() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(newest).parent


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1; yields a SQLAlchemy URL to an empty database."""
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.stop()
        unavailable(
            "PostgreSQL team-sweep test",
            str(exc),
            "CNNLAB_REQUIRE_POSTGRES",
            "Install Debian's 'postgresql' package (apt-get install postgresql).",
        )
    except Exception:
        server.stop()
        raise
    try:
        yield server.url
    finally:
        server.stop()
