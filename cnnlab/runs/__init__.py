"""Runs: one folder per training, its record, its split and its model, written atomically, and the
heartbeat that tells a live training from an interrupted one."""

from cnnlab.runs.store import HYPERPARAMETERS, Run, RunStore, hyperparameters, new_run_id

__all__ = ["HYPERPARAMETERS", "Run", "RunStore", "hyperparameters", "new_run_id"]
