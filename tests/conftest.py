"""Shared fixtures: no settings from the shell, isolated cache and models folders, and tiny
class-folder datasets of real images."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import threading
from functools import partial
from pathlib import Path

# Quiet TensorFlow's C++ start-up logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from cnnlab.catalog import CATALOG, CatalogEntry

CLASS_COLORS = {
    "cats": (200, 40, 40),
    "dogs": (40, 200, 40),
    "owls": (40, 40, 200),
}


@pytest.fixture(scope="session", autouse=True)
def no_settings_from_the_shell():
    """A developer's own `CNNLAB_*` settings (`CNNLAB_HOSTED=1`, `CNNLAB_MODELS_DIR`...) reach no test.

    Library calls take their folders and limits as arguments; a test that starts the app or the
    CLI sets what it needs. The CI switches `CNNLAB_REQUIRE_*` stay: they speak to the tests.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("CNNLAB_") and not n.startswith("CNNLAB_REQUIRE_")]:
            mp.delenv(name)
        yield


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
    from cnnlab.runs import RunStore

    return RunStore(isolated_dirs[1], include_demo=False)


def image_bytes(array: np.ndarray, fmt: str = "PNG", **save_args) -> bytes:
    """Encode a uint8 array with Pillow."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **save_args)
    return buf.getvalue()


def class_image(color: tuple[int, int, int], rng: np.random.Generator, size=(32, 32)) -> np.ndarray:
    """A noisy image whose colour tells its class, so a tiny model can learn something."""
    height, width = size
    noise = rng.integers(-40, 41, size=(height, width, 3))
    return np.clip(np.asarray(color) + noise, 0, 255).astype(np.uint8)


def write_dataset(
    root: Path,
    classes=("cats", "dogs", "owls"),
    per_class: int = 20,
    size=(32, 32),
    seed: int = 0,
    ext: str = ".png",
) -> Path:
    """Write `per_class` real images for each class sub-folder of `root` and return `root`."""
    rng = np.random.default_rng(seed)
    for _i, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        color = CLASS_COLORS.get(name, tuple(int(v) for v in rng.integers(0, 256, 3)))
        fmt = "JPEG" if ext.lower() in (".jpg", ".jpeg") else "PNG"
        for j in range(per_class):
            (folder / f"{name}_{j:03d}{ext}").write_bytes(image_bytes(class_image(color, rng, size), fmt))
    return root


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


def tiny_model_config(**overrides):
    """The smallest useful model: 32x32, one conv block of 4 filters, dense 8, no augmentation."""
    from cnnlab.model import ModelConfig

    settings = dict(
        image_size=(32, 32), conv_blocks=1, filters=4, dense_units=8, dropout=0.0, flip="none", rotation=0.0
    )
    settings.update(overrides)
    return ModelConfig(**settings)


def tiny_train_config(**overrides):
    from cnnlab.train import TrainConfig

    settings = dict(epochs=2, batch_size=8, patience=0, seed=7)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One completed 2-epoch run on a 3-class dataset, shared (read-only) by several test files."""
    from cnnlab.runs import RunStore
    from cnnlab.train import train

    base = tmp_path_factory.mktemp("trained")
    data_dir = write_dataset(base / "data")
    epochs, batches = [], []
    run = train(
        data_dir,
        tiny_model_config(),
        tiny_train_config(),
        store=RunStore(base / "models", include_demo=False),
        cache=base / "cache",
        on_epoch=epochs.append,
        on_batch=batches.append,
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


def small_cnn(
    num_classes: int, shape=(32, 32, 3), augment: bool = False, dropout: float = 0.0, seed: int | None = None
):
    """A hand-built two-conv Functional model (not from cnnlab.model), for explain and export tests.

    With `augment`, random flip and rotation sit inside the model as in models saved before
    augmentation moved to the training pipeline (the demo model has them), where they must not
    move the image at inference.
    """
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = inputs
    if augment:
        x = layers.RandomFlip("horizontal")(x)
        x = layers.RandomRotation(0.2)(x)
    x = layers.Rescaling(1 / 255)(x)
    x = layers.Conv2D(8, 3, activation="relu", name="conv_1")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, activation="relu", name="conv_2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    binary = num_classes == 2
    outputs = layers.Dense(1 if binary else num_classes, activation="sigmoid" if binary else "softmax")(x)
    return keras.Model(inputs, outputs)


def random_images(n: int, shape=(32, 32, 3), seed: int = 0) -> np.ndarray:
    """`n` uint8 images of uniform noise."""
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder without logging, remembering each request's path."""

    requests: list[str] = []

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        QuietHandler.requests.append(self.path)
        super().do_GET()


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


def publish(monkeypatch, folder: Path, name: str, files: list[bytes], **changes) -> CatalogEntry:
    """Serve `files` under the entry's file names and point the entry's checksums at them."""
    entry = CATALOG[name]
    for file_name, data in zip(entry.file_names, files, strict=True):
        (folder / file_name).write_bytes(data)
    fields = {
        "file_sizes": tuple(len(d) for d in files),
        "sha256": tuple(hashlib.sha256(d).hexdigest() for d in files),
        **changes,
    }
    replaced = dataclasses.replace(entry, **fields)
    monkeypatch.setitem(CATALOG, name, replaced)
    return replaced


def mnist_npz(images: np.ndarray, labels: np.ndarray) -> bytes:
    """An `mnist.npz` as keras.datasets publishes it, half of the images for training, half for testing."""
    buffer = io.BytesIO()
    half = len(labels) // 2
    np.savez(buffer, x_train=images[:half], y_train=labels[:half], x_test=images[half:], y_test=labels[half:])
    return buffer.getvalue()


def digits(per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Random 28x28 grayscale images, `per_class` of each digit 0-9, with their labels."""
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    images = np.random.default_rng(0).integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    return images, labels
