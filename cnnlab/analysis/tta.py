"""Test-time augmentation (TTA): a prediction averaged over a few changed copies of each image.

The copies are fixed (not random) and label-safe for the run because they come from its own
augmentation settings (`ModelConfig.flip`, `zoom`, `translation`): the image itself; its mirror
image only where the run trained with that flip; a centre zoom by half the trained zoom range; a
shift left and right by half the trained translation range, edges reflected as in training. A run
trained without augmentation gets the image alone, so TTA changes nothing for it. Rotation and
contrast are not used (a rotated copy needs filled corners; contrast moves little). Cost: one
model pass per copy, so about N times the prediction time for N transforms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.analysis.evaluate import _EPS, open_split, probabilities
from cnnlab.runs.store import Run

if TYPE_CHECKING:
    from cnnlab.model import ModelConfig

IDENTITY = "identity"
# Each transform's name -> how it reads on screen.
TRANSFORMS = {
    IDENTITY: "the image",
    "flip_horizontal": "mirrored left-right",
    "flip_vertical": "mirrored top-bottom",
    "zoom_in": "zoomed in",
    "shift_left": "shifted left",
    "shift_right": "shifted right",
}
# Images go through the transforms this many at a time when a whole split is evaluated.
CHUNK = 256

ProbabilitiesOf = Callable[[np.ndarray], np.ndarray]


def tta_transforms(config: ModelConfig) -> tuple[str, ...]:
    """The transforms TTA uses for a run with this config: always the identity first, then only the
    ones its training augmentation allows (see the module's docstring)."""
    names = [IDENTITY]
    if config.flip in ("horizontal", "horizontal_and_vertical"):
        names.append("flip_horizontal")
    if config.flip in ("vertical", "horizontal_and_vertical"):
        names.append("flip_vertical")
    if _zoom_pixels(config) > 0:
        names.append("zoom_in")
    if _shift_pixels(config) > 0:
        names += ["shift_left", "shift_right"]
    return tuple(names)


def apply_transform(batch: np.ndarray, name: str, config: ModelConfig) -> np.ndarray:
    """`batch` (N, H, W, C) changed by transform `name`, as float32 raw pixels."""
    x = np.asarray(batch, dtype=np.float32)
    if name == IDENTITY:
        return x
    if name == "flip_horizontal":
        return x[:, :, ::-1]
    if name == "flip_vertical":
        return x[:, ::-1]
    if name == "zoom_in":
        import keras

        dy, dx = _zoom_pixels(config, axis=0), _zoom_pixels(config, axis=1)
        height, width = x.shape[1:3]
        crop = x[:, dy : height - dy, dx : width - dx]
        return np.asarray(keras.ops.convert_to_numpy(keras.ops.image.resize(crop, (height, width))), dtype=np.float32)
    if name in ("shift_left", "shift_right"):
        s = _shift_pixels(config)
        width = x.shape[2]
        if name == "shift_right":
            return np.pad(x, ((0, 0), (0, 0), (s, 0), (0, 0)), mode="reflect")[:, :, :width]
        return np.pad(x, ((0, 0), (0, 0), (0, s), (0, 0)), mode="reflect")[:, :, s:]
    raise ValueError(f"Unknown transform; expected one of {', '.join(TRANSFORMS)}. Received: name={name!r}")


def _zoom_pixels(config: ModelConfig, axis: int = 1) -> int:
    """Pixels cut from each side for the zoom: half the trained zoom range (RandomZoom's factor)."""
    return int(config.image_size[axis] * config.zoom / 2 / 2)


def _shift_pixels(config: ModelConfig) -> int:
    """Pixels of the shift: half the trained translation range, at least 1 when the run translated at all."""
    if not config.translation:
        return 0
    return max(1, round(config.image_size[1] * config.translation / 2))


def tta_probabilities(probabilities_of: ProbabilitiesOf, batch: np.ndarray, config: ModelConfig) -> np.ndarray:
    """The class probabilities of `batch` averaged over `tta_transforms(config)`; `probabilities_of`
    turns one batch of raw pixels into (N, num_classes) probabilities (the model's pass)."""
    return np.mean([probabilities_of(apply_transform(batch, n, config)) for n in tta_transforms(config)], axis=0)


@dataclass(frozen=True)
class TTAEvaluation:
    """A run's test split with and without TTA: accuracies, losses, and the seconds each pass took."""

    transforms: tuple[str, ...]
    num_images: int
    accuracy: float
    accuracy_tta: float
    loss: float
    loss_tta: float
    seconds: float
    seconds_tta: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `evaluate --tta --json` adds)."""
        return {
            "tta_transforms": list(self.transforms),
            "test_accuracy_tta": self.accuracy_tta,
            "test_loss_tta": self.loss_tta,
            "tta_test_accuracy_without": self.accuracy,
            "tta_seconds": self.seconds_tta,
            "tta_seconds_without": self.seconds,
        }


def evaluate_tta(run: Run, *, cache: Path, max_cache_mb: int | None = None) -> TTAEvaluation:
    """The run's test images predicted plainly and with TTA (one pass per transform, timed)."""
    config = run.model_config()
    names = tta_transforms(config)
    model = run.load_model()
    with open_split(run, cache=cache, max_cache_mb=max_cache_mb) as (prepared, parts):
        indices = parts["test"]
        if not len(indices):
            raise ValueError(
                f"This run has no test images to compare TTA on; train with a test split. Received: run={run.id!r}"
            )
        labels = prepared.labels[indices].astype(np.int64)
        plain: list[np.ndarray] = []
        averaged: list[np.ndarray] = []
        seconds = dict.fromkeys(names, 0.0)
        for start in range(0, len(indices), CHUNK):
            batch = np.asarray(prepared.images[indices[start : start + CHUNK]])
            per_transform = []
            for name in names:
                began = time.perf_counter()
                per_transform.append(probabilities(model, apply_transform(batch, name, config)))
                seconds[name] += time.perf_counter() - began
            plain.append(per_transform[0])
            averaged.append(np.mean(per_transform, axis=0))
    probs, probs_tta = np.concatenate(plain), np.concatenate(averaged)
    return TTAEvaluation(
        transforms=names,
        num_images=len(labels),
        accuracy=_accuracy(probs, labels),
        accuracy_tta=_accuracy(probs_tta, labels),
        loss=_loss(probs, labels),
        loss_tta=_loss(probs_tta, labels),
        seconds=seconds[IDENTITY],
        seconds_tta=sum(seconds.values()),
    )


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == labels))


def _loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0))))
