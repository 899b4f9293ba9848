"""Calibration: whether a model's confidence can be taken at its word, and temperature scaling to make it so.

All of it works on class probabilities (N, num_classes) as `cnnlab.analysis.evaluate.class_probabilities`
returns them, NumPy only. CNN Lab models end in a softmax (or, for two classes, one sigmoid unit,
which `class_probabilities` turns into two columns), so the logits are recovered as `log(p)`: a
softmax of `log(p)` gives `p` back, and `softmax(log(p) / T)` of the two columns `[1 - p, p]` is
`sigmoid(logit(p) / T)`, so one formula scales both kinds of model.

- `expected_calibration_error`: the gap between confidence and accuracy, averaged over
  `NUM_BINS` equal-width confidence bins weighted by their image counts (Guo et al., 2017).
- `brier_score`: the mean squared distance between the probabilities and the one-hot truth,
  summed over the classes (0 is perfect, 2 the worst; two classes give twice the binary score).
- `fit_temperature`: the one scalar T that minimises the negative log-likelihood on held-out
  (validation) images; T > 1 softens an over-confident model. Dividing every logit by the same
  positive T keeps their order, so the predicted class (and the accuracy) never changes.
- `threshold_curve` and `threshold_summary`: accuracy and coverage of the predictions at least
  so confident ("above 90% confidence, 97% right on 80% of the images").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_BINS = 10
# Temperatures searched by `fit_temperature`: far beyond any useful scaling on both sides.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# Why a run has no temperature, in words for the page and the command line.
NO_TEMPERATURE = (
    "no temperature was fitted, as the run has no validation images or its model got every one of them right "
    "(nothing to calibrate against)"
)
# Probabilities are clipped here before the log: a float32 softmax underflows to exactly 0.
_TINY = 1e-12


@dataclass(frozen=True)
class Calibration:
    """A test split's calibration: `ece` and `brier` of the model as it is, and with its fitted
    `temperature` applied (`ece_calibrated`, `brier_calibrated`); the last three are None when the
    run has no temperature (no validation images to fit one on)."""

    ece: float
    brier: float
    temperature: float | None = None
    ece_calibrated: float | None = None
    brier_calibrated: float | None = None


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's bins: for each of `NUM_BINS` equal-width confidence bins (`lower`,
    `upper`], how many images fall in it (`count`), their mean `confidence` and their `accuracy`
    (NaN for an empty bin); `ece` is the count-weighted mean gap between the two."""

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float


@dataclass(frozen=True)
class ThresholdCurve:
    """For each confidence `threshold`, the share of images predicted at least that confidently
    (`coverage`) and the accuracy on them (`accuracy`, NaN where none is)."""

    threshold: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray


def calibration_of(probs: np.ndarray, labels: np.ndarray, temperature: float | None = None) -> Calibration:
    """ECE and Brier score of test `probs` against `labels`, also after scaling by `temperature` when given."""
    probs, labels = _checked(probs, labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    ece, brier = expected_calibration_error(confidence, correct), brier_score(probs, labels)
    if temperature is None:
        return Calibration(ece, brier)
    scaled = scale_probabilities(probs, temperature)
    return Calibration(
        ece,
        brier,
        float(temperature),
        expected_calibration_error(scaled.max(axis=1), correct),
        brier_score(scaled, labels),
    )


def reliability(confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS) -> Reliability:
    """The reliability diagram's bins of predictions with top-class `confidence` and whether each was `correct`."""
    confidence, correct = _checked_predictions(confidence, correct)
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a whole number of at least 1, e.g. 10. Received: num_bins={num_bins!r}")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # Bins are (lower, upper], on the edges as drawn; a confidence of exactly 0 joins the first.
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, minlength=num_bins)
    sums = np.bincount(index, weights=confidence, minlength=num_bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, sums / count, np.nan)
        accuracy = np.where(count > 0, hits / count, np.nan)
    gaps = np.abs(np.nan_to_num(accuracy) - np.nan_to_num(mean_confidence))
    ece = float(np.sum(count * gaps) / len(confidence))
    return Reliability(edges[:-1], edges[1:], count, mean_confidence, accuracy, ece)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Expected calibration error: sum over confidence bins of (images in bin / images) * |accuracy - confidence|."""
    return reliability(confidence, correct, num_bins).ece


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the squared distance between the class probabilities and the one-hot true class."""
    probs, labels = _checked(probs, labels)
    truth = np.zeros_like(probs)
    truth[np.arange(len(labels)), labels] = 1.0
    return float(np.mean(np.sum((probs - truth) ** 2, axis=1)))


def logits_from_probabilities(probs: np.ndarray) -> np.ndarray:
    """Logits that give `probs` back through a softmax (up to a constant per row): `log(p)`, clipped above 0."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, 1.0))


def scale_probabilities(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`probs` with their logits divided by `temperature`: softmax(log(p) / T). T = 1 leaves them as they are."""
    check_temperature(temperature)
    z = logits_from_probabilities(probs) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the mean negative log-likelihood of `labels` under softmax(log(p) / T).

    The likelihood is convex in 1/T, so a golden-section search over log T finds its one minimum
    (within `MIN_TEMPERATURE`..`MAX_TEMPERATURE`, to 1e-4 relative) in about 25 vectorised steps.
    When every image is predicted right (`has_mistakes` is False) there is no minimum: the
    likelihood grows as T falls, and the fit ends at `MIN_TEMPERATURE`, making every prediction
    certain. Runs therefore fit no temperature then (`cnnlab.analysis.evaluate.fit_temperature_on`).
    """
    probs, labels = _checked(probs, labels)
    logits = logits_from_probabilities(probs)
    true_logit = logits[np.arange(len(labels)), labels]

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        z = logits / t
        top = z.max(axis=1)
        return float(np.mean(top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - true_logit / t))

    low, high = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    while high - low > 1e-4:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(np.exp((low + high) / 2.0))


def has_mistakes(probs: np.ndarray, labels: np.ndarray) -> bool:
    """Whether any image's most likely class is not its label: only then does a temperature have a best value."""
    probs, labels = _checked(probs, labels)
    return bool((probs.argmax(axis=1) != labels).any())


def threshold_curve(confidence: np.ndarray, correct: np.ndarray, num_points: int = 101) -> ThresholdCurve:
    """Coverage and accuracy of the predictions whose confidence is at least each of `num_points`
    thresholds from 0 to 1."""
    confidence, correct = _checked_predictions(confidence, correct)
    thresholds = np.linspace(0.0, 1.0, num_points)
    order = np.argsort(confidence)
    sorted_confidence, sorted_correct = confidence[order], correct[order].astype(np.float64)
    # Images at or above a threshold are a suffix of the sorted confidences.
    start = np.searchsorted(sorted_confidence, thresholds, side="left")
    kept = len(confidence) - start
    right_from = np.concatenate([np.cumsum(sorted_correct[::-1])[::-1], [0.0]])[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(kept > 0, right_from / np.maximum(kept, 1), np.nan)
    return ThresholdCurve(thresholds, kept / len(confidence), accuracy)


def threshold_summary(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> str:
    """One sentence on the predictions at least `threshold` confident: how often right, on how many images."""
    confidence, correct = _checked_predictions(confidence, correct)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"The confidence threshold must be a number from 0 to 1 (0.9 for 90%). Received: threshold={threshold!r}"
        )
    kept = confidence >= threshold
    total, count = len(confidence), int(kept.sum())
    if not count:
        return f"No test image is predicted with {threshold:.0%} confidence or more."
    right = float(correct[kept].mean())
    return (
        f"At {threshold:.0%} confidence or more, the model is {right:.0%} right on {count / total:.0%} of the "
        f"test images ({count} of {total})."
    )


def calibration_line(calibration: Calibration) -> str:
    """The calibration in one line of plain words (what `cnnlab evaluate` prints)."""
    line = f"calibration error (ECE) {calibration.ece:.3f}  Brier score {calibration.brier:.3f}"
    if calibration.temperature is None:
        return f"{line}  (not calibrated: {NO_TEMPERATURE})"
    return (
        f"{line}  temperature {calibration.temperature:.2f}: ECE {calibration.ece_calibrated:.3f}, "
        f"Brier {calibration.brier_calibrated:.3f} once calibrated"
    )


def check_temperature(temperature: float) -> None:
    """Raise the house-style ValueError unless `temperature` is a positive finite number."""
    ok = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not ok or not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(
            f"The temperature must be a positive number (1 leaves probabilities as they are). "
            f"Received: temperature={temperature!r}"
        )


def _checked(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and integer labels (N,) of at least one image, every label a column of `probs`."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (len(probs),) or not len(probs):
        raise ValueError(
            "Calibration needs the class probabilities (images, classes) and one label per image, of at least "
            f"one image; is the split empty? Received: probs.shape={probs.shape}, labels.shape={labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(
            f"Labels must be class indices from 0 to {probs.shape[1] - 1}. Received: labels={labels[:5].tolist()}"
        )
    return probs, labels.astype(np.int64)


def _checked_predictions(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.ndim != 1 or correct.shape != confidence.shape or not len(confidence):
        raise ValueError(
            "Give one confidence and one right-or-wrong per prediction, of at least one image; is the split empty? "
            f"Received: confidence.shape={confidence.shape}, correct.shape={correct.shape}"
        )
    return confidence, correct
