"""Training batches through the model config's random augmentation, the same however a training resumes.

Kept apart from the model: the saved model holds no augmentation. `model.augment_batch` is stateless
(its draws a function of the seed and the batch number), so it runs in the input pipeline, on the
host, outside any distribution strategy's scope, several batches at once.
"""

from __future__ import annotations

from cnnlab.model import ModelConfig
from cnnlab.model.augment_batch import augment_batch, is_augmented


def augmented_batches(dataset, model_config: ModelConfig, seed: int, first_batch: int):
    """A training pipeline's batches through the config's random augmentation (the saved model holds none).

    Each batch's draws are a function of (seed, batch number) only, so a resumed training augments
    as an uninterrupted one would, however far the pipeline had prefetched when it stopped, and
    batches are augmented in parallel, ahead of the training step. `first_batch` is the number of
    the dataset's first batch in the whole training (epochs before it times steps per epoch).
    """
    import tensorflow as tf

    if not is_augmented(model_config):
        return dataset

    def apply(number, batch):
        images, labels = batch
        return augment_batch(images, model_config, seed, number), labels

    # Two batches at a time keep a core busy beside the step; `deterministic` keeps their order.
    batches = dataset.enumerate(start=first_batch).map(apply, num_parallel_calls=2, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)
