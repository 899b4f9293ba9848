"""The server's start-up warm-up: what a first visit to the Train page would otherwise wait for.

Once per server process, in a background thread started after the first page was sent: the
built-in sample is generated into the cache (`data.sample_dir`, the call the pages make) in a child
process while the thread imports TensorFlow and Keras, builds the default model and runs the
augmentation preview's layers once (Keras's first-call costs); then the default training on the
sample is planned as the Train page plans it (`training.training_plan`: the scan, the sample's
version 1 where versions are shared, the leakage check). Everything it makes lives where the pages
look for it: the cache folder, the dataset versions folder, the imported modules.

A page that needs TensorFlow waits for a running warm-up (`wait_for_warm_up`) rather than working
beside it: two threads importing TensorFlow at once can stop each other in Python's import locks
(TensorFlow's `__init__` imports Keras, and Keras imports TensorFlow), and both would pay for it.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cnnlab.common.background import submit

_LOCK = threading.Lock()
_STARTED: list[Future[dict[str, float]]] = []  # at most one: this process's warm-up


def start_warm_up(cache: Path, models: Path, datasets: Path | None) -> Future[dict[str, float]]:
    """Start this process's warm-up in a background thread, or return the one started already.

    `cache` is the server's cache folder, `models` its run store's folder; `datasets`, its dataset
    versions folder, where the sample's version 1 is made as a first training would make it (None:
    versions belong to each visitor, so only the scan is made). The future's result is the seconds
    each step took; a failed step fails the future and is left for the page that needs it to meet.
    """
    with _LOCK:
        if not _STARTED:
            _STARTED.append(submit(warm_up, Path(cache), Path(models), datasets))
        return _STARTED[0]


def warm_up_future() -> Future[dict[str, float]] | None:
    """This process's warm-up, None when none was started."""
    with _LOCK:
        return _STARTED[0] if _STARTED else None


def wait_for_warm_up() -> None:
    """Return once this process's warm-up (if one was started) has ended, whether it succeeded or not."""
    future = warm_up_future()
    if future is not None:
        future.exception()  # blocks until done; its error, if any, is the page's own to meet


def warm_up(cache: Path, models: Path, datasets: Path | None) -> dict[str, float]:
    """Generate the sample, import TensorFlow and build the default model meanwhile, then plan the
    default training on the sample; return the seconds each step took ("keras", "sample", "plan").

    The sample is drawn in a child process (`sample_dir`, as the pages call it, so its atomic build
    and its cache folder are theirs): drawing it holds no lock the server's pages need, and it runs
    on the second core while this thread imports TensorFlow.
    """
    from cnnlab.data.sample import SAMPLE_CLASSES, draw_sample_image, sample_dir

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")  # never fork a server process that runs threads
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        sample_future = pool.submit(sample_dir, cache)

        from cnnlab.model import ModelConfig
        from cnnlab.model.augment import augment_preview
        from cnnlab.model.build import build_model

        config = ModelConfig()
        build_model(config, len(SAMPLE_CLASSES))
        image = np.asarray(draw_sample_image(SAMPLE_CLASSES[0], np.random.default_rng(0), config.image_size[0]))
        augment_preview(config, image, n=1)  # the preview's layers, called once
        seconds["keras"] = time.perf_counter() - start
        sample = sample_future.result()
    seconds["sample"] = time.perf_counter() - start

    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.plan import training_plan

    start = time.perf_counter()
    training_plan(sample, config, workspace=Workspace(RunStore(models), cache, datasets=datasets))
    seconds["plan"] = time.perf_counter() - start
    return seconds
