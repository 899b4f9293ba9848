"""Helpers the tests share: tiny real datasets and models, a quiet file server, app-session drivers.

Fixtures live in conftest.py; tests import these functions with `from helpers import ...`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from e2e_server import free_port
from PIL import Image

from cnnlab.data.catalog import CATALOG, CatalogEntry

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

    from cnnlab.data.versions import Dataset
    from cnnlab.runs.store import Run
    from cnnlab.server.jobs import Job
    from cnnlab.sweep import SweepSpace
    from cnnlab.team.tracking import TrackingConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = str(REPO_ROOT / "streamlit_app.py")
APP_TIMEOUT = 180

CLASS_COLORS = {
    "cats": (200, 40, 40),
    "dogs": (40, 200, 40),
    "owls": (40, 40, 200),
}


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


def scene_image(rng: np.random.Generator, size=(64, 64)) -> np.ndarray:
    """A photo-like picture: a random gradient behind a few large random shapes with soft edges (as a
    photo's are once shrunk), shaded by a smooth random texture and lightly noisy, so that two of
    them are as different as two photos are."""
    from PIL import ImageDraw, ImageFilter

    height, width = size
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    start, end = rng.integers(0, 256, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(np.cos(angle) * xs + np.sin(angle) * ys, 0, 1)[..., None]
    img = Image.fromarray((start + (end - start) * ramp).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        w, h = (rng.uniform(0.2, 0.6, 2) * (width, height)).astype(int)
        x0, y0 = int(rng.integers(-w // 2, width - w // 2)), int(rng.integers(-h // 2, height - h // 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=color)
    img = img.filter(ImageFilter.GaussianBlur(max(width, height) / 64))
    coarse = rng.integers(98, 159, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-6, 7, (height, width, 3))
    return np.clip(np.asarray(img, dtype=np.int16) + texture - 128 + noise, 0, 255).astype(np.uint8)


# The ways `altered_copy` makes a near-duplicate, besides "exact" (the same file's bytes).
NEAR_KINDS = ("reencoded", "resized", "cropped", "recoloured")


def altered_copy(array: np.ndarray, kind: str) -> tuple[bytes, str]:
    """A duplicate of the picture `array` (its file's bytes and suffix): "exact" (the same PNG bytes),
    "reencoded" (JPEG at quality 70), "resized" (to 0.7 times its sides), "cropped" (5% off its left
    and bottom edges) or "recoloured" (brighter, less contrast, hue turned by 15 degrees)."""
    from PIL import ImageEnhance

    img = Image.fromarray(array)
    width, height = img.size
    if kind == "exact":
        return image_bytes(array), ".png"
    if kind == "reencoded":
        return image_bytes(array, "JPEG", quality=70), ".jpg"
    if kind == "resized":
        img = img.resize((round(width * 0.7), round(height * 0.7)), Image.Resampling.BILINEAR)
    elif kind == "cropped":
        img = img.crop((round(width * 0.05), 0, width, round(height * 0.95)))
    elif kind == "recoloured":
        hsv = np.asarray(img.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 11) % 256  # 15 of 360 degrees
        img = ImageEnhance.Contrast(Image.fromarray(hsv, "HSV").convert("RGB")).enhance(0.85)
        img = ImageEnhance.Brightness(img).enhance(1.15)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return image_bytes(np.asarray(img)), ".png"


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


def made_dataset(datasets: Path, name: str = "shots", per_class: int = 16) -> Dataset:
    """A dataset made in CNN Lab (`versions.new_dataset`): version 2 adds `per_class` red and blue
    images, version 3 excludes every blue one, so that only version 2 can be trained on."""
    from cnnlab.data import edits, versions

    dataset = versions.new_dataset(name, ["red", "blue"], datasets)
    rng = np.random.default_rng(0)
    adds = [
        edits.Add(image_bytes(class_image(CLASS_COLORS[color], rng)), f"{label}{i}.png", label)
        for color, label in (("cats", "red"), ("owls", "blue"))
        for i in range(per_class)
    ]
    added = edits.save_version(dataset, adds)
    edits.save_version(dataset, [edits.Exclude(e.path, "not blue") for e in added.entries if e.label == "blue"])
    return dataset


# The command-line options of a tiny training: 32x32, one conv block of 4 filters, 2 epochs, no augmentation.
TINY = [
    "--image-size",
    "32",
    "--conv-blocks",
    "1",
    "--filters",
    "4",
    "--dense-units",
    "8",
    "--flip",
    "none",
    "--rotation",
    "0",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--patience",
    "0",
]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under `root` with its content hash and its time, to see that nothing changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + f"@{p.stat().st_mtime_ns}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def last_json(capsys) -> dict:
    """The JSON object a command line run in this process printed last."""
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def one_line_error(capsys) -> str:
    """The one line a command line run in this process printed on standard error (no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


NO_AUGMENTATION = {"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0}


def swap_labels(root: Path) -> list[str]:
    """Move six images of a `write_dataset` folder of cats, dogs and owls into another class's folder
    (two per class, labels swapped on purpose); their new paths relative to `root`."""
    swapped = []
    for i, (source, target) in enumerate([("cats", "dogs"), ("dogs", "owls"), ("owls", "cats")] * 2):
        path = root / source / f"{source}_{i:03d}.png"
        moved = root / target / f"swapped_{i}_{path.name}"
        path.rename(moved)
        swapped.append(f"{target}/{moved.name}")
    return swapped


def tiny_model_config(**overrides):
    """The smallest useful model: 32x32, one conv block of 4 filters, dense 8, no augmentation."""
    from cnnlab.model import ModelConfig

    settings = dict(image_size=(32, 32), conv_blocks=1, filters=4, dense_units=8, dropout=0.0, **NO_AUGMENTATION)
    settings.update(overrides)
    return ModelConfig(**settings)


def tiny_train_config(**overrides):
    from cnnlab.training.engine import TrainConfig

    # float32 unless a test asks for another precision: `auto` picks bfloat16 on CPUs that have it,
    # and tests compare saved models' scores with the training's own to 1e-4.
    settings = dict(epochs=2, batch_size=8, patience=0, seed=7, precision="float32")
    settings.update(overrides)
    return TrainConfig(**settings)


# The tiniest useful network and training, held fixed in sweeps so that each trial takes a few seconds.
TINY_SWEEP = {
    "image_size": 32,
    "conv_blocks": 1,
    "filters": 4,
    "dense_units": 8,
    "dropout": 0.0,
    **NO_AUGMENTATION,
    "batch_size": 8,
    "patience": 0,
    "seed": 7,
}


def tiny_space(params: dict, objective: str = "val_accuracy", **fixed) -> SweepSpace:
    """A search space over `params`, every other setting held at `TINY_SWEEP` (with `fixed` on top)."""
    from cnnlab.sweep import space_from_dict

    held = {name: value for name, value in {**TINY_SWEEP, **fixed}.items() if name not in params}
    return space_from_dict({"objective": objective, "params": params, "fixed": held})


def machine_settings(home: Path, tracking: TrackingConfig | None = None) -> dict[str, str]:
    """The CNNLAB_* settings of one machine of a team: its models and cache folders under `home`, the team server."""
    settings = {"CNNLAB_MODELS_DIR": str(home / "models"), "CNNLAB_CACHE_DIR": str(home / "cache")}
    if tracking is not None:
        settings.update(
            CNNLAB_TRACKING_URI=tracking.uri, CNNLAB_EXPERIMENT=tracking.experiment, CNNLAB_USER=tracking.user
        )
    return settings


def sweep_worker(
    data_dir: Path, space_file: Path, settings: dict[str, str], *args: str, cwd: Path, **popen
) -> subprocess.Popen:
    """`python -m cnnlab sweep DATA_DIR --space SPACE_FILE ARGS` started in `cwd` as a worker process with `settings`.

    The worker imports this checkout and runs TensorFlow on one thread (several workers on a small
    machine are faster than when they fight over its cores). Its output goes to pipes (text) unless
    `popen` says otherwise.
    """
    env = {
        **os.environ,
        **settings,
        "PYTHONPATH": str(REPO_ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "cnnlab", "sweep", str(data_dir), "--space", str(space_file), *args]
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen(command, cwd=cwd, env=env, **options)


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


def imagenet_unreachable(monkeypatch) -> None:
    """Point every backbone's ImageNet weights address (in this process) at a port of 127.0.0.1 nobody
    listens on, so a download fails at once as offline, with or without a network."""
    from cnnlab.model.backbones import BACKBONES

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    closed = f"http://127.0.0.1:{free_port()}/"
    for spec in BACKBONES.values():
        module = importlib.import_module(f"keras.src.applications.{spec.module}")
        name = "BASE_WEIGHT_PATH" if hasattr(module, "BASE_WEIGHT_PATH") else "BASE_WEIGHTS_PATH"
        monkeypatch.setattr(module, name, closed)


def offline_environment() -> dict[str, str]:
    """Environment variables that send a child process's every download through a proxy nobody
    answers at (a closed port of 127.0.0.1), so it fails at once as offline, with or without a network."""
    closed = f"http://127.0.0.1:{free_port()}"
    local = "127.0.0.1,localhost"
    return {
        "http_proxy": closed,
        "https_proxy": closed,
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "no_proxy": local,
        "NO_PROXY": local,
    }


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


def copied_models(run: Run, models_dir: Path) -> Path:
    """`models_dir` holding a copy of `run` (same id), for a test whose pages keep files beside a shared
    run's model (its embedding, its unfamiliar-image flag's reference), so the shared run stays as trained."""
    shutil.copytree(run.path, models_dir / run.id)
    return models_dir


def relocated_run(run: Run, data_dir: Path, models_dir: Path, run_id: str | None = None) -> Path:
    """Copy `run` into `models_dir` (as `run_id`) and its dataset folder to `data_dir`, the copy pointing at the copy.

    Returns the copied run's folder. File times are kept, so the copy has the dataset's fingerprint.
    """
    run_dir = models_dir / (run_id or run.id)
    shutil.copytree(run.path, run_dir)
    shutil.copytree(run.record.dataset.path, data_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["dataset"]["path"] = str(data_dir)
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


def validation_loss(run: Run, cache: Path) -> float:
    """The loss of the run's saved model on its validation images, computed here outside Keras's fit."""
    from cnnlab.analysis.evaluate import evaluate_prepared, open_split

    with open_split(run, cache=cache) as (prepared, parts):
        return evaluate_prepared(run.load_model(), prepared, parts["validation"]).loss


def dead_pid() -> int:
    """The id of a process of this machine that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def scan_components_once() -> None:
    """Each new AppTest session's first run scans every installed distribution for Streamlit
    components (about 0.6 s); a server scans once, as it starts. Nothing is installed while tests
    run, so every session after the first reuses the first scan."""
    from streamlit.components.v2 import manifest_scanner

    if not hasattr(manifest_scanner.scan_component_manifests, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.cache(manifest_scanner.scan_component_manifests)


def start_app() -> AppTest:
    """A new browser session of the whole app, run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch the session to `page` (a path like "pages/train.py") and run it without an exception."""
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def wait_for_job(at: AppTest, key: str, timeout: float = APP_TIMEOUT) -> Job:
    """The session's background job under `key`, once it is done."""
    job = at.session_state[key]
    deadline = time.monotonic() + timeout
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.done, f"job still {job.status} after {timeout}s"
    return job


def tiny_training(at: AppTest, epochs: int) -> None:
    """Set the Train page's sidebar to a tiny model and press Start training."""
    at.sidebar.select_slider(key="image_size").set_value(32)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(8)
    at.sidebar.select_slider(key="dense_units").set_value(16)
    at.sidebar.number_input(key="epochs").set_value(epochs)
    at.sidebar.number_input(key="patience").set_value(0)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="start-training").click().run()


def tiny_sweep(at: AppTest, trials: int, conv_blocks: tuple[int, int]) -> None:
    """Set the Sweep page to `trials` one-epoch trials over conv blocks only, at 32 px."""
    at.sidebar.number_input(key="sweep-trials").set_value(trials)
    at.sidebar.number_input(key="sweep-epochs").set_value(1)
    at.checkbox(key="use-filters").uncheck()
    at.checkbox(key="use-learning_rate").uncheck()
    at.checkbox(key="use-image_size").check()
    at.run()
    at.select_slider(key="range-conv_blocks").set_value(conv_blocks)
    at.multiselect(key="choices-image_size").set_value([32])


def wait_for_epochs(job: Job, count: int, timeout: float = APP_TIMEOUT) -> None:
    """Wait until a running job has recorded `count` epochs."""
    deadline = time.monotonic() + timeout
    while len(job.history) < count and not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(job.history) >= count, f"job {job.status} after {len(job.history)} epochs: {job.error}"


def layer_output(model, name: str, images: np.ndarray) -> np.ndarray:
    """The model's own intermediate output for a batch of raw images, by the plain Keras route."""
    import keras

    probe = keras.Model(model.inputs[0], model.get_layer(name).output)
    return np.asarray(probe(images.astype(np.float32), training=False))


def nested_model():
    """An outer model with augmentation, rescaling and a nested functional 'backbone' with a residual Add
    and a squeeze-and-excite gate.

    Stands in for a keras.applications backbone (no weights to download): returns (model, backbone).
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inner_in = keras.Input((24, 24, 3))
    x = layers.Conv2D(4, 3, padding="same", name="block1_conv")(inner_in)
    x = layers.ReLU(name="block1_relu")(x)
    x = layers.MaxPooling2D(name="block1_pool")(x)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="block2_conv")(x)
    x = layers.Add(name="block2_add")([x, y])
    x = layers.Conv2D(6, 3, strides=2, name="block3_conv")(x)
    squeeze = layers.GlobalAveragePooling2D(keepdims=True, name="block3_squeeze")(x)
    x = layers.Multiply(name="block3_excite")([x, layers.Activation("sigmoid", name="block3_gate")(squeeze)])
    x = layers.Conv2D(6, 1, name="expanded_conv_4_project")(x)
    x = layers.ReLU(name="re_lu_7")(x)
    backbone = keras.Model(inner_in, x, name="backbone")
    inputs = keras.Input((24, 24, 3))
    x = layers.RandomFlip("horizontal", name="augment_flip")(inputs)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    x = backbone(x)
    x = layers.Conv2D(5, 1, name="head_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x)), backbone


def synced(path: Path) -> tuple[str, tuple[int, int]]:
    """The `disk_calls` entry of syncing `path` (a file, as it is now, or a folder)."""
    status = path.stat()
    return "fsync", (status.st_dev, status.st_ino)


def durably_replaced(calls: list, path: Path) -> int:
    """Where in `disk_calls` `path` was put in place durably: its contents synced before the rename,
    its folder synced after it (before any later rename); fails otherwise."""
    at = calls.index(("replace", path))
    assert synced(path) in calls[:at], f"{path.name} was renamed into place before its contents were synced"
    later = calls[at + 1 :]
    renames = [i for i, call in enumerate(later) if call[0] == "replace"] + [len(later)]
    assert synced(path.parent) in later[: renames[0]], f"{path.name}'s folder was not synced after the rename"
    return at


def stall(root: Path) -> None:
    """A dataset check that outlasts any test, for time-outs; picklable, for a child process that
    has this folder on its path."""
    time.sleep(3600)


def planted_patch_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` grey noisy 32x32 RGB images, alternately without (label 0) and with (label 1) an 8x8
    checkerboard at rows and columns 4 to 11, the labels, and the patch's (32, 32) mask."""
    images = np.clip(rng.normal(120, 10, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    labels = np.arange(n) % 2
    checker = (np.indices((8, 8)).sum(axis=0) % 2) * 160 + 40
    images[labels == 1, 4:12, 4:12] = checker[..., np.newaxis]
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:12, 4:12] = True
    return images, labels, mask


def cache_with_sample(tmp_path_factory, name: str) -> Path:
    """A new cache folder holding a copy of the built-in sample, which the first test worker that
    asks for it draws once for the whole run; the others wait for it (a lock file in the folder the
    run's workers share) and copy it."""
    import fcntl

    from cnnlab.data.sample import sample_dir

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_TESTRUNUID") else base  # the run's, not the worker's
    with open(root / "sample.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sample = sample_dir(root / "shared-cache")
    cache = tmp_path_factory.mktemp(name)
    shutil.copytree(sample, cache / sample.name)
    return cache
