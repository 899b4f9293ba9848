"""How to train: a flat, validated `TrainConfig`, saved with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cnnlab import data
from cnnlab.common.checks import check_choice, check_range
from cnnlab.data.imbalance import CLASS_WEIGHTS
from cnnlab.model.precision import PRECISIONS
from cnnlab.training.schedules import LR_SCHEDULES


@dataclass(frozen=True)
class TrainConfig:
    """How to train: epochs, batch size, early stopping, seed, the data split, class weights, rate schedule, precision.

    `class_weight` is "auto" (weight classes inversely to their frequency when the largest has more
    than 1.5 times the images of the smallest), "balanced" (always) or "none"; `lr_schedule` is
    "constant", "reduce_on_plateau" (halve after 2 epochs without a better validation loss) or
    "cosine" (decay towards zero over `epochs`). `precision` is a Keras dtype policy name or "auto"
    (see `cnnlab.model.precision.choose_precision`).

    With a backbone, `epochs` train the new head on the frozen backbone; then, when both
    `fine_tune_layers` and `fine_tune_epochs` are above 0, the backbone's top `fine_tune_layers`
    layers (its batch normalisation excepted) train with the head for `fine_tune_epochs` more
    epochs at a tenth of the learning rate, held constant (`lr_schedule` shapes the head's epochs).
    A conv-block CNN trains all its layers from the start, so it has no fine-tuning phase.
    """

    epochs: int = 10
    batch_size: int = 32
    patience: int = 4
    seed: int = 1337
    validation_split: float = 0.15
    test_split: float = 0.15
    class_weight: str = "auto"
    lr_schedule: str = "constant"
    precision: str = "auto"
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1, 1000, int)
        check_range("fine_tune_layers", self.fine_tune_layers, 0, 1000, int)
        check_range("fine_tune_epochs", self.fine_tune_epochs, 0, 1000, int)
        check_range("batch_size", self.batch_size, 1, 1024, int)
        check_range("patience", self.patience, 0, 1000, int)
        check_range("seed", self.seed, 0, 2**31 - 1, int)
        data.check_fractions(self.validation_split, self.test_split)
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)

    @property
    def tuned_layers(self) -> int:
        """Backbone layers the fine-tuning phase unfreezes: 0 when it has no epochs."""
        return self.fine_tune_layers if self.fine_tune_epochs else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict` output, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
