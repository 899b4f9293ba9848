"""Training: its plan, shown before it starts; what it trains on (a folder, or a dataset version); one
call from a folder to a saved, evaluated run, with its hooks; resuming and continuing it; the learning-rate finder, schedules, and what a finished
training gives back to the process."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.engine import planned_epochs, run_epochs, train
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.lr_find import LRFinderResult, find_learning_rate
    from cnnlab.training.plan import TrainingPlan, training_plan
    from cnnlab.training.resuming import continue_training, resume
    from cnnlab.training.source import TrainingData, training_data

__all__ = [
    "LRFinderResult",
    "TrainConfig",
    "TrainingData",
    "TrainingHooks",
    "TrainingPlan",
    "continue_training",
    "find_learning_rate",
    "planned_epochs",
    "resume",
    "run_epochs",
    "train",
    "training_data",
    "training_plan",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainConfig": "config",
        "planned_epochs": "engine",
        "run_epochs": "engine",
        "train": "engine",
        "TrainingHooks": "hooks",
        "LRFinderResult": "lr_find",
        "find_learning_rate": "lr_find",
        "TrainingPlan": "plan",
        "training_plan": "plan",
        "continue_training": "resuming",
        "resume": "resuming",
        "TrainingData": "source",
        "training_data": "source",
    },
)
