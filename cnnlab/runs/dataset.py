"""The dataset version a run trained on, for fixing what its evaluation shows (`cnnlab.data.edits`)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.data import versions
from cnnlab.runs.store import Run


def run_dataset(run: Run, datasets: Path, *, cache: Path) -> tuple[versions.Dataset, int]:
    """The versioned dataset `run` trained on and the number of the version it trained on.

    A run trained on a version names it in its record. For a run trained on a class folder as it
    was (before versions), the folder's versions are opened under `datasets` (version 1 is made on
    first use, split as the run was), and its version is the first one of the folder as the run saw
    it (the run's fingerprint), else the latest when the folder changed since.
    """
    info = run.record.dataset
    # Recorded by trainings on a version; None and "" for a run trained on a folder as it was.
    folder, version = getattr(info, "versions_folder", ""), getattr(info, "version", None)
    if folder and version is not None:
        source = run.dataset_root(cache) if (Path(folder) / versions.SOURCE_FILE).exists() else None
        return versions.Dataset(Path(folder), getattr(info, "name", None) or Path(folder).name, source), version
    config = run.train_config()
    dataset = versions.open_dataset(
        run.dataset_root(cache),
        datasets,
        cache=cache,
        validation_split=config.validation_split,
        test_split=config.test_split,
        seed=config.seed,
    )
    seen = (m.version for m in dataset.manifests() if m.source_fingerprint == info.fingerprint)
    return dataset, next(seen, dataset.latest())
