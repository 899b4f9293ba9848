"""Training batches through the model config's random augmentation, the same however a training resumes.

Kept apart from the model: the saved model holds no augmentation. The augmentation model is made
here, in the input pipeline, outside any distribution strategy's scope: its random generators
are plain variables that the pipeline sets before each batch, on the host.
"""

from __future__ import annotations

from cnnlab.model import ModelConfig
from cnnlab.model.augment import augmentation_model


def augmented_batches(dataset, model_config: ModelConfig, seed: int, first_batch: int):
    """A training pipeline's batches through the config's random augmentation (the saved model holds none).

    Each batch's draws are a function of (seed, batch number) only: its layers' random generators
    are set from them before the batch, so a resumed training augments as an uninterrupted one
    would, however far the pipeline had prefetched when it stopped. `first_batch` is the number
    of the dataset's first batch in the whole training (epochs before it times steps per epoch).
    """
    import tensorflow as tf

    from cnnlab.training.checkpoint import seed_states

    augment = augmentation_model(model_config)
    if augment is None:
        return dataset
    states = seed_states(augment)

    def apply(number, batch):
        for k, state in enumerate(states):
            state.assign(tf.cast(tf.stack([seed + 7919 * k, number * 1024]), state.dtype))
        images, labels = batch
        return augment(tf.cast(images, tf.float32), training=True), labels

    # One batch at a time: the generators are shared, so batches augmented in parallel would race.
    return dataset.enumerate(start=first_batch).map(apply).prefetch(tf.data.AUTOTUNE)
