"""Runs: one folder per training, its record, its split and its model, written atomically; the
heartbeat that tells a live training from an interrupted one; the workspace trainings share."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.runs.dataset import recorded_version, run_dataset
    from cnnlab.runs.record import (
        SCHEMA_VERSION,
        DatasetInfo,
        FineTuning,
        HistoryRow,
        Metrics,
        RunRecord,
        SweepTrial,
        TeamCopy,
        TemperatureScaling,
        read_record,
    )
    from cnnlab.runs.store import HYPERPARAMETERS, Run, RunStore, hyperparameters, new_run_id
    from cnnlab.runs.workspace import Workspace

__all__ = [
    "HYPERPARAMETERS",
    "SCHEMA_VERSION",
    "DatasetInfo",
    "FineTuning",
    "HistoryRow",
    "Metrics",
    "Run",
    "RunRecord",
    "RunStore",
    "SweepTrial",
    "TeamCopy",
    "TemperatureScaling",
    "Workspace",
    "hyperparameters",
    "new_run_id",
    "read_record",
    "recorded_version",
    "run_dataset",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HYPERPARAMETERS": "store",
        "SCHEMA_VERSION": "record",
        "DatasetInfo": "record",
        "FineTuning": "record",
        "HistoryRow": "record",
        "Metrics": "record",
        "Run": "store",
        "RunRecord": "record",
        "RunStore": "store",
        "SweepTrial": "record",
        "TeamCopy": "record",
        "TemperatureScaling": "record",
        "hyperparameters": "store",
        "new_run_id": "store",
        "Workspace": "workspace",
        "read_record": "record",
        "recorded_version": "dataset",
        "run_dataset": "dataset",
    },
)
