"""Training: one call from a folder to a saved, evaluated run; resuming and continuing it; the
learning-rate finder, schedules, and what a finished training gives back to the process."""

from cnnlab.training.config import TrainConfig
from cnnlab.training.engine import planned_epochs, run_epochs, train
from cnnlab.training.lr_find import LRFinderResult, find_learning_rate
from cnnlab.training.resume import continue_training, resume

__all__ = [
    "LRFinderResult",
    "TrainConfig",
    "continue_training",
    "find_learning_rate",
    "planned_epochs",
    "resume",
    "run_epochs",
    "train",
]
