"""A hosted visitor's disk budget: what their uploads, decoded images, runs and dataset edits take, and the room left.

Decoded images count against a visitor when they were made from the visitor's own uploads for
one of the visitor's runs; those of the built-in sample and the catalog datasets are shared by
everyone and bounded by the server-wide cache budget instead (`prepcache`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.common.checks import MB, check_image_size, megabytes
from cnnlab.common.files import folder_bytes
from cnnlab.data import DatasetReport, prepared_bytes, prepared_path
from cnnlab.data.versions import SOURCE_FILE, Dataset, manifest_path
from cnnlab.model import SLOTS, count_params
from cnnlab.runs.store import Run, RunStore
from cnnlab.server import hosting

if TYPE_CHECKING:
    from cnnlab.sweep import SweepSpace


@dataclass(frozen=True)
class DiskUsage:
    """Bytes a visitor's files take on the server, by kind, against their budget (`datasets`: their
    dataset edits, `edits_bytes`)."""

    uploads: int
    decoded: int
    runs: int
    budget: int
    datasets: int = 0

    @property
    def total(self) -> int:
        """Everything the visitor's files take."""
        return self.uploads + self.decoded + self.runs + self.datasets

    @property
    def room(self) -> int:
        """What is left of the budget (0 when it is used up)."""
        return max(0, self.budget - self.total)

    @property
    def fraction(self) -> float:
        """How much of the budget is used, from 0 to 1."""
        return min(1.0, self.total / self.budget) if self.budget else 1.0

    def describe(self) -> str:
        """One line: the total against the budget, and what it is made of."""
        return (
            f"{megabytes(self.total)} of your {megabytes(self.budget)} disk budget used (uploads "
            f"{megabytes(self.uploads)}, decoded images {megabytes(self.decoded)}, runs {megabytes(self.runs)}, "
            f"datasets {megabytes(self.datasets)})"
        )


def session_usage(
    cache: Path, store: RunStore, session: str, budget_mb: int, datasets: Path | None = None
) -> DiskUsage:
    """What a session's uploads, the decoded images made from them for its runs, its runs, and its
    dataset edits (in `datasets`, the visitor's own datasets folder) take."""
    uploads = hosting.uploads_dir(cache, session).resolve()
    runs = [r for r in store.list() if r.record.owner == session]
    decoded = {_decoded_path(run, cache) for run in runs if uploads in Path(run.record.dataset.path).parents}
    return DiskUsage(
        uploads=folder_bytes(uploads),
        decoded=sum(p.stat().st_size for p in decoded if p is not None and p.is_file()),
        runs=sum(folder_bytes(run.path) for run in runs),
        budget=budget_mb * MB,
        datasets=edits_bytes(datasets) if datasets is not None else 0,
    )


def edits_bytes(datasets: Path) -> int:
    """What a visitor's datasets folder takes, less what opening a class folder makes for anyone who
    looks at it (its version 1, the folder as it is), so that browsing the built-in sample costs nothing:
    their added images and the versions they saved."""
    made_on_sight = 0
    for source in datasets.glob(f"*/{SOURCE_FILE}"):
        first = manifest_path(Dataset(source.parent, source.parent.name), 1)
        made_on_sight += source.stat().st_size + (first.stat().st_size if first.is_file() else 0)
    return folder_bytes(datasets) - made_on_sight


# At its peak a run folder holds the latest and the best epoch's checkpoints and the next one
# being written before the oldest is removed (`cnnlab.training.checkpoint`), besides `model.keras`.
_CHECKPOINTS_AT_PEAK = 3


def training_bytes(report: DatasetReport, model_config, num_params: int, cache: Path, uploads: Path) -> int:
    """What a new training adds to a visitor's usage at its peak: its run folder (`run_bytes`), and
    its decoded images when they come from the visitor's uploads and are not decoded yet."""
    settings = (model_config.image_size, model_config.color_mode, model_config.resize_mode)
    return run_bytes(model_config, num_params) + _decoded_bytes(report, settings, cache, uploads)


def run_bytes(model_config, num_params: int, completed: bool = False) -> int:
    """A run folder's model file and resumable checkpoints (each weights and optimizer state): at
    the peak of its training, or once `completed`, when only the latest checkpoint stays."""
    checkpoints = 1 if completed else _CHECKPOINTS_AT_PEAK
    return 4 * num_params * (1 + checkpoints * (1 + SLOTS[model_config.optimizer]))


def sweep_bytes(report: DatasetReport, space: SweepSpace, trials: int, cache: Path, uploads: Path) -> int:
    """What a sweep of `trials` trials may add to a visitor's usage, counted as `training_bytes` counts
    a training: run folders as big as the space's largest model's (completed ones, and one at its
    peak, as trials run one after another), and the decoded images of the `trials` largest image
    settings it may try (each is decoded once, for all the trials that use it)."""
    corners = [(model, count_params(model, report.num_classes)) for model, _ in space.corner_configs()]
    completed = max(run_bytes(model, params, completed=True) for model, params in corners)
    peak = max(run_bytes(model, params) for model, params in corners)
    options = itertools.product(*(space.values(name) for name in ("image_size", "color_mode", "resize_mode")))
    settings = {(check_image_size(size), mode, resize) for size, mode, resize in options}
    decoded = sorted((_decoded_bytes(report, s, cache, uploads) for s in settings), reverse=True)
    return (trials - 1) * completed + peak + sum(decoded[:trials])


def _decoded_bytes(
    report: DatasetReport, settings: tuple[tuple[int, int], str, str], cache: Path, uploads: Path
) -> int:
    """The decoded images a training at (image_size, color_mode, resize_mode) adds: none unless
    the dataset is the visitor's own upload and is not decoded at those settings yet."""
    size, mode, resize = settings
    uploads = uploads.resolve()
    own = report.root == uploads or uploads in report.root.parents
    decoded = prepared_path(report.fingerprint, size, mode, resize, cache=cache)
    return prepared_bytes(report, size, mode) if own and not decoded.exists() else 0


def check_room(usage: DiskUsage, needed: int, what: str, shrink: str = "choose a smaller image size") -> None:
    """Refuse work that would take a visitor over their budget (or, needing no known amount, work
    started with the budget used up), saying what to delete, or how to `shrink` the work."""
    if usage.total + needed <= usage.budget and usage.room > 0:
        return
    need = f"needs about {megabytes(needed)} but {megabytes(usage.room)} is left" if needed else "needs disk room"
    raise ValueError(
        f"{what} {need}: {usage.describe()}; "
        f"delete runs you no longer need (Runs page) or your uploads (Data page), or {shrink}. "
        f"Received: needed_mb={needed / MB:.1f}"
    )


def _decoded_path(run: Run, cache: Path) -> Path | None:
    fingerprint = run.record.dataset.fingerprint
    try:
        config = run.model_config()
    except (TypeError, ValueError):  # settings this version cannot build: nothing of it decoded here
        return None
    if fingerprint is None:
        return None
    return prepared_path(fingerprint, config.image_size, config.color_mode, config.resize_mode, cache=cache)
