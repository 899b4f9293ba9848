"""Inference: ranked classes for one or many images, normalised exactly as in training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cnnlab.analysis.calibration import scale_probabilities
from cnnlab.analysis.evaluate import class_probabilities, probabilities
from cnnlab.data import images
from cnnlab.model import ModelConfig

# Up to this many images are predicted in one call (Keras's default predict batch size); more are
# streamed in batches, so memory stays bounded for a large upload.
SMALL_BATCH = 32


@dataclass(frozen=True)
class Prediction:
    """One image's result: the top label and every class with its probability, best first.

    For an input that could not be read, `error` holds the one-line reason and the rest is empty.
    `calibrated`: the probabilities had the run's temperature applied (`cnnlab.analysis.calibration`).
    """

    name: str
    label: str | None = None
    confidence: float | None = None
    ranked: list[tuple[str, float]] = field(default_factory=list)
    image: np.ndarray | None = None
    error: str | None = None
    calibrated: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form (without the image)."""
        if self.error:
            return {"name": self.name, "error": self.error}
        return {
            "name": self.name,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": {k: v for k, v in self.ranked},
            "calibrated": self.calibrated,
        }


def predict(
    model,
    class_names: Sequence[str],
    config: ModelConfig,
    sources: Sequence[images.ImageSource],
    names: Sequence[str] | None = None,
    errors: str = "raise",
    tta: bool = False,
    temperature: float | None = None,
) -> list[Prediction]:
    """Predict a batch of images given as bytes, paths, file objects or PIL images.

    With a `temperature` (the run's, `Run.temperature`) the probabilities are calibrated by it and
    each `Prediction` says so; without, they are the model's own.

    With `errors="raise"` an unreadable input raises `ImageError`; with `errors="report"` it
    becomes a `Prediction` with `error` set and the other inputs are still predicted. With `tta`
    the probabilities are averaged over the run's test-time augmentation transforms
    (`cnnlab.analysis.tta`, derived from `config`), one model pass each.
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report'. Received: errors={errors!r}")
    if names is not None and len(names) != len(sources):
        raise ValueError(
            "Give one name per image, in the same order as the images, or no names. "
            f"Received: len(sources)={len(sources)}, len(names)={len(names)}"
        )
    names = list(names) if names is not None else [_name(s, i) for i, s in enumerate(sources)]
    arrays: list[np.ndarray | None] = []
    problems: list[str | None] = []
    for source, name in zip(sources, names, strict=True):
        try:
            arrays.append(
                images.load_array(source, config.image_size, config.color_mode, config.resize_mode, name=name)
            )
            problems.append(None)
        except images.ImageError as exc:
            if errors == "raise":
                raise
            arrays.append(None)
            problems.append(str(exc))
    good = [a for a in arrays if a is not None]
    probs = iter(_probabilities(model, np.stack(good), config if tta else None, temperature) if good else [])
    return [
        _ranked(name, array, next(probs), class_names, temperature is not None)
        if array is not None
        else Prediction(name, error=problem)
        for name, array, problem in zip(names, arrays, problems, strict=True)
    ]


def predictions_table(results: Sequence[Prediction], class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image predicted (inputs that failed are left out): its name as `image`, its top
    `label` and `confidence`, then each class's probability in class order as `P(<class>)`.

    The prefix keeps the columns apart whatever the classes are called (a class named `label`
    would otherwise overwrite that column).
    """
    columns = {name: f"P({name})" for name in class_names}
    rows = [
        {"image": r.name, "label": r.label, "confidence": r.confidence, **{columns[c]: p for c, p in r.ranked}}
        for r in results
        if not r.error
    ]
    return pd.DataFrame(rows, columns=["image", "label", "confidence", *columns.values()])


def _probabilities(model, batch: np.ndarray, tta_config: ModelConfig | None, temperature: float | None) -> np.ndarray:
    """The batch's class probabilities, averaged over the test-time augmentation transforms of
    `tta_config` when given, then calibrated by `temperature` when given."""
    if tta_config is None:
        probs = _model_probabilities(model, batch)
    else:
        from cnnlab.analysis.tta import tta_probabilities

        probs = tta_probabilities(lambda b: _model_probabilities(model, b), batch, tta_config)
    return probs if temperature is None else scale_probabilities(probs, temperature)


def _model_probabilities(model, batch: np.ndarray) -> np.ndarray:
    """Small batches in one `predict_on_batch` call; larger ones streamed by `model.predict`.

    `model.predict` sets up a data pipeline on every call, which costs far more than the model
    itself for a few images (about 115 ms against 3.5 ms for one 64x64 image, bench_predict.py).
    """
    if len(batch) <= SMALL_BATCH:
        return class_probabilities(model.predict_on_batch(batch.astype(np.float32)))
    return probabilities(model, batch)


def _name(source: images.ImageSource, index: int) -> str:
    described = images._describe(source)
    return described if described != "uploaded image" else f"image {index + 1}"


def _ranked(
    name: str, array: np.ndarray, probs: np.ndarray, class_names: Sequence[str], calibrated: bool
) -> Prediction:
    order = np.argsort(-probs, kind="stable")
    ranked = [(class_names[i], float(probs[i])) for i in order]
    return Prediction(name, ranked[0][0], ranked[0][1], ranked, array, calibrated=calibrated)
