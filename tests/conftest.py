"""Shared fixtures: isolated cache and models folders, and tiny class-folder datasets of real images."""

from __future__ import annotations

import http.server
import os
import threading
from functools import partial
from pathlib import Path

# Quiet TensorFlow's C++ start-up logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from helpers import QuietHandler, tiny_model_config, tiny_train_config, write_dataset


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own cache and run store, never the user's or the repository's."""
    cache, models = tmp_path / "cnnlab-cache", tmp_path / "cnnlab-models"
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    return cache, models


@pytest.fixture(scope="session")
def app_cache(tmp_path_factory):
    """One cache folder for every app test, so the built-in sample is generated once."""
    return tmp_path_factory.mktemp("app-cache")


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
    from cnnlab.runs import RunStore
    from cnnlab.train import train

    base = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE_DIR", str(base / "cache"))
        mp.setenv("CNNLAB_MODELS_DIR", str(base / "models"))
        data_dir = write_dataset(base / "data")
        epochs, batches = [], []
        run = train(
            data_dir,
            tiny_model_config(),
            tiny_train_config(),
            store=RunStore(base / "models", include_demo=False),
            on_epoch=epochs.append,
            on_batch=batches.append,
            name="shared tiny run",
        )
    return {"run": run, "data_dir": data_dir, "epochs": epochs, "batches": batches, "base": base}


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
