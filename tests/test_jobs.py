"""Background jobs: state, stop, failure, and the server-wide limit with a queue."""

import inspect
import sys
import threading
import time

import pytest

from cnnlab.server import jobs


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


def test_lowering_the_limit_while_jobs_wait_never_runs_more_than_the_new_limit():
    release = threading.Event()
    holders = [jobs.Job(lambda j: release.wait(10), limit=2).start() for _ in range(2)]
    assert wait_for(lambda: all(h.status == "running" for h in holders))
    lock, active, peak = threading.Lock(), [0], [0]

    def work(job):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1

    waiting = [jobs.Job(work, limit=2).start() for _ in range(3)]
    lowered = jobs.Job(work, limit=1).start()
    assert wait_for(lambda: "Waiting for a free training slot" in lowered.message)
    assert all(w.status == "queued" for w in waiting)
    release.set()
    assert all(wait_for(lambda j=j: j.done) for j in [*holders, *waiting, lowered])
    assert peak[0] == 1 and jobs.running_jobs() == 0


def test_raising_the_limit_while_jobs_wait_starts_them_at_once():
    release = threading.Event()
    holder = jobs.Job(lambda j: release.wait(10), limit=1).start()
    assert wait_for(lambda: holder.status == "running")
    waiting = jobs.Job(lambda j: release.wait(10), limit=1).start()
    assert wait_for(lambda: "Waiting for a free training slot" in waiting.message)
    raised = jobs.Job(lambda j: release.wait(10), limit=3).start()
    assert wait_for(lambda: waiting.status == "running" and raised.status == "running")
    assert holder.status == "running" and jobs.running_jobs() == 3
    release.set()
    assert all(wait_for(lambda j=j: j.done) for j in (holder, waiting, raised))


def test_the_registry_finds_a_training_by_run_id_and_shows_each_owner_only_theirs():
    release = threading.Event()
    mine = jobs.Job(lambda j: release.wait(10), owner="visitor-a", run_id="run-of-a").start()
    theirs = jobs.Job(lambda j: release.wait(10), owner="visitor-b", run_id="run-of-b", kind="sweep").start()
    try:
        assert jobs.find_job("run-of-a") is mine and jobs.find_job("run-of-b") is theirs
        assert mine in jobs.visible_jobs("visitor-a") and theirs not in jobs.visible_jobs("visitor-a")
        assert jobs.visible_jobs("visitor-b", "training") == [] and jobs.visible_jobs("visitor-b", "sweep") == [theirs]
        assert {mine, theirs} <= set(jobs.visible_jobs(None))  # not hosted: everyone sees every job
        with pytest.raises(ValueError, match=r"Run run-of-a is already (queued|running).*Received: run='run-of-a'"):
            jobs.Job(lambda j: None, run_id="run-of-a").start()
    finally:
        release.set()
    assert wait_for(lambda: mine.done and theirs.done)
    again = jobs.Job(lambda j: "resumed", run_id="run-of-a").start()  # a finished run's job may be replaced
    assert wait_for(lambda: again.done) and jobs.find_job("run-of-a") is again


def test_a_training_job_knows_its_run_id_before_it_starts(make_dataset, run_store, cache_dir):
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.plan import training_plan
    from helpers import tiny_model_config, tiny_train_config

    store = run_store
    where = jobs.JobSettings(Workspace(store, cache_dir))
    plan = training_plan(
        make_dataset(per_class=4), tiny_model_config(), tiny_train_config(epochs=1), workspace=where.workspace
    )
    job = jobs.training_job(plan, where)
    assert job.run_id and job.status == "queued" and jobs.find_job(job.run_id) is None  # registered on start
    job.start()
    assert jobs.find_job(job.run_id) is job
    assert wait_for(lambda: job.done, timeout=120) and job.status == "completed", job.error
    assert job.result.id == job.run_id and store.get(job.run_id).status == "completed"
    assert store.get(job.run_id).record.precision == plan.precision  # trained as planned
    assert job.info == {"epochs": plan.epochs}


def test_a_stop_that_comes_as_a_training_finishes_leaves_it_completed():
    class Finished:
        status = "completed"  # what the run says: the stop came after its last epoch

    def target(job):
        job.stop_event.set()
        return Finished()

    job = jobs.Job(target).start()
    assert wait_for(lambda: job.done)
    assert job.status == "completed" and job.message == ""


def paused_at(function, text: str, until, timeout: float):
    """A tracer that holds the calling thread just before the line of `function` containing `text`
    until `until()` is true or `timeout` seconds pass: it puts another thread's step exactly there."""
    lines, first = inspect.getsourcelines(function)
    target = first + next(i for i, line in enumerate(lines) if text in line)

    def line_tracer(frame, event, arg):
        if event == "line" and frame.f_lineno == target:
            wait_for(until, timeout)
        return line_tracer

    return lambda frame, event, arg: line_tracer if frame.f_code is function.__code__ else None


def test_a_stop_as_the_job_ends_never_leaves_it_saying_stopping():
    started = threading.Event()

    def target(job):
        started.set()
        job.stop_event.wait(10)
        return "stopped cleanly"

    job = jobs.Job(target, limit=1).start()
    assert started.wait(5)
    # The job ends between stop()'s look at the status and its message, wherever the code lets it.
    previous = sys.gettrace()  # a coverage tool's, if any
    sys.settrace(paused_at(jobs.Job.stop, "Stopping after", lambda: job.done, timeout=2))
    try:
        job.stop()
    finally:
        sys.settrace(previous)
    assert wait_for(lambda: job.done)
    assert job.status == "stopped" and job.message == "Stopped; the best weights were kept."


def test_a_cancel_as_a_slot_frees_never_starts_the_job():
    release = threading.Event()
    holder = jobs.Job(lambda j: release.wait(10), limit=1).start()
    assert wait_for(lambda: holder.status == "running")
    ran = []
    queued = jobs.Job(ran.append, limit=1).start()
    assert wait_for(lambda: "Waiting for a free training slot" in queued.message)
    queued.stop()
    release.set()  # the slot frees while the cancelled job waits for one
    assert wait_for(lambda: queued.done and holder.done)
    assert queued.status == "cancelled" and ran == []
    assert wait_for(lambda: jobs.running_jobs() == 0)
