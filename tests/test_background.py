"""Background work: results and errors come back through the future, and Ctrl-C never loses them."""

import signal
import threading

import pytest

from cnnlab.common import background


def interrupt_main_thread_after(seconds: float) -> None:
    """Deliver a real SIGINT (Ctrl-C) to the main thread, which pytest runs the test in."""
    threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()


def test_wait_returns_the_result_from_a_daemon_thread():
    thread = background.wait(background.submit(threading.current_thread))
    assert thread is not threading.main_thread() and thread.daemon


def test_wait_raises_the_work_s_own_error():
    def fail(kind):
        raise kind("the reason")

    with pytest.raises(ValueError, match="the reason"):
        background.wait(background.submit(fail, ValueError))
    # A TimeoutError is the work's outcome too, not a sign that it is still running.
    with pytest.raises(TimeoutError, match="the reason"):
        background.wait(background.submit(fail, TimeoutError))


def test_a_wait_interrupted_by_ctrl_c_can_be_resumed_for_the_result():
    finish = threading.Event()
    future = background.submit(lambda: "finished" if finish.wait(20) else "timed out")
    interrupt_main_thread_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        background.wait(future)
    assert not future.done()
    finish.set()
    assert background.wait(future) == "finished"
