"""Splitting a dataset's images into training, validation and test parts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cnnlab.common.checks import check_range


def split(
    labels: Iterable[int], validation_split: float = 0.15, test_split: float = 0.15, seed: int = 1337
) -> dict[str, np.ndarray]:
    """Stratified, reproducible split into "train", "validation" and "test" index arrays.

    Each class is shuffled with `seed` and cut by the fractions, so every class keeps its share in
    every part; a class too small for all three keeps at least one training image.
    """
    check_fractions(validation_split, test_split)
    labels = np.asarray(list(labels), dtype=np.int64)
    if not len(labels):
        return {name: np.zeros(0, dtype=np.int64) for name in ("train", "validation", "test")}
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        n_test = min(int(round(n * test_split)), max(n - 1, 0))
        n_val = min(int(round(n * validation_split)), max(n - 1 - n_test, 0))
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def check_fractions(validation_split: float, test_split: float) -> None:
    """Validate the split fractions: each in [0, 0.9] and leaving images to train on."""
    check_range("validation_split", validation_split, 0.0, 0.9, float)
    check_range("test_split", test_split, 0.0, 0.9, float)
    if validation_split + test_split >= 0.95:
        raise ValueError(
            "validation_split + test_split must leave images for training (sum below 0.95). "
            f"Received: validation_split={validation_split}, test_split={test_split}"
        )
