"""Programs run as a person runs them, `python -m MODULE ARGS` (or `python -c CODE ARGS`), each its
own process with its own environment, working folder, output and exit status, but forked from one
server process (per test worker) that has already imported TensorFlow, Keras and CNN Lab: a run
saves the 5-9 s import.

For tests of what a program does (what it writes, prints and leaves behind when killed), not of how
a fresh interpreter starts: tests of entry points, of what an import pulls in or of TensorFlow's
start-up logging keep starting `sys.executable`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import runpy
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO_ROOT

# What the server imports before forking: the heavy imports every program here would repeat.
PRELOAD = ["tensorflow", "keras", "cnnlab.cli", "cnnlab.training", "cnnlab.deploy.export"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _program(argv: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str) -> None:
    """The forked child: become `python *argv` with this environment and output files."""
    os.setsid()  # a process group of its own, so that what it starts can be waited for after a kill
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        if fd == 2 and stderr == stdout:
            os.dup2(1, 2)
            continue
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stream
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stream
    option, target, *args = argv
    if option == "-m":
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})


@dataclass
class Program:
    """A running program: its process and the files its output goes to."""

    process: multiprocessing.process.BaseProcess
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def output(self) -> str:
        """What it has written to standard output so far."""
        return self.stdout.read_text(errors="replace") if self.stdout.exists() else ""

    def errors(self) -> str:
        """What it has written to standard error so far."""
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def poll(self) -> int | None:
        """Its exit status (negative: the signal that ended it), or None while it runs."""
        return self.process.exitcode

    def kill(self, timeout: float = 60) -> None:
        """SIGKILL it, as a crash or an out-of-memory killer would, and wait for it to be gone and for
        the processes it started (left running, as after a real crash) to end on their own."""
        with contextlib.suppress(ProcessLookupError):  # it ended already
            os.kill(self.pid, signal.SIGKILL)
        self.process.join()
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise TimeoutError(f"what {self.stdout.stem} started still ran {timeout:.0f} s after it was killed")

    def wait(self, timeout: float) -> int:
        """Wait for it to end (killing it past `timeout` seconds); its exit status."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.kill()
            raise TimeoutError(f"{self.stdout.stem} still ran after {timeout:.0f} s:\n{self.output()[-2000:]}")
        return self.process.exitcode


def start(argv: list[str], output: Path, *, env: dict[str, str] | None = None, merge: bool = False) -> Program:
    """Start `python *argv` (`-m MODULE ...` or `-c CODE ...`) in the repository root; its output goes
    to `output`.stdout and .stderr (with `merge`, both to .stdout, interleaved as a terminal shows them)."""
    if len(argv) < 2 or argv[0] not in ("-m", "-c"):
        raise ValueError(f"Expected -m MODULE or -c CODE first. Received: argv={argv!r}")
    stdout, stderr = output.with_suffix(".stdout"), output.with_suffix(".stderr")
    stderr = stdout if merge else stderr
    arguments = (argv, dict(os.environ if env is None else env), str(REPO_ROOT), str(stdout), str(stderr))
    process = _CONTEXT.Process(target=_program, args=arguments, name=" ".join(argv)[:200])
    process.start()
    return Program(process, stdout, stderr)


def run(argv: list[str], output: Path, *, env: dict[str, str] | None = None, timeout: float = 600) -> Program:
    """Run `python *argv` to its end (see `start`)."""
    program = start(argv, output, env=env)
    program.wait(timeout)
    return program
