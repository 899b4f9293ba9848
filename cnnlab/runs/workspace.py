"""What every training works with, whoever starts it: where its runs go, its caches and budgets, its owner and team server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.runs.store import RunStore

if TYPE_CHECKING:
    from cnnlab.team.tracking import TrackingConfig


@dataclass(frozen=True)
class Workspace:
    """Where trainings save their runs and what they may use, passed whole to every training, resume,
    cross-validated pass, learning-rate finder, sweep and job.

    `store` takes the runs; `cache` is the folder for the scan and decoded-image caches, whose
    decoded arrays may take `max_cache_mb` in all (least recently used ones are evicted); a model
    whose training step would need more than `max_training_mb` is refused before anything is
    built (None: no limit). `datasets` is the folder of dataset versions: with it, a training on a
    class folder trains on a version of it (made on first use) and records which (None: it trains
    on the folder as it is, unversioned). `owner` is a hosted visitor's id, recorded in every new run (None: the
    runs are everyone's); with `tracking`, every run is also published to the team server as it
    trains. `devices` names the devices trainings run on (`cnnlab.training.devices`; empty: every
    local GPU, mirrored when there are several, else the CPU).
    """

    store: RunStore
    cache: Path
    max_training_mb: int | None = None
    max_cache_mb: int | None = None
    tracking: TrackingConfig | None = None
    owner: str | None = None
    datasets: Path | None = None
    devices: tuple[str, ...] = ()

    @property
    def owner_tag(self) -> dict[str, str]:
        """The record fields that name a new run's owner: `{"owner": owner}`, or none without one."""
        return {"owner": self.owner} if self.owner else {}
