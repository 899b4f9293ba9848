"""Feeding a prepared dataset to Keras: a `tf.data` pipeline of batches in a reproducible epoch order."""

from __future__ import annotations

import numpy as np

from cnnlab.data.prepared import PreparedData


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order of `indices` in training epoch `epoch` (0-based): a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(np.asarray(indices, dtype=np.int64))


def make_dataset(
    prepared: PreparedData,
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    epochs: range | None = None,
):
    """A `tf.data.Dataset` of (uint8 images, int32 labels) batches streamed from the cache.

    Only indices travel through the pipeline; each batch is gathered from the memory-mapped
    array, so memory use does not grow with the dataset. With `shuffle`, the dataset runs
    through the 0-based `epochs` one after another, each in `epoch_order(indices, seed, epoch)`,
    so a resumed training sees the order an uninterrupted one would (tf.data's reshuffling
    depends on how often the dataset was iterated); give `fit` its `steps_per_epoch`.
    """
    import tensorflow as tf

    indices = np.asarray(indices, dtype=np.int64)
    height, width = prepared.image_size
    channels = prepared.images.shape[-1]
    source, labels = prepared.images, prepared.labels

    def gather(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(source[batch]), labels[batch]

    def load(batch):
        x, y = tf.numpy_function(gather, [batch], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((None, height, width, channels))
        y.set_shape((None,))
        return x, y

    def one_epoch(epoch):
        order = tf.numpy_function(lambda e: epoch_order(indices, seed, int(e)), [epoch], tf.int64, stateful=False)
        order.set_shape((len(indices),))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    if shuffle:
        if epochs is None:
            raise ValueError(f"A shuffled dataset needs the range of epochs it covers. Received: epochs={epochs!r}")
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(epochs, dtype=np.int64)).flat_map(one_epoch)
    else:
        ds = tf.data.Dataset.from_tensor_slices(indices).batch(batch_size)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
