"""Two runs compared on the test images they share: what a change of labels (or of anything else)
changed, image by image.

Images are matched by content, not by path: a relabelled image keeps its content hash whether it
was moved to another class folder or relabelled in a dataset version. Both runs are scored against
one label per image, the `after` run's (the corrected one, when `after` trained on the fixed data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnlab.analysis.evaluate import evaluate_prepared, open_split, recorded_fingerprint, saved_evaluation
from cnnlab.data.versions import file_sha256
from cnnlab.runs.store import Run

IMAGE_COLUMNS = (
    "path",
    "path_before",
    "file",
    "sha256",
    "label",
    "label_before",
    "predicted_before",
    "predicted_after",
    "correct_before",
    "correct_after",
)


@dataclass(frozen=True)
class RunComparison:
    """Two runs on their shared test images, both scored against the `after` run's labels.

    `images` has one row per shared image (`IMAGE_COLUMNS`): its path in each run's dataset, its
    file on this machine (`file`, the `after` run's), its SHA-256, the label it is scored against
    (`label`, the `after` run's) and the one the `before` run trained with, each run's prediction
    and whether it is right. `num_only_before` and `num_only_after` count the test images only one
    of the runs held out. `before_dataset` and `after_dataset` name the dataset version each run
    trained on ("'pets' version 2"; empty for a run trained on a folder as it was).
    """

    before_id: str
    after_id: str
    before_name: str
    after_name: str
    class_names: tuple[str, ...]
    images: pd.DataFrame
    num_only_before: int = 0
    num_only_after: int = 0
    before_dataset: str = ""
    after_dataset: str = ""

    @property
    def label_source(self) -> str:
        """Which labels both runs are scored against, in words."""
        if self.after_dataset:
            return f"the labels of {self.after_dataset} (the newer run's, '{self.after_name}')"
        return f"the labels of the newer run, '{self.after_name}'"

    @property
    def before_source(self) -> str:
        """The data the older run trained with, in words."""
        return self.before_dataset or "the older run's data"

    @property
    def num_shared(self) -> int:
        """How many test images both runs held out."""
        return len(self.images)

    @property
    def accuracy_before(self) -> float:
        """The `before` run's accuracy on the shared images."""
        return float(self.images["correct_before"].mean())

    @property
    def accuracy_after(self) -> float:
        """The `after` run's accuracy on the shared images."""
        return float(self.images["correct_after"].mean())

    @property
    def num_relabelled(self) -> int:
        """Shared images whose label differs between the runs' datasets."""
        return int((self.images["label"] != self.images["label_before"]).sum())

    @property
    def fixed(self) -> pd.DataFrame:
        """Shared images the `before` run got wrong and the `after` run gets right."""
        return self.images[~self.images["correct_before"] & self.images["correct_after"]]

    @property
    def broken(self) -> pd.DataFrame:
        """Shared images the `before` run got right and the `after` run gets wrong."""
        return self.images[self.images["correct_before"] & ~self.images["correct_after"]]

    @property
    def per_class(self) -> pd.DataFrame:
        """Per class (the `after` run's): shared images, each run's recall (its accuracy on the class),
        the change, and how many of its images were fixed and broken; recall is NaN without images."""
        grouped = self.images.groupby("label")
        support = grouped.size().reindex(self.class_names, fill_value=0)

        def share(column: pd.Series) -> pd.Series:
            return column.groupby(self.images["label"]).mean().reindex(self.class_names).astype(float)

        before, after = share(self.images["correct_before"]), share(self.images["correct_after"])
        fixed, broken = (
            f["label"].value_counts().reindex(self.class_names, fill_value=0) for f in (self.fixed, self.broken)
        )
        return pd.DataFrame(
            {
                "class": list(self.class_names),
                "support": support.to_numpy(),
                "recall_before": before.to_numpy(),
                "recall_after": after.to_numpy(),
                "change": (after - before).to_numpy(),
                "fixed": fixed.to_numpy(),
                "broken": broken.to_numpy(),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `runs compare --json` prints): the figures, the per-class table and the
        images that flipped, without the machine's file paths."""
        shown = [c for c in IMAGE_COLUMNS if c != "file"]
        return {
            "before": self.before_id,
            "after": self.after_id,
            "labels_from": self.after_id,
            "dataset_before": self.before_dataset,
            "dataset_after": self.after_dataset,
            "class_names": list(self.class_names),
            "num_shared": self.num_shared,
            "num_only_before": self.num_only_before,
            "num_only_after": self.num_only_after,
            "num_relabelled": self.num_relabelled,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "per_class": self.per_class.to_dict(orient="records"),
            "fixed": self.fixed[shown].to_dict(orient="records"),
            "broken": self.broken[shown].to_dict(orient="records"),
        }


def compare_runs(before: Run, after: Run, *, cache: Path, max_cache_mb: int | None = None) -> RunComparison:
    """Compare two runs on the test images both held out, matched by content, scored against `after`'s labels.

    Each run predicts with its own model, or its saved evaluation is reused when it covers the
    images as they are now. `cache` is the folder for the scan and decoded-image caches, whose
    decoded arrays may take `max_cache_mb` in all (as in `evaluate_run`). Runs with no class in
    common, or that share no test image, are a ValueError saying why.
    """
    if not set(before.class_names) & set(after.class_names):
        raise ValueError(
            "These runs have no class in common, so their predictions cannot be compared; compare runs of "
            f"one dataset. Received: classes={before.class_names} and {after.class_names}"
        )
    old = _test_images(before, cache, max_cache_mb)
    new = _test_images(after, cache, max_cache_mb)
    shared = new.merge(old, on="sha256", suffixes=("", "_before"))
    if shared.empty:
        raise ValueError(f"{_why_nothing_shared(before, after, old, new)} Received: runs={before.id}, {after.id}")
    images = pd.DataFrame(
        {
            "path": shared["path"],
            "path_before": shared["path_before"],
            "file": shared["file"],
            "sha256": shared["sha256"],
            "label": shared["label"],
            "label_before": shared["label_before"],
            "predicted_before": shared["predicted_before"],
            "predicted_after": shared["predicted"],
            "correct_before": (shared["predicted_before"] == shared["label"]).to_numpy(),
            "correct_after": (shared["predicted"] == shared["label"]).to_numpy(),
        }
    )
    return RunComparison(
        before.id,
        after.id,
        before.name,
        after.name,
        tuple(after.class_names),
        images.sort_values("path", ignore_index=True),
        num_only_before=len(old) - len(shared),
        num_only_after=len(new) - len(shared),
        before_dataset=_version_of(before),
        after_dataset=_version_of(after),
    )


def _version_of(run: Run) -> str:
    """The dataset version the run trained on, in words ("'pets' version 2"; empty for a folder as it was)."""
    info = run.record.dataset
    return "" if info.version is None else f"'{info.name or Path(info.path).name}' version {info.version}"


def _test_images(run: Run, cache: Path, max_cache_mb: int | None) -> pd.DataFrame:
    """The run's test images that are still there: path, file, SHA-256, label and the run's prediction.

    An image whose content is in the test split twice is kept once (its first path), so each
    content is one image of the comparison.
    """
    with open_split(run, cache=cache, max_cache_mb=max_cache_mb) as (prepared, parts):
        report, test = prepared.report, parts["test"]
        paths = [report.files[i] for i in test]
        files = [report.path_of(p) for p in paths]
        hashes = [report.hashes[i] for i in test] if report.hashes else [file_sha256(f) for f in files]
        predicted = _saved_predictions(run, paths, report.fingerprint)
        if predicted is None:
            rows = evaluate_prepared(run.load_model(), prepared, test).predictions
            predicted = dict(zip(rows["path"], rows["predicted_label"], strict=True))
        labels = np.asarray(report.class_names, dtype=object)[prepared.labels[test]] if len(test) else []
    frame = pd.DataFrame(
        {
            "path": paths,
            "file": [str(f) for f in files],
            "sha256": hashes,
            "label": labels,
            "predicted": [predicted[p] for p in paths],
        },
        columns=["path", "file", "sha256", "label", "predicted"],
    )
    return frame.drop_duplicates("sha256", ignore_index=True)


def _saved_predictions(run: Run, paths: list[str], fingerprint: str) -> dict[str, str] | None:
    """The predictions of the run's saved evaluation by path, when it covers `paths` of the data as it is
    (the fingerprint the run recorded is the current one); None when they must be made again."""
    evaluation = saved_evaluation(run)
    if evaluation is None or recorded_fingerprint(run) not in (None, fingerprint):
        return None
    rows = evaluation.predictions
    predicted = dict(zip(rows["path"], rows["predicted_label"], strict=True))
    return predicted if all(p in predicted for p in paths) else None


def _why_nothing_shared(before: Run, after: Run, old: pd.DataFrame, new: pd.DataFrame) -> str:
    """One sentence on why two runs have no test image in common."""
    for run, images in ((before, old), (after, new)):
        if images.empty:
            return (
                f"Run '{run.name}' has no test images here (no test split, or its images are gone), "
                "so there is nothing to compare on."
            )
    # Dataset names first (two made datasets), then folder names (one name given to two folders).
    names = [r.record.dataset.name or Path(r.record.dataset.path).name for r in (before, after)]
    first, second = names if names[0] != names[1] else [Path(r.record.dataset.path).name for r in (before, after)]
    if first != second:
        return (
            f"These runs share no test image: they were trained on different datasets ('{first}' and "
            f"'{second}'); compare runs of versions of one dataset."
        )
    return (
        "These runs share no test image: their test splits hold different images (another split fraction "
        "or seed); compare runs whose splits overlap."
    )
