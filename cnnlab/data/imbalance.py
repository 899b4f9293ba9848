"""Class imbalance: when it matters, and the class weights that counter it in training."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cnnlab.common.checks import check_choice

CLASS_WEIGHTS = ("auto", "balanced", "none")
# Past this ratio of the largest to the smallest class, "auto" weights the classes.
IMBALANCE_RATIO = 1.5


def imbalance_ratio(counts: Iterable[int]) -> float:
    """Images in the largest class over images in the smallest (1.0 when balanced)."""
    values = [int(n) for n in counts]
    return max(values) / min(values) if values and min(values) > 0 else 1.0


def class_weights(labels: Iterable[int], num_classes: int, mode: str = "auto") -> dict[int, float] | None:
    """Keras `fit(class_weight=...)` for training labels, or None for no weighting.

    "balanced" weights each class by n_images / (num_classes * n_class), so every class adds the
    same total to the loss (scikit-learn's "balanced"); "auto" does that only when the largest
    class has more than `IMBALANCE_RATIO` times the images of the smallest; "none" never does.
    """
    check_choice("class_weight", mode, CLASS_WEIGHTS)
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=num_classes)
    present = counts[counts > 0]
    if mode == "none" or not len(present) or (mode == "auto" and imbalance_ratio(present) <= IMBALANCE_RATIO):
        return None
    total = float(present.sum())
    return {i: total / (len(present) * n) if n else 1.0 for i, n in enumerate(counts.tolist())}


def imbalance_advice(counts: dict[str, int]) -> str | None:
    """What CNN Lab does about imbalanced classes, in one paragraph; None when they are balanced."""
    ratio = imbalance_ratio(counts.values())
    if ratio <= IMBALANCE_RATIO:
        return None
    largest, smallest = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
    return (
        f"Classes are imbalanced: '{largest}' has {counts[largest]} images, '{smallest}' only {counts[smallest]} "
        f"({ratio:.1f}x). CNN Lab weights each class inversely to its frequency during training (class weight "
        "'auto' on the Train page), so the small classes count as much as the large ones, and the Evaluate page "
        "shows balanced accuracy and macro F1 beside accuracy, which can look good while a small class is ignored."
    )
