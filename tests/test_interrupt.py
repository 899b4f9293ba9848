"""Ctrl-C typed into a real terminal (a pseudo-terminal) during `train` and `sweep`.

The terminal turns Ctrl-C into SIGINT for its foreground process, as when a person presses it:
the command stops after its batch, evaluates the stopped run, says where it is, and exits with
status 130 and no traceback; a second Ctrl-C aborts at once, leaving a run that lists and loads.
"""

import json
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from cnnlab.runs.store import RunStore
from helpers import write_dataset

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = (
    "--image-size 32 --conv-blocks 1 --filters 4 --dense-units 8 --flip none --rotation 0 --batch-size 8 --patience 0"
)


def in_terminal(argv: list[str], env: dict[str, str], presses: list[bytes], timeout: float = 300) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as its controlling terminal; type Ctrl-C each time the
    next of `presses` appears in its output. Returns the exit status and everything it printed."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else (the parent has threads)
        os.execve(sys.executable, [sys.executable, *argv], env)
    output, waiting = b"", list(presses)
    deadline = time.monotonic() + timeout
    finished = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the child has exited and closed the terminal
                chunk = b""
            if not chunk:
                finished = True
                break
            output += chunk
            if waiting and waiting[0] in output:
                output = output.replace(waiting[0], waiting[0].upper(), 1)  # seen; the next press needs a new one
                waiting.pop(0)
                os.write(terminal, b"\x03")
        else:
            pytest.fail(f"still running after {timeout:.0f}s:\n{output.decode(errors='replace')[-3000:]}")
    finally:
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    text = output.decode(errors="replace")
    assert not waiting, f"never saw {waiting[0]!r}:\n{text[-3000:]}"
    return os.waitstatus_to_exitcode(status), text


@pytest.fixture
def cli_env(tmp_path, isolated_dirs):
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CNNLAB_CACHE_DIR": str(isolated_dirs[0]),
        "CNNLAB_MODELS_DIR": str(isolated_dirs[1]),
    }


def test_ctrl_c_stops_a_training_evaluates_it_and_exits_130(tmp_path, cli_env, isolated_dirs):
    data = write_dataset(tmp_path / "data", per_class=12)
    argv = ["-m", "cnnlab", "train", str(data), *TINY.split(), "--epochs", "500", "--json"]
    code, output = in_terminal(argv, cli_env, [b"epoch 1/500"])
    assert code == 130, output
    assert "Traceback" not in output and "Stopping after the current batch" in output
    (run,) = RunStore(isolated_dirs[1]).list()
    assert run.status == "stopped" and 1 <= len(run.history) < 500
    assert 0.0 <= run.record.metrics.test_accuracy <= 1.0  # the stopped run was evaluated
    assert f"Run {run.id} stopped: test accuracy" in output and f"resume {run.id}" in output
    result = json.loads(output.strip().splitlines()[-1])
    assert result["status"] == "stopped" and result["run_id"] == run.id
    run.load_model()


def test_a_second_ctrl_c_aborts_at_once_leaving_a_run_that_lists_and_loads(tmp_path, cli_env, isolated_dirs):
    data = write_dataset(tmp_path / "data", per_class=12)
    argv = ["-m", "cnnlab", "train", str(data), *TINY.split(), "--epochs", "500"]
    code, output = in_terminal(argv, cli_env, [b"epoch 1/500", b"Stopping after the current batch"])
    assert code == 130, output
    assert "Traceback" not in output and "Aborted. The run is in" in output
    (run,) = RunStore(isolated_dirs[1]).list()
    assert run.status == "interrupted" and len(run.history) >= 1  # resumable
    assert run.load_model().output_shape == (None, 3)


def test_ctrl_c_stops_a_sweep_with_its_trial_run_stopped_and_evaluated(tmp_path, cli_env, isolated_dirs):
    data = write_dataset(tmp_path / "data", per_class=12)
    space = tmp_path / "space.json"
    fixed = {"image_size": 32, "conv_blocks": 1, "dense_units": 8, "flip": "none", "rotation": 0.0}
    fixed |= {"batch_size": 8, "patience": 0, "epochs": 500}
    space.write_text(json.dumps({"params": {"filters": [4, 8]}, "fixed": fixed}))
    argv = ["-m", "cnnlab", "sweep", str(data), "--space", str(space), "--trials", "3", "--json"]
    code, output = in_terminal(argv, cli_env, [b"trial 0 epoch 1 "])
    assert code == 130, output
    assert "Traceback" not in output and "KeyError" not in output
    (run,) = RunStore(isolated_dirs[1]).list()
    assert run.status == "stopped" and run.record.metrics.test_accuracy is not None
    assert run.record.sweep.trial == 0
    assert json.loads(output.strip().splitlines()[-1])["trials_run"] == 1
