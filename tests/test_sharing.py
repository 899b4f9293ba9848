"""Two app processes and the command line on one models folder and one cache, as a team sharing
them on a network drive would: nothing lost or corrupted, no live file removed, each sees the others' runs.

Each app process (tests/app_process.py) runs the whole app in AppTest in a process of its own, with
the environment a `streamlit run` server gets, and runs the app's clean-up (`hosting.tidy`) on every
page run. A bare `streamlit run` server runs no script until a browser session connects, so these
sessions, not a health check, are what makes a server list, resume, rename and tidy.

While the command line trains a new run and resumes an interrupted one, one app process resumes
the same run and the other renames it and lists the runs over and over, tidying each time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.common.files import HOST_ID, remove_stale_temporaries, writer_tag
from cnnlab.runs.store import RunStore
from helpers import REPO_ROOT, TINY, dead_pid, write_dataset

pytestmark = pytest.mark.slow

RESUMABLE_EPOCHS = 30
TIMEOUT_S = 300


def environment(models: Path, cache: Path) -> dict[str, str]:
    """What every process of the team gets: the same folders, this checkout, TensorFlow on one thread."""
    return {
        **os.environ,
        "CNNLAB_MODELS_DIR": str(models),
        "CNNLAB_CACHE_DIR": str(cache),
        "PYTHONPATH": str(REPO_ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    }


class AppProcess:
    """tests/app_process.py in a process of its own: `send` a command, read its `answer`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - the child writes to it until `close`
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "app_process.py")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def send(self, op: str, **args: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("ANSWER "):
                return json.loads(line[len("ANSWER ") :])
        raise AssertionError(
            f"the app process ended (code {self.process.wait()}):\n{self.log_path.read_text()[-3000:]}"
        )

    def ask(self, op: str, **args: str) -> dict:
        self.send(op, **args)
        return self.answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._log.close()


def cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupted_run(env: dict[str, str], data: Path, models: Path) -> str:
    """A run the command line was training when it was killed, after its first checkpoint."""
    training = cli(env, "train", str(data), *TINY, "--epochs", str(RESUMABLE_EPOCHS), "--name", "resumable")
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        runs = [r for r in RunStore(models).list() if r.has_checkpoint and r.history]
        if runs:
            training.send_signal(signal.SIGKILL)
            training.communicate()
            assert runs[0].status == "interrupted"
            return runs[0].id
        assert training.poll() is None, training.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint written in time")


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=TIMEOUT_S)
    return process.returncode, out, err


def test_two_app_processes_and_the_command_line_share_one_models_folder_and_cache(tmp_path):
    models, cache = tmp_path / "models", tmp_path / "cache"
    env = environment(models, cache)
    data = write_dataset(tmp_path / "pets", per_class=10)
    apps = [AppProcess(env, tmp_path / f"app-{name}.log") for name in "ab"]
    try:
        resumable = interrupted_run(env, data, models)  # while the app processes start
        for app in apps:
            assert app.answer() == {"ready": True}
        first, second = apps

        # Temporaries of writers that are alive: this process, a process on another machine sharing the
        # folders (its process cannot be checked: it counts as live for a day); and one of a dead writer.
        finished_pid = dead_pid()
        other_host = "0" * 8 if HOST_ID != "0" * 8 else "1" * 8
        live = [
            cache / "prepared" / f".key.npy.{writer_tag()}-live.tmp.npy",
            models / resumable / f".run.json.{other_host}-1-live.tmp.json",
        ]
        dead = models / f".upload.{writer_tag(finished_pid)}-dead.tmp"
        for path in [*live, dead]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")

        stop = tmp_path / "stop-listing"
        new_training = cli(env, "train", str(data), *TINY, "--name", "from-the-cli", "--json")
        first.send("resume", run=resumable)
        cli_resume = cli(env, "resume", resumable, "--json")
        renamed = second.ask("rename", run=resumable, name="renamed-meanwhile")
        second.send("list_until", path=str(stop))
        app_resume = first.answer()
        first.send("list_until", path=str(stop))

        trained = finished(new_training)
        resumed_cli = finished(cli_resume)
        stop.touch()
        listings = [app.answer() for app in apps]
        resumed_app = first.ask("wait") if app_resume["started"] else None

        # The new run from the command line trained whole while the app processes listed and tidied
        # (the one resuming may start listing only once the command line is done), and both see it.
        assert trained[0] == 0, trained[2][-3000:]
        new_id = json.loads(trained[1].strip().splitlines()[-1])["run_id"]
        assert max(n["listings"] for n in listings) >= 2, listings
        assert all(new_id in n["seen"] for n in listings), listings

        # Exactly one of the two resumes trained; the other was refused in one line.
        cli_trained = resumed_cli[0] == 0
        app_trained = resumed_app is not None and resumed_app["status"] == "completed"
        assert cli_trained != app_trained, (resumed_cli, app_resume, resumed_app)
        if cli_trained:
            refusal = resumed_app["error"] if resumed_app else app_resume["refused"] or app_resume["errors"][0]
        else:
            # One `error:` line (TensorFlow may log its own start-up lines around it), no traceback.
            (refusal,) = [line for line in resumed_cli[2].splitlines() if line.startswith("error: ")]
            assert resumed_cli[0] != 0 and "Traceback" not in resumed_cli[2]
        print(f"trained by the {'command line' if cli_trained else 'app'}; the other was told: {refusal}")
        print(f"rename: {renamed}; listings while training: {[n['listings'] for n in listings]}")
        assert refusal and "\n" not in refusal and ("another process" in refusal or "running" in refusal), refusal

        # Nothing lost or corrupted: every run lists in every process and on disk, whole.
        store = RunStore(models)
        on_disk = {r.id: r for r in store.list()}
        assert set(on_disk) == {resumable, new_id}
        for app in apps:
            seen = app.ask("list")["runs"]
            assert {i for i in seen if i != "demo"} == set(on_disk)
            assert seen[resumable]["name"] == on_disk[resumable].name
        for run in on_disk.values():
            assert run.status == "completed", (run.id, run.status, run.record.error)
            assert [row.epoch for row in run.history] == list(range(1, len(run.history) + 1))
            assert run.load_model() is not None and run.split()
        assert len(on_disk[resumable].history) == RESUMABLE_EPOCHS
        # The rename either landed before the resume claimed the run, and no epoch's update undid
        # it, or came after, and was refused in one line as the run was training.
        if renamed["errors"] or renamed["refused"]:
            message = (renamed["errors"] or [renamed["refused"]])[0]
            assert "\n" not in message and ("training" in message or "another process" in message), message
            assert on_disk[resumable].name == "resumable"
        else:
            assert on_disk[resumable].name == "renamed-meanwhile"

        # No live writer's temporary was removed by any clean-up; the dead writer's was.
        assert all(path.exists() for path in live)
        assert not dead.exists()
        assert remove_stale_temporaries(models) == [] and remove_stale_temporaries(cache) == []
    finally:
        for app in apps:
            app.close()
