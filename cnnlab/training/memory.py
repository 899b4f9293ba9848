"""What a finished training leaves in the process's memory, and giving it back.

Two things keep memory after a training in a process that trains again and again (the app's
server, a sweep worker), each measured by bench/bench_retrain.py and bench/bench_server.py:

- **TensorFlow 2.21 pins every traced training step.** The optimizer sums gradients through
  `ReplicaContext.all_reduce`, which wraps the sum in `tf.custom_gradient`; in graph mode that
  registers a gradient function, one per trace, in TensorFlow's global gradient registry, and its
  closure holds the traced tensors, so the `FuncGraph` of `one_step_on_data` (and the C++ graph
  behind it) is never freed: about 52 MB per training of the default model. Reported as
  tensorflow/tensorflow#97697; 2.21's `custom_gradient` still keeps the results in that closure,
  and `keras.backend.clear_session()` does not help (measured). Only those `all_reduce` gradients
  are dropped: nothing differentiates through an optimizer's update (Keras takes the gradients
  before it sums them), so no training, sweep trial or Grad-CAM running beside can need them.
- **glibc keeps what threads freed.** Each thread allocates from its own malloc arena, and
  memory freed inside an arena stays with the process. In the Streamlit server, where jobs and
  reruns run in many threads, releasing the graphs alone still left it growing by 100-140 MB per
  training (freed, but kept by the arenas); `malloc_trim` returns it.

Giving memory back starts with a full garbage collection, which walks every object the collector
tracks: about 470,000 once TensorFlow, Keras and Streamlit are imported, 0.23 s a collection on
a 2-core AMD EPYC. `freeze_long_lived` takes what the imports made out of those walks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable, Iterator
from typing import Any

# The `tf.custom_gradient` that `all_reduce` registers: its gradient function is a lambda
# defined inside this method, found in the registered function's closures.
ALL_REDUCE = "ReplicaContextBase.all_reduce"


def release_training_graphs() -> int:
    """Drop the gradient functions that pin finished training steps' graphs; return how many.

    Safe to call at any time from any thread; does nothing on a TensorFlow whose gradient
    registry is laid out differently.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):
        return 0
    pinned = [
        name
        for name, entry in list(registry.items())
        if str(name).startswith("CustomGradient-") and _is_all_reduce(entry)
    ]
    for name in pinned:
        registry.pop(name, None)
    return len(pinned)


def _is_all_reduce(entry: Any) -> bool:
    """Whether a registry entry is the gradient `all_reduce` registered (the lambda sits two closures down)."""
    function = entry.get("type") if isinstance(entry, dict) else None
    return any(ALL_REDUCE in getattr(inner, "__qualname__", "") for inner in _closure_functions(function, depth=2))


def _closure_functions(function: Callable | None, depth: int) -> Iterator[Callable]:
    """`function` and the functions its closure holds, `depth` levels down."""
    if function is None or depth < 0:
        return
    yield function
    for cell in getattr(function, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if callable(inner):
            yield from _closure_functions(inner, depth - 1)


def give_back_freed_memory() -> bool:
    """Collect garbage, then return the memory freed in every malloc arena to the system (glibc's
    `malloc_trim`); False where the C library has no `malloc_trim` (macOS, Windows, musl)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def freeze_long_lived() -> None:
    """Collect garbage, then move every object still alive out of the collector's walks (`gc.freeze`).
    Later full collections skip them: 0.23 s becomes a few ms. (How many were moved is
    `gc.get_freeze_count()`, which walks them all: 42 ms with TensorFlow loaded, so not asked here.)

    Call it once the heavy imports are done and no model exists: frozen objects are still freed when
    their last reference goes, but cyclic garbage among them (a Keras model is full of cycles) would
    never be collected.
    """
    gc.collect()
    gc.freeze()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, looked up once (`find_library` runs `ldconfig`); None without it."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
