"""Checks that an explanation explains the model: cascading randomisation and masking what the map shows.

Randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"): on a copy of the model, the
weights of the classifier, then of each layer below it in turn, are re-drawn at random, and each
map is recomputed; a map that keeps a high Spearman rank correlation with the trained model's map
does not depend on what the model learned. Masking ("what it saw"): on test images, hiding the
map's top pixels should hurt accuracy more than hiding a region of the same shape elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.analysis.explain import _check_class_index, _check_image
from cnnlab.analysis.saliency import METHODS, check_method, check_methods, explain, predicted_class

if TYPE_CHECKING:
    from cnnlab.runs.store import Run

# A map whose rank correlation with the trained model's map stays at or above this once every layer
# is random does not explain this model (Adebayo et al. read their figures the same way).
SIMILAR = 0.5
MAX_STEPS = 8
# Masking the map's region must cost at least this much more accuracy than a random region.
MARGIN = 0.05


@dataclass(frozen=True)
class RandomisationStep:
    """The maps after re-drawing every layer from the top down to `layer`: each method's Spearman
    rank correlation with the trained model's map."""

    layer: str
    correlations: dict[str, float]


@dataclass(frozen=True)
class RandomisationCheck:
    """Cascading randomisation of one image's maps for one class, step by step."""

    class_index: int
    methods: tuple[str, ...]
    steps: tuple[RandomisationStep, ...]

    def final(self, method: str) -> float:
        """`method`'s rank correlation once every layer is random."""
        return self.steps[-1].correlations[method]

    def explains(self, method: str) -> bool:
        """Whether `method`'s map changed (correlation below SIMILAR) once the model was random."""
        return self.final(method) < SIMILAR

    def verdict(self, method: str) -> str:
        """One line: does the map depend on the trained weights?"""
        if self.explains(method):
            return f"depends on the trained weights (rank correlation {self.final(method):.2f} once all are random)"
        return (
            f"not explaining this model: the map stays similar with random weights "
            f"(rank correlation {self.final(method):.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with each method's verdict."""
        return {
            "class_index": self.class_index,
            "steps": [asdict(step) for step in self.steps],
            "verdicts": {m: {"explains": self.explains(m), "verdict": self.verdict(m)} for m in self.methods},
        }


@dataclass(frozen=True)
class MaskingCheck:
    """Accuracy on test images as they are, with the map's top pixels hidden, and with as many hidden elsewhere."""

    method: str
    fraction: float
    num_images: int
    accuracy: float
    map_masked_accuracy: float
    random_masked_accuracy: float

    @property
    def points_at_evidence(self) -> bool:
        """Whether hiding the map's region hurt accuracy more (by MARGIN) than hiding a random one."""
        return self.map_masked_accuracy <= self.random_masked_accuracy - MARGIN

    @property
    def verdict(self) -> str:
        """One line on what the numbers say."""
        if self.points_at_evidence:
            return "the map points at what the model uses: hiding its region hurts more than hiding a random one"
        return "no clear sign the map points at what the model uses: hiding its region hurts no more than a random one"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the verdict."""
        return {**asdict(self), "points_at_evidence": self.points_at_evidence, "verdict": self.verdict}


def randomisation_check(
    model,
    image: np.ndarray,
    methods: str | Sequence[str] = METHODS,
    class_index: int | None = None,
    *,
    seed: int = 0,
    max_steps: int = MAX_STEPS,
) -> RandomisationCheck:
    """Cascading randomisation of `image`'s maps for `class_index` (None: the trained model's prediction).

    Works on a copy of `model` (the model itself is never changed): each step re-draws one more
    layer's weights, from the output down, with the layer's own initializer (or a normal of the
    weights' own spread), seeded by `seed`. A model with more weighted layers than `max_steps`
    (a backbone) is re-drawn in `max_steps` groups of neighbouring layers.
    """
    chosen = check_methods(methods)
    pixels = _check_image(model, image)
    class_index = _check_class_index(model, class_index)
    index = predicted_class(model, pixels) if class_index is None else class_index
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int. Received: max_steps={max_steps!r}")
    trained = {m: explain(model, pixels, m, index, seed=seed) for m in chosen}
    copy = _copy(model)
    layers = list(reversed(_weighted_layers(copy)))
    groups = [list(g) for g in np.array_split(np.arange(len(layers)), min(max_steps, len(layers))) if len(g)]
    rng = np.random.default_rng(seed)
    steps = []
    for group in groups:
        for i in group:
            _redraw(layers[i][1], rng)
        correlations = {m: spearman(trained[m], explain(copy, pixels, m, index, seed=seed)) for m in chosen}
        steps.append(RandomisationStep(layers[group[-1]][0], correlations))
    return RandomisationCheck(index, chosen, tuple(steps))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' pixels (ties share their mean rank); 0.0 when either is constant."""
    x, y = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    # A constant map (an all-zero Grad-CAM of a random model) shares no ordering with any other.
    return float((x * y).sum() / norm) if norm > 0 else 0.0


def masking_check(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    method: str = "gradcam",
    fraction: float = 0.15,
    *,
    seed: int = 0,
) -> MaskingCheck:
    """Accuracy on `images` (raw pixels, N x model input) with `fraction` of each image's pixels hidden.

    The hidden pixels are the map's top `fraction` for the predicted class, or the same shape
    moved to a random place (wrapping round the edges); hidden pixels take the image's mean colour.
    """
    check_method(method)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(
            f"fraction must be a number between 0 and 1 (the share of pixels hidden). Received: fraction={fraction!r}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(labels) != len(images):
        raise ValueError(
            "Give one label per image and at least one image. "
            f"Received: len(images)={len(images)}, len(labels)={len(labels)}"
        )
    batch: np.ndarray = np.stack([_check_image(model, image) for image in images])
    rng = np.random.default_rng(seed)
    height, width = int(batch.shape[1]), int(batch.shape[2])
    keep = max(1, round(fraction * height * width))
    map_masked, random_masked = batch.copy(), batch.copy()
    for i, pixels in enumerate(batch):
        heatmap = explain(model, pixels, method, seed=seed)
        flat = np.zeros(height * width, dtype=bool)
        flat[np.argsort(-heatmap, axis=None, kind="stable")[:keep]] = True
        mask = flat.reshape(height, width)
        moved = np.roll(mask, (int(rng.integers(height)), int(rng.integers(width))), axis=(0, 1))
        fill = pixels.mean(axis=(0, 1))
        map_masked[i][mask] = fill
        random_masked[i][moved] = fill
    return MaskingCheck(
        method,
        float(fraction),
        len(batch),
        _accuracy(model, batch, labels),
        _accuracy(model, map_masked, labels),
        _accuracy(model, random_masked, labels),
    )


def run_masking_check(
    run: Run,
    model,
    *,
    cache: Path,
    method: str = "gradcam",
    fraction: float = 0.15,
    max_images: int = 64,
    seed: int = 0,
) -> MaskingCheck:
    """`masking_check` on up to `max_images` of the run's test images (chosen with `seed`)."""
    from cnnlab.analysis.evaluate import open_split

    with open_split(run, cache=cache) as (prepared, parts):
        test = parts["test"]
        if len(test) == 0:
            raise ValueError(f"Run '{run.name}' has no test images left in its dataset. Received: run={run.id!r}")
        chosen = np.sort(np.random.default_rng(seed).permutation(test)[:max_images])
        images, labels = np.asarray(prepared.images[chosen]), np.asarray(prepared.labels[chosen])
    return masking_check(model, images, labels, method, fraction, seed=seed)


def _accuracy(model, batch: np.ndarray, labels: np.ndarray) -> float:
    from cnnlab.analysis.evaluate import class_probabilities

    probabilities = class_probabilities(model.predict(batch, batch_size=64, verbose=0))
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    # Tied values share the mean of their ranks.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def _copy(model):
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _weighted_layers(model) -> list[tuple[str, Any]]:
    """Layers with float weights in graph order, a nested model's own layers named "model/layer"."""
    import keras

    found = []
    for layer in model.layers:
        inner = [(f"{layer.name}/{i.name}", i) for i in layer.layers] if isinstance(layer, keras.Model) else []
        for name, candidate in inner or [(layer.name, layer)]:
            if any(_is_float(v) for v in candidate.weights):
                found.append((name, candidate))
    return found


def _redraw(layer, rng: np.random.Generator) -> None:
    """New random values for every float weight of `layer`: its own initializer, seeded, or a normal of the same spread."""
    import keras

    for variable in layer.weights:
        if not _is_float(variable):
            continue
        shape = tuple(variable.shape)
        initializer = getattr(layer, f"{variable.name}_initializer", None)
        if isinstance(initializer, keras.initializers.Initializer):
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = int(rng.integers(2**31 - 1))
            values = np.asarray(type(initializer).from_config(config)(shape, dtype="float32"))
        else:
            spread = float(np.std(np.asarray(variable))) or 0.05
            values = rng.normal(0.0, spread, shape)
        variable.assign(values.astype(variable.dtype))


def _is_float(variable) -> bool:
    return "float" in str(variable.dtype)
