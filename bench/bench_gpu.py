"""The default training on an accelerator: float32 against mixed precision, side by side.

Builds CNN Lab's default model (`cnnlab.model.build_model`, its augmentation applied to each
epoch's images as training applies it) and trains it on the built-in sample with the default epochs and batch
size, once per precision and repeat, interleaved (float32, mixed_float16, mixed_bfloat16, float32,
...) so drifting machine speed hits every side. Prints each run's median seconds per epoch
(the first epoch, which compiles, left out), images per second, test accuracy, and per precision
the median speed ratio against float32.

It feeds NumPy arrays to `model.fit` instead of CNN Lab's tf.data pipeline, so it also runs on
Keras's JAX backend (`KERAS_BACKEND=jax`) where TensorFlow with CUDA is not installed: it measures
the model's training on the device, not the input pipeline. Measures and prints; asserts nothing.

    python -m bench.bench_gpu [--epochs 10] [--repeats 3] [--batch-size 32] [--precisions float32 mixed_float16 ...]
                              [--backbone mobilenet_v3_large --image-size 224 --per-class 200]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.sample import DEFAULT_NUM_PER_CLASS, SAMPLE_CLASSES, write_sample
from cnnlab.model import POLICIES, ModelConfig, build_model
from cnnlab.model.augment import augmentation_model
from cnnlab.model.backbones import BACKBONE_NAMES, NO_BACKBONE, RANDOM_WEIGHTS
from cnnlab.training.engine import TrainConfig

TEST_SHARE = 0.2


def device_line() -> str:
    """The Keras backend and the device it trains on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = ", ".join(d.device_kind for d in jax.devices())
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        devices = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
        devices = devices or "CPU"
    else:
        devices = "see backend"
    return f"Keras {keras.__version__} on {backend} ({devices}), Python {platform.python_version()}"


def load_sample(root: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sample's images as uint8 arrays, split into train and test by a seeded shuffle."""
    images, labels = [], []
    for index, name in enumerate(SAMPLE_CLASSES):
        for path in sorted((root / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(index)
    x, y = np.stack(images), np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - TEST_SHARE))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def train_once(
    data, config: ModelConfig, precision: str, epochs: int, batch_size: int, seed: int
) -> tuple[float, float]:
    """Train the default model once; return (median seconds per epoch after the first, test accuracy).

    Each epoch's images are augmented before the epoch and only `fit` is timed: CNN Lab augments
    in its input pipeline, and Keras runs a model holding RandomZoom or RandomTranslation without
    XLA (`supports_jit` is False for them), which would time the wrong thing.
    """
    import keras

    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(seed)
    model = build_model(config, len(SAMPLE_CLASSES), precision)
    augment = augmentation_model(config)
    pixels = x_train.astype("float32")
    seconds = []
    for epoch in range(epochs):
        epoch_pixels = keras.ops.convert_to_numpy(augment(pixels, training=True)) if augment else pixels
        start = time.perf_counter()
        model.fit(epoch_pixels, y_train, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        seconds.append(time.perf_counter() - start)
    probabilities = model.predict(x_test.astype("float32"), batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == y_test))
    return statistics.median(seconds[1:] or seconds), accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--precisions", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--backbone", choices=BACKBONE_NAMES, default=NO_BACKBONE, help="random weights (no network)")
    parser.add_argument("--image-size", type=int, default=ModelConfig().image_size[0])
    parser.add_argument("--per-class", type=int, default=DEFAULT_NUM_PER_CLASS)
    args = parser.parse_args()
    size = (args.image_size, args.image_size)
    config = ModelConfig(image_size=size, backbone=args.backbone, backbone_weights=RANDOM_WEIGHTS)
    print(device_line())
    print(f"model: backbone {args.backbone}, {args.image_size} px, batch size {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample(Path(tmp) / "sample", num_per_class=args.per_class, image_size=args.image_size)
        data = load_sample(sample, seed=0)
    print(f"built-in sample: {len(data[1])} training and {len(data[3])} test images of {data[0].shape[1:]}")
    seconds: dict[str, list[float]] = {p: [] for p in args.precisions}
    for repeat in range(args.repeats):
        for precision in args.precisions:
            epoch_s, accuracy = train_once(data, config, precision, args.epochs, args.batch_size, seed=repeat + 1)
            seconds[precision].append(epoch_s)
            rate = len(data[1]) / epoch_s
            print(
                f"repeat {repeat + 1} {precision:15s} {epoch_s:7.3f} s/epoch {rate:9.0f} img/s test acc {accuracy:.3f}"
            )
    base = statistics.median(seconds[args.precisions[0]])
    for precision in args.precisions:
        median = statistics.median(seconds[precision])
        print(f"{precision:15s} median {median:7.3f} s/epoch, {base / median:5.2f}x the speed of {args.precisions[0]}")


if __name__ == "__main__":
    main()
