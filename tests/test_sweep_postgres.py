"""Team sweeps: two worker processes share one study, on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started by the session fixture below from Debian's `postgresql` package
(`/usr/lib/postgresql/*/bin`), on a free port of 127.0.0.1 with its data and socket in a temporary
folder. Without the package the test is skipped with a loud reason, unless CNNLAB_REQUIRE_POSTGRES=1
(as in CI), which makes it a failure.
"""

import glob
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from e2e_server import free_port

from cnnlab.runs import RunStore
from helpers import write_dataset

REPO_ROOT = Path(__file__).resolve().parent.parent
SPACE = {
    "objective": "val_accuracy",
    "params": {"learning_rate": {"low": 0.001, "high": 0.03, "log": True}, "batch_norm": [True, False]},
    "fixed": {
        "epochs": 1,
        "image_size": 32,
        "conv_blocks": 1,
        "filters": 4,
        "dense_units": 8,
        "dropout": 0.0,
        "flip": "none",
        "rotation": 0.0,
        "batch_size": 8,
        "patience": 0,
        "seed": 7,
    },
}


def _unavailable(reason: str):
    """Skip loudly, or fail when CI says PostgreSQL must be there."""
    message = f"PostgreSQL team-sweep test NOT RUN: {reason}. Install Debian's 'postgresql' package (apt-get install postgresql)."
    if os.environ.get("CNNLAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _postgres_bin() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(newest).parent


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1; yields a SQLAlchemy URL to an empty database."""
    bindir = _postgres_bin()
    if bindir is None:
        _unavailable("no server binaries under /usr/lib/postgresql/*/bin")
    try:
        import psycopg2
    except ImportError:
        _unavailable("the psycopg2 driver is missing (pip install -r requirements-dev.txt)")
    base = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    data, log = base / "data", base / "server.log"
    as_server_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' OS user to run the server as")
        os.chown(base, user.pw_uid, user.pw_gid)
        runuser = shutil.which("runuser")
        as_server_user = [runuser, "-u", "postgres", "--"] if runuser else []

    def server(*args: str) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0 and not as_server_user:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run([*as_server_user, *command], cwd=base, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{Path(command[0]).name} failed: {done.stderr.strip()[-2000:]} {server_log}")

    port = free_port()
    server(bindir / "initdb", "-D", data, "-U", "cnnlab", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
    options = f"-h 127.0.0.1 -p {port} -k {base} -F -c max_connections=50"
    server(bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="cnnlab", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE sweeps")
        conn.close()
        yield f"postgresql+psycopg2://cnnlab@127.0.0.1:{port}/sweeps"
    finally:
        server(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'team.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
def test_two_workers_add_up_their_trials_in_one_study(storage_url, tmp_path):
    import optuna
    from optuna.trial import TrialState

    data_dir = write_dataset(tmp_path / "data")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    models = tmp_path / "team-models"
    study = f"team-{tmp_path.name}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CNNLAB_MODELS_DIR": str(models),
        "CNNLAB_CACHE_DIR": str(tmp_path / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # Two processes on a small machine: one thread each is faster than fighting over cores.
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "sweep",
        str(data_dir),
        "--space",
        str(space_file),
        "--trials",
        "2",
        "--storage",
        storage_url,
        "--study",
        study,
        "--json",
    ]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    for summary in outputs:
        assert summary["study"] == study and summary["trials_run"] == 2 and summary["objective"] == "val_accuracy"
        assert summary["storage"] == storage_url  # no password in these URLs to hide
    assert max(summary["trials"] for summary in outputs) == 4

    loaded = optuna.load_study(study_name=study, storage=storage_url)
    trials = loaded.get_trials(deepcopy=False)
    assert len(trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]

    runs = RunStore(models, include_demo=False).list(sweep=study)
    assert len(runs) == 4
    assert sorted(run.record["sweep"]["trial"] for run in runs) == [0, 1, 2, 3]
    assert {t.user_attrs["run_id"] for t in trials} == {run.id for run in runs}
    assert sorted(Counter(run.record["pid"] for run in runs).values()) == [2, 2]  # two trials per worker
    best = loaded.best_trial
    assert any(summary["best_value"] == best.value for summary in outputs)
