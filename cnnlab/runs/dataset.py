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
    found = recorded_version(run, cache)
    if found is not None:
        return found
    config = run.train_config()
    dataset = versions.open_dataset(
        run.dataset_root(cache),
        datasets,
        cache=cache,
        validation_split=config.validation_split,
        test_split=config.test_split,
        seed=config.seed,
    )
    seen = (m.version for m in dataset.manifests() if m.source_fingerprint == run.record.dataset.fingerprint)
    return dataset, next(seen, dataset.latest())


def recorded_version(run: Run, cache: Path) -> tuple[versions.Dataset, int] | None:
    """The dataset version `run` recorded training on, when its manifest is on this machine (None for a
    run trained on a folder as it was, or trained elsewhere, or whose versions were deleted)."""
    info = run.record.dataset
    if info.version is None or not info.versions_folder:
        return None
    folder = Path(info.versions_folder)
    # A dataset made in CNN Lab is its own folder; a class folder is found as the run's folder is.
    source = None if Path(info.path) == folder else run.dataset_root(cache)
    dataset = versions.Dataset(folder, info.name or folder.name, source)
    return (dataset, info.version) if versions.manifest_path(dataset, info.version).is_file() else None
