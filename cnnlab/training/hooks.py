"""What a training reports to and hears from its caller while it runs, passed as one object."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Gets one row: an epoch's metrics, or a batch's progress.
RowCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainingHooks:
    """A training's callbacks, all optional.

    `on_epoch` gets each epoch's metrics row, `on_batch` each batch's progress (`epoch`, `batch`,
    `steps`, `fraction`, `eta_s`...), `on_download(bytes)` the progress of a backbone's ImageNet
    weights download; setting `stop_event` ends the training after the current batch, keeping
    the best weights. `callbacks` are Keras callbacks added to every `model.fit` (a sweep's
    pruning).
    """

    on_epoch: RowCallback | None = None
    on_batch: RowCallback | None = None
    stop_event: threading.Event | None = None
    on_download: Callable[[int], None] | None = None
    callbacks: tuple[Any, ...] = ()

    @property
    def stop_requested(self) -> bool:
        """Whether `stop_event` is set."""
        return self.stop_event is not None and self.stop_event.is_set()
