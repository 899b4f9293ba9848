"""Four explanations of one prediction, on one scale: Grad-CAM, integrated gradients, occlusion and SmoothGrad.

Every map is float32 (H, W) at the image's size, made non-negative and divided by its 99th
percentile, then clipped to [0, 1] (as the PAIR saliency library shows gradient maps), so the
four can share one colour bar. Integrated gradients, SmoothGrad and occlusion each run their
images as one batch (interpolated, noisy or occluded copies) rather than one image at a time.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.analysis.explain import _check_class_index, _check_image, _logit_layer, _logits, grad_cam

METHODS = ("gradcam", "integrated_gradients", "occlusion", "smoothgrad")
LABELS = {
    "gradcam": "Grad-CAM",
    "integrated_gradients": "Integrated gradients",
    "occlusion": "Occlusion",
    "smoothgrad": "SmoothGrad",
}
# What each map measures and when to trust it, in one line (shown under each map and by the CLI).
NOTES = {
    "gradcam": "Which regions of the last conv layer's feature maps raise the class score; coarse "
    "(the layer's resolution) but tied to the model: trust it when the randomisation check changes it.",
    "integrated_gradients": "How much each pixel, brought up from a black image, adds to the class score; "
    "sharp and complete, but can echo the image's edges: trust it when the randomisation check changes it.",
    "occlusion": "How much the class score drops when a grey patch hides each region; model-agnostic and easy "
    "to read, but blind to things smaller than the patch or that only matter together.",
    "smoothgrad": "How sensitive the class score is to each pixel, averaged over noisy copies; less speckled "
    "than one gradient, but sensitivity is not evidence: trust it when the randomisation check changes it.",
}
IG_STEPS = 32
SMOOTHGRAD_SAMPLES = 24
SMOOTHGRAD_NOISE = 0.15  # noise standard deviation, as a fraction of the 0-255 pixel range
# Copies per model call. Whole batches (32 path points, 24 noisy copies, 64 occluded copies) made the
# four maps of a demo image grow the process by 81 MB against 31 MB in these chunks, for 10-30%
# more time once traced (bench/README.md): the hosted server's peak is what it cannot spare.
GRADIENT_BATCH = 8
OCCLUSION_BATCH = 16
PERCENTILE = 99.0


@dataclass(frozen=True)
class Explanation:
    """One method's map of one image for one class, and how long it took."""

    method: str
    class_index: int
    heatmap: np.ndarray  # float32 (H, W) in [0, 1]
    seconds: float

    @property
    def label(self) -> str:
        """The method's display name."""
        return LABELS[self.method]

    @property
    def note(self) -> str:
        """What the map measures and when to trust it, in one line."""
        return NOTES[self.method]


def check_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    """The methods asked for, in METHODS order without repeats; "all" (alone or among them) means all four."""
    asked = [methods] if isinstance(methods, str) else list(methods)
    if not asked:
        raise ValueError(f"Name at least one explanation method, one of {METHODS} or 'all'. Received: methods=[]")
    for method in asked:
        if method != "all" and method not in METHODS:
            raise ValueError(
                f"Unknown explanation method; use one of {', '.join(METHODS)} or all. Received: method={method!r}"
            )
    return METHODS if "all" in asked else tuple(m for m in METHODS if m in asked)


def check_method(method: str) -> str:
    """`method` when it names one of METHODS, else a one-line ValueError listing them."""
    if method not in METHODS:
        raise ValueError(f"Unknown explanation method; use one of {', '.join(METHODS)}. Received: method={method!r}")
    return method


def class_index_of(class_names: Sequence[str], name: str) -> int:
    """The index of the class called `name`, or a one-line ValueError listing the classes."""
    if name not in class_names:
        raise ValueError(
            f"Unknown class; the model's classes are {', '.join(class_names)}. Received: class_name={name!r}"
        )
    return list(class_names).index(name)


def predicted_class(model, image: np.ndarray) -> int:
    """The class the model predicts for `image` (raw 0-255 pixels shaped like the model input)."""
    forward, _, threshold = _functions(model)
    scores = np.asarray(forward(_check_image(model, image)[np.newaxis]))[0]
    # A single unit: its logit's boundary is 0, a sigmoid probability's (when not undone) 0.5.
    return int(scores[0] >= threshold) if scores.shape[-1] == 1 else int(np.argmax(scores))


def explain(
    model, image: np.ndarray, method: str = "gradcam", class_index: int | None = None, *, seed: int = 0
) -> np.ndarray:
    """`method`'s map of `image` for `class_index` (None: the predicted class), float32 (H, W) in [0, 1].

    `image` holds raw 0-255 pixels (H, W, C) as the model expects. `seed` fixes SmoothGrad's noise.
    """
    check_method(method)
    pixels = _check_image(model, image)
    class_index = _check_class_index(model, class_index)
    index = predicted_class(model, pixels) if class_index is None else class_index
    if method == "gradcam":
        raw = grad_cam(model, pixels, index)
    elif method == "integrated_gradients":
        raw = _integrated_gradients(model, pixels, index)
    elif method == "occlusion":
        raw = _occlusion(model, pixels, index)
    else:
        raw = _smoothgrad(model, pixels, index, seed)
    return normalise(raw)


def explain_image(
    model,
    image: np.ndarray,
    methods: str | Sequence[str] = METHODS,
    class_index: int | None = None,
    *,
    seed: int = 0,
) -> list[Explanation]:
    """Each of `methods` (or "all") explaining `image` for one class (None: the predicted class), timed."""
    chosen = check_methods(methods)
    pixels = _check_image(model, image)
    class_index = _check_class_index(model, class_index)
    index = predicted_class(model, pixels) if class_index is None else class_index
    found = []
    for method in chosen:
        start = time.perf_counter()
        heatmap = explain(model, pixels, method, index, seed=seed)
        found.append(Explanation(method, index, heatmap, time.perf_counter() - start))
    return found


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """The one scale every method shares: non-negative, divided by its 99th percentile, clipped to [0, 1]."""
    values = np.nan_to_num(np.maximum(np.asarray(heatmap, dtype=np.float32), 0.0))
    top = float(np.percentile(values, PERCENTILE)) if values.size else 0.0
    if top <= 0.0:
        top = float(values.max()) if values.size else 0.0
    if top <= 0.0:
        # No evidence for the class anywhere: an all-zero map says exactly that.
        return np.zeros_like(values, dtype=np.float32)
    return np.clip(values / top, 0.0, 1.0).astype(np.float32)


def _integrated_gradients(model, pixels: np.ndarray, index: int, steps: int = IG_STEPS) -> np.ndarray:
    """|sum over channels of (image - black) x the mean gradient along the straight path from black|.

    The path's points (midpoints of `steps` equal parts) go through the model as one batch.
    """
    alphas = ((np.arange(steps, dtype=np.float32) + 0.5) / steps)[:, None, None, None]
    grads = _gradients(model, alphas * pixels[np.newaxis], index)
    return np.abs((pixels * grads.mean(axis=0)).sum(axis=-1))


def _smoothgrad(model, pixels: np.ndarray, index: int, seed: int, samples: int = SMOOTHGRAD_SAMPLES) -> np.ndarray:
    """|sum over channels of the mean gradient over noisy copies| (Smilkov et al. 2017), one batch."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, SMOOTHGRAD_NOISE * 255.0, (samples, *pixels.shape)).astype(np.float32)
    grads = _gradients(model, pixels[np.newaxis] + noise, index)
    return np.abs(grads.mean(axis=0).sum(axis=-1))


def occlusion_patch(height: int, width: int) -> tuple[int, int]:
    """(patch side, stride) for an image: an eighth of its shorter side (at least 2), moved by half a patch."""
    patch = max(2, round(min(height, width) / 8))
    return patch, max(1, patch // 2)


def _occlusion(model, pixels: np.ndarray, index: int) -> np.ndarray:
    """Mean drop of the class score over the patches (filled with the image's mean colour) covering each pixel."""
    height, width = pixels.shape[:2]
    patch, stride = occlusion_patch(height, width)
    tops = _starts(height, patch, stride)
    lefts = _starts(width, patch, stride)
    places = [(top, left) for top in tops for left in lefts]
    scores_function = _functions(model)[0]
    base = _class_scores(np.asarray(scores_function(pixels[np.newaxis])), index)[0]
    fill = pixels.mean(axis=(0, 1))
    drops = np.empty(len(places), dtype=np.float32)
    for start in range(0, len(places), OCCLUSION_BATCH):
        chunk = places[start : start + OCCLUSION_BATCH]
        batch = np.repeat(pixels[np.newaxis], len(chunk), axis=0)
        for row, (top, left) in enumerate(chunk):
            batch[row, top : top + patch, left : left + patch] = fill
        drops[start : start + len(chunk)] = base - _class_scores(np.asarray(scores_function(batch)), index)
    total = np.zeros((height, width), dtype=np.float32)
    counts = np.zeros((height, width), dtype=np.float32)
    for drop, (top, left) in zip(drops, places, strict=True):
        total[top : top + patch, left : left + patch] += drop
        counts[top : top + patch, left : left + patch] += 1.0
    return total / np.maximum(counts, 1.0)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)  # the last patch reaches the edge
    return starts


def _gradients(model, batch: np.ndarray, index: int) -> np.ndarray:
    """Each copy's gradient of the class score, `GRADIENT_BATCH` copies per call."""
    import tensorflow as tf

    gradients, class_index = _functions(model)[1], tf.constant(index, dtype=tf.int32)
    parts = []
    for start in range(0, len(batch), GRADIENT_BATCH):
        chunk = tf.convert_to_tensor(batch[start : start + GRADIENT_BATCH], dtype=tf.float32)
        parts.append(np.asarray(gradients(chunk, class_index), dtype=np.float32))
    return np.concatenate(parts)


def _class_scores(scores: np.ndarray, index: int) -> np.ndarray:
    """Each row's score for class `index`; a single sigmoid unit scores class 1, its negation class 0."""
    if scores.shape[-1] == 1:
        return scores[:, 0] if index == 1 else -scores[:, 0]
    return scores[:, index]


# One pair of traced functions per model, dropped with the model (they hold its layers, not the model).
_traced: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _functions(model):
    """(scores(pixels) -> (N, K) logits or outputs, gradients(pixels, class_index) -> d score / d pixels,
    a single unit's decision threshold)."""
    with _lock:
        if model not in _traced:
            _traced[model] = _trace(model)
        return _traced[model]


def _trace(model):
    import keras
    import tensorflow as tf

    head = _logit_layer(model)
    body = keras.Model(model.inputs, head.input if head is not None else model.outputs[0])

    def scores(pixels):
        # training=False keeps augmentation and dropout layers still; 16-bit models are read in float32.
        out = tf.cast(body(pixels, training=False), tf.float32)
        return _logits(head, out) if head is not None else out

    @tf.function(reduce_retracing=True)
    def forward(pixels):
        return scores(tf.cast(pixels, tf.float32))

    @tf.function(reduce_retracing=True)
    def gradients(pixels, class_index):
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            out = scores(pixels)
            if out.shape[-1] == 1:
                chosen = tf.where(class_index == 1, out[:, 0], -out[:, 0])
            else:
                chosen = tf.gather(out, class_index, axis=1)
            # The copies are independent, so the gradient of their sum is each copy's own gradient.
            total = tf.reduce_sum(chosen)
        return tape.gradient(total, pixels)

    return forward, gradients, 0.0 if head is not None else 0.5
