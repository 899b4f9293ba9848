"""The server's start-up warm-up: what a first visit to the Train page would otherwise wait for.

Once per server process, in a background thread started after the first page was sent. The data
half runs in a process of its own (`python -m cnnlab.server.warmup CACHE`, the `prepare_data`
below): the built-in sample generated into the cache (`data.sample_dir`, the call the pages make)
and, on a hosted server, its copies looked for (each visitor's own version of it then finds them in
the cache). Meanwhile this thread imports TensorFlow and Keras: both are mostly the interpreter's
work, so in one process they would take turns on its lock, while two processes use two cores. Then
the default training on the sample is planned as the Train page plans it
(`training.training_plan`: the scan, the sample's version 1 where versions are shared, the leakage
check's image hashes, the default model built) and the augmentation preview's layers run once
(Keras's first-call costs). Everything it makes lives where the pages look for it: the cache
folder, the dataset versions folder, the imported modules. Last, what the imports made is frozen
out of the garbage collector's walks (`training.memory.freeze_long_lived`), so the full collection
that follows each training costs milliseconds instead of a quarter of a second.

A page that needs TensorFlow waits for a running warm-up (`wait_for_warm_up`) rather than working
beside it: two threads importing TensorFlow at once can stop each other in Python's import locks
(TensorFlow's `__init__` imports Keras, and Keras imports TensorFlow), and both would pay for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from cnnlab.common.background import submit

# The data process takes seconds; one still running after this long is stuck, and every page but
# Home waits for the warm-up, so it is stopped and its work done in the warm-up's thread.
DATA_TIMEOUT_S = 300.0
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
    """Prepare the sample's data in a process of its own while this thread imports TensorFlow, then
    plan the default training on the sample, run the augmentation preview's layers once and freeze
    what the imports made. Returns the seconds each step took ("import"; "data": the wait for the data
    process beyond the import, or its work done here should it have failed; "plan", "preview", "freeze").

    The data process is a plain `python -m`, not `multiprocessing`: a process started with "spawn"
    from inside a Streamlit script run re-runs the app script (Streamlit swaps in its own `__main__`
    module), which would start a warm-up of its own, and so on. Should it fail, not start or hang, this
    thread does its work itself and meets any error there, as the page would.
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    try:
        data: subprocess.Popen[bytes] | None = _start_data_process(cache, duplicates=datasets is None)
    except OSError:  # no interpreter to start (an embedded Python): the work is done here below
        data = None
    import keras  # noqa: F401 - imports TensorFlow too: the slow part of every page that trains

    seconds["import"] = time.perf_counter() - start
    start = time.perf_counter()
    if data is None or _wait(data) != 0:
        prepare_data(cache, duplicates=datasets is None)  # it failed, did not start or hung: its work, here
    seconds["data"] = time.perf_counter() - start

    from cnnlab.data.sample import sample_dir
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.plan import training_plan

    start = time.perf_counter()
    sample = sample_dir(cache)
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
    from cnnlab.training.memory import freeze_long_lived

    start = time.perf_counter()
    freeze_long_lived()  # before any training: pages that need TensorFlow wait for this warm-up to end
    seconds["freeze"] = time.perf_counter() - start
    return seconds


def prepare_data(cache: Path, duplicates: bool) -> None:
    """Generate the built-in sample into `cache` and, with `duplicates` (a hosted server, where each
    visitor makes a version of the sample of their own, whose copies the Data and Train pages look
    for), hash and pair its images into the cache once for all of them. Imports no TensorFlow."""
    from cnnlab.data.sample import sample_dir

    sample = sample_dir(cache)
    if duplicates:
        from cnnlab.data.duplicates import prepare
        from cnnlab.data.scanning import scan

        report = scan(sample, cache=cache)
        prepare([report.path_of(name) for name in report.files], cache)


def _start_data_process(cache: Path, duplicates: bool) -> subprocess.Popen[bytes]:
    """`prepare_data` in a process of its own; its output is dropped (a failure is met again by the warm-up).

    It starts in the folder that holds this `cnnlab`, so that `-m` finds it where the app was started
    with `streamlit run` from anywhere, without installing the package."""
    command = [sys.executable, "-m", "cnnlab.server.warmup", str(Path(cache).resolve())]
    if duplicates:
        command.append("--duplicates")
    return subprocess.Popen(
        command,
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(data: subprocess.Popen[bytes]) -> int | None:
    """The data process's exit status, or None when it ran past `DATA_TIMEOUT_S` (it is then killed)."""
    try:
        return data.wait(timeout=DATA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        data.kill()
        data.wait()
        return None


if __name__ == "__main__":
    if hasattr(os, "nice"):
        os.nice(10)  # give way to the server: a page being sent meanwhile comes first
    prepare_data(Path(sys.argv[1]), duplicates="--duplicates" in sys.argv[2:])
