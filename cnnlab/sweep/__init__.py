"""Hyperparameter sweeps (the module moved here; it is split into space, storage and runner next)."""

from cnnlab.sweep.space import (
    OBJECTIVES,
    SweepResult,
    SweepSpace,
    default_pruner,
    default_storage,
    load_space,
    masked_url,
    run_sweep,
    space_from_dict,
    study_importances,
)

__all__ = [
    "OBJECTIVES",
    "SweepResult",
    "SweepSpace",
    "default_pruner",
    "default_storage",
    "load_space",
    "masked_url",
    "run_sweep",
    "space_from_dict",
    "study_importances",
]
