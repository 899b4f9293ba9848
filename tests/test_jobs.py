"""Background jobs: state, stop, failure, and the server-wide limit with a queue."""

import threading
import time

import pytest

from cnnlab import jobs


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_job_runs_in_background_and_keeps_its_result():
    job = jobs.Job(lambda j: 42, limit=1).start()
    assert wait_for(lambda: job.done)
    assert job.status == "completed" and job.result == 42 and job.elapsed >= 0


def test_stop_request_reaches_the_target():
    started = threading.Event()

    def target(job):
        started.set()
        while not job.stop_event.is_set():
            time.sleep(0.01)
        return "stopped cleanly"

    job = jobs.Job(target, limit=1).start()
    assert started.wait(5)
    job.stop()
    assert wait_for(lambda: job.done)
    assert job.status == "stopped" and job.result == "stopped cleanly"


def test_failure_is_a_one_line_message_not_a_dead_thread():
    def target(job):
        raise ValueError("Bad thing happened; fix it.\nsecond line")

    job = jobs.Job(target, limit=1).start()
    assert wait_for(lambda: job.done)
    assert job.status == "failed"
    assert job.error == "Bad thing happened; fix it."


@pytest.mark.parametrize("limit", [1, 2])
def test_server_wide_limit_queues_extra_jobs_with_a_message(limit):
    release = threading.Event()
    holders = [jobs.Job(lambda j: release.wait(10), limit=limit).start() for _ in range(limit)]
    assert wait_for(lambda: all(h.status == "running" for h in holders))
    waiting = jobs.Job(lambda j: "ran", limit=limit).start()
    assert wait_for(lambda: "Waiting for a free training slot" in waiting.message)
    assert waiting.status == "queued" and jobs.running_jobs() == limit
    release.set()
    assert wait_for(lambda: waiting.done)
    assert waiting.result == "ran"
    assert all(wait_for(lambda h=h: h.done) for h in holders)


def test_a_queued_job_can_be_cancelled():
    release = threading.Event()
    holder = jobs.Job(lambda j: release.wait(10), limit=1).start()
    assert wait_for(lambda: holder.status == "running")
    queued = jobs.Job(lambda j: "should not run", limit=1).start()
    queued.stop()
    assert wait_for(lambda: queued.done)
    assert queued.status == "cancelled" and queued.result is None
    release.set()
    assert wait_for(lambda: holder.done)
