"""What a finished training leaves in memory: its traced training step must not outlive it, and
what its threads freed goes back to the system."""

import gc
import os
import platform
import threading
import time
import weakref

import pytest
import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.framework.func_graph import FuncGraph

from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.server import jobs
from cnnlab.sweep import SweepConfig, run_sweep
from cnnlab.training import memory
from cnnlab.training.engine import train
from cnnlab.training.lr_find import find_learning_rate
from cnnlab.training.memory import give_back_freed_memory, release_training_graphs
from helpers import tiny_model_config, tiny_space, tiny_train_config


def custom_gradients() -> set[str]:
    """The names of the `tf.custom_gradient` functions in TensorFlow's global gradient registry."""
    return {name for name in ops._gradient_registry._registry if str(name).startswith("CustomGradient-")}


def live_graphs() -> list[FuncGraph]:
    """Every `FuncGraph` alive now."""
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, FuncGraph)]


def test_release_drops_the_all_reduce_gradient_and_frees_its_graph_but_keeps_others():
    @tf.function
    def summed(x):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, x * 2.0)

    @tf.custom_gradient
    def halved(x):
        return x, lambda upstream: upstream * 0.5

    @tf.function
    def own_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = halved(x)
        return tape.gradient(y, x)

    before = custom_gradients()
    assert float(summed(tf.constant(1.0))) == 2.0
    graph = weakref.ref(summed.get_concrete_function(tf.constant(1.0)).graph)
    assert float(own_gradient(tf.constant(1.0))) == 0.5
    added = custom_gradients() - before
    assert len(added) == 2, f"expected one registered gradient per custom_gradient, found {sorted(added)}"

    del summed
    gc.collect()
    assert graph() is not None, "the registry should pin the traced graph until it is released"

    assert release_training_graphs() >= 1  # this one, and any an earlier test's bare model.fit left
    gc.collect()
    assert graph() is None
    kept = custom_gradients() - before
    assert len(kept) == 1 and kept < added, "a custom gradient other than all_reduce's must stay registered"
    # The kept one still works: a retrace of the same function differentiates through it.
    assert float(own_gradient(tf.constant(2.0))) == 0.5


def test_trainings_one_after_another_leave_no_graph_of_a_finished_one(make_dataset, run_store, cache_dir):
    data_dir = make_dataset(per_class=8, size=(16, 16))
    model_config = tiny_model_config(image_size=(16, 16))
    for attempt in (1, 2):
        # Held while the training runs, so that no id of these is reused by a new graph.
        existing = live_graphs()
        run = train(data_dir, model_config, tiny_train_config(epochs=1), workspace=Workspace(run_store, cache_dir))
        assert run.status == "completed"
        del run
        known = {id(graph) for graph in existing}
        left = sorted({graph.name for graph in live_graphs() if id(graph) not in known})
        assert not left, f"training {attempt} left these traced graphs alive: {left}"


def resident_mb() -> float:
    """This process's resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_what_lives_when_frozen_leaves_the_collectors_walks_and_later_cycles_are_still_collected():
    class Node:
        pass

    memory.freeze_long_lived()
    frozen = gc.get_freeze_count()
    assert frozen > 100_000  # TensorFlow, Keras and the tests' own imports
    assert len(gc.get_objects()) < frozen / 10, "a full collection walks what came after the freeze only"
    node = Node()
    node.itself = node  # a cycle: only the collector can free it
    gone = weakref.ref(node)
    del node
    gc.collect()
    assert gone() is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's (Linux, as on the hosted demo)")
def test_memory_freed_in_a_threads_arena_is_given_back():
    survivors: list[bytes] = []

    def churn() -> None:
        blocks = [bytes(2000) for _ in range(60_000)]  # about 120 MB from this thread's malloc arena
        survivors.extend(blocks[::1000])  # a few live blocks keep glibc from trimming the arena itself

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    gc.collect()
    held = resident_mb()
    assert give_back_freed_memory() is True
    assert resident_mb() < held - 80, "the freed blocks should leave the process"


def test_jobs_sweep_trials_and_the_learning_rate_finder_give_memory_back(
    monkeypatch, make_dataset, tmp_path, cache_dir
):
    calls: list[str] = []
    real = memory.give_back_freed_memory

    def recorded() -> bool:
        calls.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(memory, "give_back_freed_memory", recorded)
    job = jobs.Job(lambda job: 42, limit=1).start()
    deadline = time.monotonic() + 30
    while "cnnlab-_run" not in calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.done and "cnnlab-_run" in calls, "a job's own thread gives memory back when it ends"

    def here() -> int:
        """Calls from this thread, where the sweep and the finder run."""
        return calls.count(threading.current_thread().name)

    root = make_dataset(per_class=4, size=(16, 16))
    store = RunStore(tmp_path / "models")
    run_sweep(
        root, tiny_space({"filters": [4, 8]}, epochs=1), SweepConfig(trials=2), workspace=Workspace(store, cache_dir)
    )
    assert here() == 2, f"once after each of the 2 trials, found {calls}"

    existing = live_graphs()
    find_learning_rate(
        root, tiny_model_config(image_size=(16, 16)), workspace=Workspace(store, cache_dir), num_steps=12
    )
    assert here() == 3
    known = {id(graph) for graph in existing}
    left = sorted({graph.name for graph in live_graphs() if id(graph) not in known})
    assert not left, f"the learning-rate finder left these traced graphs alive: {left}"
