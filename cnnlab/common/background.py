"""Work in the background: run a function in its own thread and collect its result or error.

Every piece of background work (a training or sweep job, the CLI's interruptible command, a
download) goes through `submit`, which returns a `concurrent.futures.Future`, and is collected
with `wait` or the future's own methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

POLL_S = 0.2


class _ThreadPerTask(Executor):
    """An executor that starts one daemon thread per task.

    Not a ThreadPoolExecutor: its workers are joined when the interpreter exits, so a stalled
    download or a training nobody waits for any more would keep the CLI from ending.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever collects the future
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name=f"cnnlab-{getattr(fn, '__name__', 'task')}", daemon=True).start()
        return future


_EXECUTOR = _ThreadPerTask()


def submit(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
    """Start `fn(*args, **kwargs)` in a new daemon thread; its future holds the result or the error."""
    return _EXECUTOR.submit(fn, *args, **kwargs)


def wait(future: Future[T]) -> T:
    """The future's result (or its error, raised here), once it is done.

    It waits in short timed steps rather than one blocking join: Ctrl-C interrupts a step with
    KeyboardInterrupt and leaves the future intact, so the caller can ask the work to stop and
    call `wait` again for the outcome. (On Python 3.11 an interrupted `Thread.join` leaves the
    thread marked stopped, and a second join returns at once with no result.)
    """
    while not future.done():
        futures.wait([future], timeout=POLL_S)
    return future.result()
