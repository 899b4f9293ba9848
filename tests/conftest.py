"""Shared fixtures: no settings from the shell, isolated cache and models folders, and tiny
class-folder datasets of real images."""

from __future__ import annotations

import http.server
import os
import shutil
import sys
import tempfile
import threading
from functools import partial
from pathlib import Path

# Quiet TensorFlow's C++ start-up logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from team_servers import mlflow_server, postgres_url  # noqa: F401 - session fixtures for the team tests

from helpers import (
    QuietHandler,
    cache_with_sample,
    class_image,
    image_bytes,
    scan_components_once,
    tiny_model_config,
    tiny_train_config,
    write_dataset,
)


def pytest_configure(config):
    """Keras's home (its download cache and keras.json) is a folder of the session's own, set before
    anything imports Keras and inherited by every process a test starts: no test reads or writes ~/.keras."""
    os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="cnnlab-tests-keras-")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ["KERAS_HOME"], ignore_errors=True)


FROZEN: list[bool] = []  # [True] once this worker froze (gc.get_freeze_count() would walk every frozen object)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    """Once a test has imported TensorFlow in this worker (its fixtures torn down), what the imports
    made is frozen out of the garbage collector's walks, as the app's warm-up does: every full
    collection after the later tests' trainings then skips about half a million objects."""
    if "tensorflow" in sys.modules and not FROZEN:
        from cnnlab.training import memory

        memory.freeze_long_lived()
        FROZEN.append(True)


@pytest.fixture(scope="session", autouse=True)
def one_component_scan():
    """App sessions share one scan of the installed Streamlit components, as a server's do."""
    scan_components_once()


@pytest.fixture(scope="session", autouse=True)
def no_settings_from_the_shell():
    """A developer's own `CNNLAB_*` settings (`CNNLAB_HOSTED=1`, `CNNLAB_MODELS_DIR`...) reach no test.

    Library calls take their folders and limits as arguments; a test that starts the app or the
    CLI sets what it needs. The CI switches `CNNLAB_REQUIRE_*` stay: they speak to the tests.
    The dataset versions every CLI and app training makes go to a folder of the session's own
    (a test may set its own), never to the repository's `datasets/`. The app's start-up warm-up is
    off (`CNNLAB_WARM_UP=0`): in this process it would import TensorFlow beside the tests' own imports
    and generate the sample into whichever cache the first app test names; tests/test_warmup.py
    turns it on in processes of its own.
    """
    datasets = tempfile.mkdtemp(prefix="cnnlab-tests-datasets-")
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("CNNLAB_") and not n.startswith("CNNLAB_REQUIRE_")]:
            mp.delenv(name)
        mp.setenv("CNNLAB_DATASETS_DIR", datasets)
        mp.setenv("CNNLAB_WARM_UP", "0")
        yield
    shutil.rmtree(datasets, ignore_errors=True)


@pytest.fixture
def isolated_dirs(tmp_path):
    """A cache folder and a run store folder of the test's own: (cache, models)."""
    return tmp_path / "cnnlab-cache", tmp_path / "cnnlab-models"


@pytest.fixture
def cache_dir(isolated_dirs) -> Path:
    """The test's own cache folder (scans, decoded images, the built-in sample)."""
    return isolated_dirs[0]


@pytest.fixture
def run_store(isolated_dirs):
    """The test's own run store, without the shipped demo run."""
    from cnnlab.runs.store import RunStore

    return RunStore(isolated_dirs[1])


@pytest.fixture(scope="session")
def app_cache(tmp_path_factory):
    """One cache folder for every app test of this worker, holding a copy of the built-in sample
    drawn once for the whole run (`helpers.cache_with_sample`)."""
    return cache_with_sample(tmp_path_factory, "app-cache")


@pytest.fixture
def app(app_cache, isolated_dirs, monkeypatch):
    """A fresh session of the whole app (navigation included) with an empty run store and datasets
    folder (beside the models folder)."""
    import streamlit as st

    from helpers import start_app

    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(isolated_dirs[1]))
    st.cache_resource.clear()  # the settings an earlier test's "person" left on this server
    return start_app()


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: `make_dataset(classes=..., per_class=..., size=...)` writes a dataset under tmp_path."""
    counter = iter(range(1000))

    def factory(name: str | None = None, **kwargs) -> Path:
        return write_dataset(tmp_path / (name or f"dataset{next(counter)}"), **kwargs)

    return factory


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One completed 2-epoch run on a 3-class dataset, shared (read-only) by several test files."""
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train
    from cnnlab.training.hooks import TrainingHooks

    base = tmp_path_factory.mktemp("trained")
    data_dir = write_dataset(base / "data")
    epochs, batches = [], []
    run = train(
        data_dir,
        tiny_model_config(),
        tiny_train_config(),
        workspace=Workspace(RunStore(base / "models"), base / "cache"),
        hooks=TrainingHooks(on_epoch=epochs.append, on_batch=batches.append),
        name="shared tiny run",
    )
    return {
        "run": run,
        "data_dir": data_dir,
        "epochs": epochs,
        "batches": batches,
        "base": base,
        "cache": base / "cache",
    }


@pytest.fixture(scope="session")
def calibrated_run(tmp_path_factory):
    """A completed 2-epoch run with a temperature: its cats and dogs are the same picture, so its model
    must get some validation images wrong and has something to calibrate against (owls differ)."""
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    base = tmp_path_factory.mktemp("calibrated")
    data_dir = write_dataset(base / "data", classes=("owls",), per_class=16)
    same = image_bytes(class_image((40, 160, 40), np.random.default_rng(5)))
    for name in ("cats", "dogs"):
        (data_dir / name).mkdir()
        for i in range(16):
            (data_dir / name / f"{name}_{i:03d}.png").write_bytes(same)
    run = train(
        data_dir,
        tiny_model_config(),
        tiny_train_config(),
        workspace=Workspace(RunStore(base / "models"), base / "cache"),
        name="calibrated tiny run",
    )
    assert run.temperature is not None, "the run should have validation mistakes to fit a temperature on"
    return {"run": run, "data_dir": data_dir, "base": base, "cache": base / "cache"}


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A localhost HTTP server over `tmp_path/www`; yields (base_url, folder)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    QuietHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def deep_run(tmp_path_factory):
    """A run with two conv blocks, batch norm and flip/rotation augmentation, trained for one epoch."""
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    base = tmp_path_factory.mktemp("deep-run")
    run = train(
        write_dataset(base / "data", per_class=12),
        tiny_model_config(conv_blocks=2, batch_norm=True, flip="horizontal", rotation=0.1),
        tiny_train_config(epochs=1),
        workspace=Workspace(RunStore(base / "models"), base / "cache"),
    )
    return run, run.load_model()


@pytest.fixture
def disk_calls(monkeypatch) -> list[tuple[str, object]]:
    """What this process asks of the disk, in order, each call still made for real:
    ("fsync", (device, inode) of what was synced) and ("replace", destination path)."""
    calls: list[tuple[str, object]] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd):
        status = os.fstat(fd)
        fsync(fd)
        calls.append(("fsync", (status.st_dev, status.st_ino)))

    def recorded_replace(src, dst, **kwargs):
        replace(src, dst, **kwargs)
        calls.append(("replace", Path(dst)))

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    return calls


@pytest.fixture(scope="session")
def planted_patch():
    """A tiny model trained (once per session) where only a patch tells the classes apart.

    Grey noisy 32x32 images; class 1 has an 8x8 checkerboard in the top-left corner (rows and
    columns 4 to 11), class 0 none. Returns (model, test images, test labels, patch mask).
    """
    import keras

    from helpers import planted_patch_images, small_cnn

    rng = np.random.default_rng(0)
    images, labels, mask = planted_patch_images(200, rng)
    model = small_cnn(2, seed=0)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=10, batch_size=32, verbose=0)
    test_images, test_labels, _ = planted_patch_images(40, rng)
    return model, test_images, test_labels, mask
