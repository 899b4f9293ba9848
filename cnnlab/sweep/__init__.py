"""Hyperparameter sweeps: an Optuna study over chosen config fields, where every trial is a run.

`space` reads and checks a search space, `storage` opens the study's database, `runner` runs
trials (each an ordinary training run, pruned by `pruning`'s Keras callback), `results`
summarises a study, `follow` reads a shared study from any machine, and `faults` sets up Optuna's
heartbeats that fail and retry the trials of workers that died. Studies live in any SQLAlchemy database: SQLite in the models folder by
default, PostgreSQL for a team, where every process started with the same study name and
storage adds its trials to the same study. Importing this package imports neither Optuna nor
TensorFlow.
"""

from cnnlab.sweep.faults import FaultTolerance
from cnnlab.sweep.follow import follow_study
from cnnlab.sweep.results import SweepResult, study_importances
from cnnlab.sweep.runner import SweepConfig, default_pruner, run_sweep
from cnnlab.sweep.space import OBJECTIVES, SweepSpace, load_space, space_from_dict
from cnnlab.sweep.storage import default_storage, masked_url

__all__ = [
    "OBJECTIVES",
    "FaultTolerance",
    "SweepConfig",
    "SweepResult",
    "SweepSpace",
    "default_pruner",
    "default_storage",
    "follow_study",
    "load_space",
    "masked_url",
    "run_sweep",
    "space_from_dict",
    "study_importances",
]
