"""The server's start-up warm-up: what a first visit to the Train page would otherwise wait for.

Once per server process, in a background thread started after the first page was sent: the
built-in sample is generated into the cache (`data.sample_dir`, the call the pages make), the
default training on it is planned as the Train page plans it (`training.training_plan`: the scan,
the sample's version 1 where versions are shared, the leakage check's image hashes, TensorFlow and
Keras imported, the default model built), the augmentation preview's layers run once (Keras's
first-call costs), and, on a hosted server, the sample's copies looked for (each visitor's own
version of it then finds them in the cache). Everything it makes lives where the pages look for it:
the cache folder, the dataset versions folder, the imported modules. Last, what the imports made is
frozen out of the garbage collector's walks (`training.memory.freeze_long_lived`), so the full
collection that follows each training costs milliseconds instead of a quarter of a second.

A page that needs TensorFlow waits for a running warm-up (`wait_for_warm_up`) rather than working
beside it: two threads importing TensorFlow at once can stop each other in Python's import locks
(TensorFlow's `__init__` imports Keras, and Keras imports TensorFlow), and both would pay for it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path

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
    """Generate the sample, plan the default training on it, run the augmentation preview's layers
    once and, where versions belong to each visitor, find the sample's copies; in this thread. Returns
    the seconds each step took ("sample", "plan", "preview", "duplicates", "freeze").

    All in this thread, not in a child process: a process started with "spawn" from inside a
    Streamlit script run re-runs the app script (Streamlit swaps in its own `__main__` module), which
    would start a warm-up of its own, and so on.
    """
    from cnnlab.data.sample import sample_dir

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    sample = sample_dir(cache)
    seconds["sample"] = time.perf_counter() - start

    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.plan import training_plan

    start = time.perf_counter()
    plan = training_plan(sample, workspace=Workspace(RunStore(models), cache, datasets=datasets))
    seconds["plan"] = time.perf_counter() - start

    from cnnlab.data.images import load_array
    from cnnlab.data.scanning import scan
    from cnnlab.model.augment import augment_preview

    start = time.perf_counter()
    config, report = plan.model_config, scan(sample, cache=cache)
    image = load_array(report.path_of(report.files[0]), config.image_size, config.color_mode, config.resize_mode)
    augment_preview(config, image, n=1)
    seconds["preview"] = time.perf_counter() - start
    if datasets is None:
        # Each hosted visitor makes a version of the sample of their own, whose copies the Data and
        # Train pages look for: the images' hashes and pairs are found now, once for all of them.
        from cnnlab.data.duplicates import prepare

        start = time.perf_counter()
        prepare([report.path_of(name) for name in report.files], cache)
        seconds["duplicates"] = time.perf_counter() - start
    from cnnlab.training.memory import freeze_long_lived

    start = time.perf_counter()
    freeze_long_lived()  # before any training: pages that need TensorFlow wait for this warm-up to end
    seconds["freeze"] = time.perf_counter() - start
    return seconds
