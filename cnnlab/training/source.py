"""What a training trains on: a class folder as it is, or, with a datasets folder, a dataset version."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data
from cnnlab.data import versions
from cnnlab.runs.workspace import Workspace
from cnnlab.training.config import TrainConfig


@dataclass(frozen=True)
class TrainingData:
    """The images a training uses (`report`, to prepare) and, on a dataset version, that `version`."""

    report: data.DatasetReport
    version: versions.VersionData | None = None

    def parts(self, report: data.DatasetReport, train_config: TrainConfig) -> dict[str, np.ndarray]:
        """The split as index arrays into `report` (the one `prepare` returned): the version's own, or
        a split of the folder by the config's fractions and seed."""
        if self.version is not None:
            return self.version.parts(report)
        return data.split(report.labels, train_config.validation_split, train_config.test_split, train_config.seed)

    def recorded_config(self, train_config: TrainConfig) -> TrainConfig:
        """`train_config` as the run records it: on a version, with the split fractions that made the
        version's split (its seed stays the training's: it also seeds the weights and the shuffling)."""
        if self.version is None:
            return train_config
        manifest = self.version.manifest
        return replace(train_config, validation_split=manifest.validation_split, test_split=manifest.test_split)

    def version_fields(self) -> dict[str, Any]:
        """The `DatasetInfo` fields that name the version (none for a folder as it is)."""
        if self.version is None:
            return {}
        dataset = self.version.dataset
        return {"name": dataset.name, "version": self.version.manifest.version, "versions_folder": str(dataset.folder)}

    @property
    def version_number(self) -> int | None:
        """The version trained on (None: the folder as it is)."""
        return None if self.version is None else self.version.manifest.version


def training_data(
    data_dir: str | Path, train_config: TrainConfig, workspace: Workspace, dataset_version: int | None = None
) -> TrainingData:
    """The data a training on `data_dir` uses in `workspace`.

    Without the workspace's `datasets` folder, the class folder as it is (and no `dataset_version`).
    With it, a version (default: the latest) of `data_dir`, a class folder or the name of a dataset
    made with `versions.new_dataset`; a class folder's version 1 is made on first use, split with
    the config's fractions and seed.
    """
    if workspace.datasets is None:
        if dataset_version is not None:
            raise ValueError(
                "A dataset version needs the folder of dataset versions (CNNLAB_DATASETS_DIR); train without "
                f"a version to use the folder as it is. Received: dataset_version={dataset_version!r}"
            )
        return TrainingData(data.scan(data_dir, cache=workspace.cache))
    dataset = versions.open_dataset(
        data_dir,
        workspace.datasets,
        cache=workspace.cache,
        validation_split=train_config.validation_split,
        test_split=train_config.test_split,
        seed=train_config.seed,
    )
    version = versions.version_data(dataset, dataset_version)
    return TrainingData(version.report, version)
