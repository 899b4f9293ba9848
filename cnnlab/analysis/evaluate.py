"""Evaluation of a model on its run's held-out test split."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnlab import data
from cnnlab.analysis.calibration import Calibration, calibration_of, fit_temperature, has_mistakes, scale_probabilities
from cnnlab.analysis.roc import RocCurve, macro_auc, one_vs_rest
from cnnlab.common.files import write_json
from cnnlab.data import versions
from cnnlab.runs.dataset import recorded_version
from cnnlab.runs.record import TemperatureScaling
from cnnlab.runs.store import EVALUATION_FILE, Run

_EPS = 1e-7
# `calibrated_confidence` is the confidence with the run's temperature applied (what predict reports),
# the same as `confidence` for a run without one.
PREDICTION_COLUMNS = ("path", "true_label", "predicted_label", "confidence", "correct", "calibrated_confidence")


@dataclass(frozen=True)
class Evaluation:
    """Test-split metrics, the confusion matrix and one row per test image.

    `num_missing` counts the split's test images that no longer exist (the metrics cover the
    others); `dataset_changed` says the dataset's fingerprint differs from the one recorded at
    training time. `leaked` are the test images that are copies (exact or near) of training images
    (`cnnlab.data.duplicates`), which flatter the test accuracy; None when not checked (a run not
    trained on a dataset version on this machine). `roc_auc` is the macro one-vs-rest area over
    `roc`, each class's curve; `calibration` the ECE and Brier score before and after the run's
    temperature (None in an evaluation saved before calibration was measured: evaluate again).
    """

    class_names: tuple[str, ...]
    loss: float
    accuracy: float
    confusion: np.ndarray
    per_class: pd.DataFrame
    predictions: pd.DataFrame
    roc_auc: float | None = None
    num_missing: int = 0
    dataset_changed: bool = False
    leaked: tuple[str, ...] | None = None
    calibration: Calibration | None = None
    roc: tuple[RocCurve, ...] = ()

    @property
    def num_leaked_test_images(self) -> int:
        """How many test images are copies of training images (0 when not checked)."""
        return len(self.leaked or ())

    @property
    def accuracy_without_leaks(self) -> float | None:
        """Test accuracy over the test images that are no copy of a training image (None when not checked)."""
        if self.leaked is None:
            return None
        kept = self.predictions[~self.predictions["path"].isin(self.leaked)]
        return float(kept["correct"].mean()) if len(kept) else float("nan")

    @property
    def warnings(self) -> list[str]:
        """One line per reason these metrics are not the run's own test metrics (none: they are)."""
        found = []
        if self.num_missing:
            total = self.num_missing + len(self.predictions)
            found.append(
                f"{self.num_missing} of {total} test images are missing from the dataset folder, so these metrics "
                f"cover only the other {len(self.predictions)} and are not saved as the run's evaluation; "
                "restore the images to evaluate the whole test split."
            )
        if self.dataset_changed:
            found.append(
                "The dataset's files changed since this run was trained (names, sizes or modification times "
                "differ), so these metrics are on today's files and not saved as the run's evaluation; "
                "evaluate on the original data to compare."
            )
        return found

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes that have test images: a class the model ignores counts in full."""
        support = self.confusion.sum(axis=1)
        if not support.any():
            return float("nan")
        return float(np.mean(np.diag(self.confusion)[support > 0] / support[support > 0]))

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that are tested or predicted (scikit-learn's macro average)."""
        seen = (self.confusion.sum(axis=1) + self.confusion.sum(axis=0)) > 0
        return float(np.mean(self.per_class["f1"].to_numpy()[seen])) if seen.any() else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what `evaluate --json` prints)."""
        return {
            "class_names": list(self.class_names),
            "loss": self.loss,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "roc_auc": self.roc_auc,
            "confusion": self.confusion.tolist(),
            "per_class": self.per_class.to_dict(orient="records"),
            "predictions": self.predictions.to_dict(orient="records"),
            "num_missing": self.num_missing,
            "dataset_changed": self.dataset_changed,
            "leaked_test_images": None if self.leaked is None else list(self.leaked),
            "num_leaked_test_images": self.num_leaked_test_images,
            "test_accuracy_without_leaks": self.accuracy_without_leaks,
            "roc_curves": [curve.to_dict() for curve in self.roc],
            **_calibration_keys(self.calibration),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evaluation:
        """Inverse of `to_dict`."""
        return cls(
            class_names=tuple(d["class_names"]),
            loss=d["loss"],
            accuracy=d["accuracy"],
            confusion=np.asarray(d["confusion"], dtype=np.int64),
            per_class=pd.DataFrame(d["per_class"]),
            # An empty test split has no rows to carry the columns; name them so lookups still work.
            predictions=pd.DataFrame(d["predictions"], columns=list(PREDICTION_COLUMNS)),
            roc_auc=d.get("roc_auc"),
            num_missing=d.get("num_missing", 0),
            dataset_changed=d.get("dataset_changed", False),
            leaked=None if d.get("leaked_test_images") is None else tuple(d["leaked_test_images"]),
            calibration=_calibration_from(d),
            roc=tuple(RocCurve.from_dict(c) for c in d.get("roc_curves", ())),
        )

    def most_confident_mistakes(self, limit: int = 12) -> pd.DataFrame:
        """Wrong predictions, most confident first by the confidence predict reports for them
        (`reported_confidence`): a temperature can reorder images of several classes."""
        wrong = self.predictions[self.predictions["true_label"] != self.predictions["predicted_label"]]
        order = reported_confidence(wrong).sort_values(ascending=False, kind="stable").index
        return wrong.loc[order].head(limit)

    def top_confusions(self, limit: int = 10) -> pd.DataFrame:
        """The most frequent mistakes: true -> predicted, how many, and their share of the true class."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        true_idx, pred_idx = np.nonzero(off)
        counts = off[true_idx, pred_idx]
        support = self.confusion.sum(axis=1)[true_idx]
        order = np.lexsort((pred_idx, true_idx, -counts))[:limit]
        names = np.asarray(self.class_names, dtype=object)
        return pd.DataFrame(
            {
                "true_label": names[true_idx[order]],
                "predicted_label": names[pred_idx[order]],
                "count": counts[order],
                "share": counts[order] / support[order],
            }
        )

    def cell(self, true_label: str, predicted_label: str) -> pd.DataFrame:
        """The test images in one confusion-matrix cell."""
        p = self.predictions
        return p[(p["true_label"] == true_label) & (p["predicted_label"] == predicted_label)]


def reported_confidence(predictions: pd.DataFrame) -> pd.Series:
    """Each prediction's confidence as predict reports it: after the run's temperature, or the model's
    own where no calibrated figure was saved (evaluations from before calibration)."""
    return predictions["calibrated_confidence"].fillna(predictions["confidence"])


def mistake_captions(predictions: pd.DataFrame) -> list[str]:
    """A caption per prediction for a gallery of mistakes: "true → predicted (reported confidence)"."""
    rows = zip(predictions["true_label"], predictions["predicted_label"], reported_confidence(predictions), strict=True)
    return [f"{t} → {p} ({c:.0%})" for t, p, c in rows]


def probabilities(model, batches) -> np.ndarray:
    """Class probabilities (N, num_classes) for a dataset or array, single-sigmoid models included."""
    return class_probabilities(model.predict(batches, verbose=0))


def class_probabilities(outputs) -> np.ndarray:
    """The model's outputs as float64 (N, num_classes) probabilities: one sigmoid unit becomes two classes."""
    raw = np.asarray(outputs, dtype=np.float64)
    if raw.ndim == 2 and raw.shape[1] == 1:
        return np.concatenate([1.0 - raw, raw], axis=1)
    return raw


_CALIBRATION_KEYS = ("ece", "brier", "temperature", "ece_calibrated", "brier_calibrated")


def _calibration_keys(calibration: Calibration | None) -> dict[str, float | None]:
    """The calibration's figures as flat keys of `to_dict` (`evaluate --json`), None when not measured."""
    return {key: None if calibration is None else getattr(calibration, key) for key in _CALIBRATION_KEYS}


def _calibration_from(d: dict[str, Any]) -> Calibration | None:
    """The calibration `to_dict` flattened into `d`; None in an evaluation saved before it was measured."""
    if d.get("ece") is None:
        return None
    return Calibration(d["ece"], d["brier"], d.get("temperature"), d.get("ece_calibrated"), d.get("brier_calibrated"))


def evaluate_probabilities(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    paths: list[str],
    temperature: float | None = None,
) -> Evaluation:
    """All metrics from predicted probabilities and true labels (no second pass over the model);
    calibration also after scaling by the run's `temperature` when it has one."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(class_names)
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_p = probs[np.arange(len(labels)), labels] if len(labels) else np.zeros(0)
    loss = float(-np.mean(np.log(np.clip(true_p, _EPS, 1.0)))) if len(labels) else float("nan")
    accuracy = float(np.mean(predicted == labels)) if len(labels) else float("nan")
    names = np.asarray(class_names, dtype=object)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    table = pd.DataFrame(
        {
            "path": paths,
            "true_label": names[labels] if len(labels) else [],
            "predicted_label": names[predicted] if len(labels) else [],
            "confidence": confidence,
            "correct": predicted == labels,
            "calibrated_confidence": (
                scale_probabilities(probs, temperature).max(axis=1) if temperature and len(probs) else confidence
            ),
        }
    )
    roc = one_vs_rest(probs, labels, class_names) if len(labels) else ()
    return Evaluation(
        tuple(class_names),
        loss,
        accuracy,
        confusion,
        _per_class(confusion, class_names),
        table,
        macro_auc(roc),
        calibration=calibration_of(probs, labels, temperature) if len(labels) else None,
        roc=roc,
    )


def _per_class(confusion: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    tp = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    support = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return pd.DataFrame({"class": class_names, "precision": precision, "recall": recall, "f1": f1, "support": support})


def evaluate_prepared(
    model, prepared: data.PreparedData, indices: np.ndarray, batch_size: int = 64, temperature: float | None = None
) -> Evaluation:
    """Evaluate `model` on some images of a prepared dataset (calibrated by `temperature` too, when given)."""
    indices = np.asarray(indices, dtype=np.int64)
    probs = probabilities(model, data.make_dataset(prepared, indices, batch_size)) if len(indices) else np.zeros((0, 2))
    paths = [prepared.report.files[i] for i in indices]
    names = list(prepared.report.class_names)
    return evaluate_probabilities(probs, prepared.labels[indices], names, paths, temperature)


def calibrated_evaluation(
    model, prepared: data.PreparedData, parts: dict[str, np.ndarray], scaling: TemperatureScaling | None = None
) -> tuple[Evaluation, TemperatureScaling | None]:
    """The "test" part of a split evaluated with `scaling` applied, or, without it, with a temperature
    fitted now on the "validation" part (one more pass over it); and that temperature."""
    scaling = scaling or fit_temperature_on(model, prepared, parts["validation"])
    temperature = scaling.temperature if scaling else None
    return evaluate_prepared(model, prepared, parts["test"], temperature=temperature), scaling


def fit_temperature_on(
    model, prepared: data.PreparedData, indices: np.ndarray, batch_size: int = 64
) -> TemperatureScaling | None:
    """The temperature that calibrates `model`, fitted on some (validation) images of a prepared
    dataset; None without images to fit on, or when the model gets every one of them right: the
    likelihood then only grows as the temperature falls, and a fit would make every prediction
    certain (`calibration.has_mistakes`)."""
    indices = np.asarray(indices, dtype=np.int64)
    if not len(indices):
        return None
    probs, labels = probabilities(model, data.make_dataset(prepared, indices, batch_size)), prepared.labels[indices]
    return TemperatureScaling(fit_temperature(probs, labels), len(indices)) if has_mistakes(probs, labels) else None


def evaluate_run(run: Run, *, cache: Path, refresh: bool = False, max_cache_mb: int | None = None) -> Evaluation:
    """The run's test-split evaluation: saved at the end of training, recomputed when asked or missing.

    `cache` is the folder for the scan and decoded-image caches (and the built-in sample), whose
    decoded arrays may take `max_cache_mb` in all (as in `train`). A recomputed evaluation is
    saved as the run's only when it covers the whole test split of unchanged data; otherwise its
    `num_missing` and `dataset_changed` say why not. The test probabilities are calibrated by the
    run's temperature; a run without one (trained before temperatures were fitted) gets one fitted
    on its validation split, saved in its record. A saved evaluation from before calibration was
    measured is evaluated again when its dataset is here.
    """
    saved = saved_evaluation(run)
    if saved is not None and not refresh:
        if saved.calibration is None and len(saved.predictions):
            saved = _with_calibration(run, saved, cache, max_cache_mb)
        return saved if saved.leaked is not None else _checked_for_leaks(run, saved, cache)
    recorded = recorded_fingerprint(run)
    with open_split(run, cache=cache, max_cache_mb=max_cache_mb) as (prepared, parts):
        evaluation, scaling = calibrated_evaluation(run.load_model(), prepared, parts, run.record.calibration)
        evaluation = dataclasses.replace(
            evaluation,
            num_missing=len(run.split()["test"]) - len(parts["test"]),
            dataset_changed=recorded is not None and recorded != prepared.report.fingerprint,
            leaked=leaked_test_images(run, cache),
        )
    # A running run's folder is its training's to write; it evaluates at the end. The demo is the app's own.
    if run.status != "running" and not evaluation.warnings and not run.is_demo:
        # Fitted once per model: predictions use it from now on (a teammate's record stays as published).
        if scaling is not None and run.record.calibration is None and not run.is_team_copy:
            run.update(calibration=scaling)
        save_evaluation(run, evaluation)
    return evaluation


def _with_calibration(run: Run, saved: Evaluation, cache: Path, max_cache_mb: int | None) -> Evaluation:
    """A `saved` evaluation from before calibration was measured, evaluated again to measure it (and
    fit the run's temperature); `saved` as it is when that cannot cover the same test images (the
    dataset is gone, or changed): the page then says to evaluate again."""
    try:
        fresh = evaluate_run(run, cache=cache, refresh=True, max_cache_mb=max_cache_mb)
    except (ValueError, OSError):
        return saved
    return saved if fresh.warnings else fresh


def leaked_test_images(run: Run, cache: Path) -> tuple[str, ...] | None:
    """The run's test images that are copies (exact or near) of its training images, sorted; None when
    its dataset version is not on this machine (a run on a folder as it was, or trained elsewhere)."""
    found = recorded_version(run, cache)
    if found is None:
        return None
    from cnnlab.data.duplicates import find_duplicates

    return tuple(sorted(find_duplicates(*found, cache=cache).leaked_test_paths))


def _checked_for_leaks(run: Run, evaluation: Evaluation, cache: Path) -> Evaluation:
    """A saved `evaluation` (the training's, which does not look for leaks) with its leaked test images
    found, saved again so that the next look is instant."""
    leaked = leaked_test_images(run, cache)
    if leaked is None:
        return evaluation
    checked = dataclasses.replace(evaluation, leaked=leaked)
    if run.status != "running" and not evaluation.warnings:
        save_evaluation(run, checked)
    return checked


@contextlib.contextmanager
def open_split(
    run: Run, *, cache: Path, max_cache_mb: int | None = None
) -> Iterator[tuple[data.PreparedData, dict[str, np.ndarray]]]:
    """The run's dataset prepared as in training, and each part of its split as indices into it.

    The parts are "train", "validation" and "test"; files gone since training, or that no longer
    decode, are left out. The prepared array is leased for the block, so no eviction removes it
    while it is read. `cache` is the folder for the scan and decoded-image caches (and the
    built-in sample), whose decoded arrays may take `max_cache_mb` in all.
    """
    config = run.model_config()
    report = _same_classes(run, run_report(run, cache))
    settings = (config.image_size, config.color_mode, config.resize_mode)
    with data.open_prepared(report, *settings, cache=cache, max_cache_mb=max_cache_mb) as prepared:
        position = {rel: i for i, rel in enumerate(_same_classes(run, prepared.report).files)}
        parts = {
            part: np.asarray([position[p] for p in paths if p in position], dtype=np.int64)
            for part, paths in run.split().items()
        }
        yield prepared, parts


def run_report(run: Run, cache: Path) -> data.DatasetReport:
    """The run's dataset as it was trained on: the dataset version it recorded (its labels, exclusions
    and added images), or a scan of its folder for an unversioned run, or when the version's folder is
    not on this machine (a run trained elsewhere, or whose versions were deleted)."""
    found = recorded_version(run, cache)
    if found is None:
        return data.scan(run.dataset_root(cache), cache=cache)
    return versions.version_data(*found).report


def _same_classes(run: Run, report: data.DatasetReport) -> data.DatasetReport:
    """`report`, once it is known to have the classes the run was trained on."""
    if list(report.class_names) != run.class_names:
        raise ValueError(
            f"The dataset's classes changed since this run was trained; use the original data. "
            f"Received: classes={list(report.class_names)}"
        )
    return report


def recorded_fingerprint(run: Run) -> str | None:
    """The dataset fingerprint recorded at training, where comparing it means something."""
    dataset = run.record.dataset
    # The fingerprint covers file times; the built-in sample is made again, image for image, with new ones.
    return None if dataset.builtin == "sample" else dataset.fingerprint


def saved_evaluation(run: Run) -> Evaluation | None:
    """The evaluation saved beside the run's model, or None when there is none."""
    path = run.path / EVALUATION_FILE
    return Evaluation.from_dict(json.loads(path.read_text())) if path.exists() else None


def save_evaluation(run: Run, evaluation: Evaluation) -> None:
    """Store an evaluation beside the run's model."""
    write_json(run.path / EVALUATION_FILE, evaluation.to_dict())
