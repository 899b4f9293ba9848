"""The CNN builder: a Keras Functional model made from a `ModelConfig`, compiled, and the helpers
that fine-tune, strip and summarise it."""

from __future__ import annotations

from typing import Any

from cnnlab.common.checks import check_choice
from cnnlab.model import backbones
from cnnlab.model.backbones import NO_BACKBONE
from cnnlab.model.config import POLICIES, ModelConfig
from cnnlab.model.cost import check_params


def build_model(config: ModelConfig, num_classes: int, precision: str = "float32"):
    """Build and compile the Functional model for `num_classes` classes.

    The model takes raw 0-255 pixels: rescaling (or a backbone's own preprocessing) is inside it,
    so a saved model predicts exactly as it did in the app. It holds no random augmentation:
    training augments its batches (`cnnlab.model.augment_batch`), so the saved and exported model
    is the inference model. A backbone starts frozen (called with training=False) under a new
    head. Two classes get one sigmoid unit with binary cross-entropy; more get softmax with sparse
    categorical cross-entropy. `precision` is a Keras dtype policy ("float32", "mixed_bfloat16",
    "mixed_float16") given to this model's conv and dense layers only, never set globally; the
    input layers and the output layer stay float32, so the model takes and returns float32. A
    backbone computes in float32: keras.applications builds with the global policy.
    """
    import keras
    from keras import layers

    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    check_params(config, num_classes)
    check_choice("precision", precision, POLICIES)
    inputs = keras.Input(shape=(*config.image_size, config.channels), name="image")
    if config.backbone != NO_BACKBONE:
        x = _backbone_features(config, inputs, precision)
    else:
        x = _conv_features(config, inputs, precision)
    if config.dropout:
        x = layers.Dropout(config.dropout, name="dropout", dtype=precision)(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation="relu", name="dense", dtype=precision)(x)
    binary = num_classes == 2
    outputs = layers.Dense(
        1 if binary else num_classes, activation="sigmoid" if binary else "softmax", name="predictions", dtype="float32"
    )(x)
    model = keras.Model(inputs, outputs, name="cnnlab")
    compile_model(model, config, config.learning_rate, precision)
    return model


def compile_model(model, config: ModelConfig, learning_rate: float, precision: str = "float32") -> None:
    """(Re)compile with the config's optimizer at `learning_rate` (fine-tuning recompiles at a lower one)."""
    import keras

    optimizer = _optimizer(config.optimizer, learning_rate)
    if precision == "mixed_float16":
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range and needs none).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    binary = int(model.outputs[0].shape[-1]) == 1
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _conv_features(config: ModelConfig, x, precision: str):
    from keras import layers

    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    pool = layers.MaxPooling2D if config.pooling == "max" else layers.AveragePooling2D
    for i, filters in enumerate(config.block_filters(), start=1):
        x = layers.Conv2D(
            filters,
            config.kernel_size,
            padding="same",
            use_bias=not config.batch_norm,
            name=f"conv_{i}",
            dtype=precision,
        )(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}", dtype=precision)(x)
        x = layers.Activation("relu", name=f"relu_{i}", dtype=precision)(x)
        x = pool(2, name=f"pool_{i}", dtype=precision)(x)
    if config.head == "global_average":
        return layers.GlobalAveragePooling2D(name="gap", dtype=precision)(x)
    return layers.Flatten(name="flatten", dtype=precision)(x)


def _backbone_features(config: ModelConfig, x, precision: str):
    from keras import layers

    backbone = backbones.build_backbone(config.backbone, config.image_size, config.backbone_weights)
    # Frozen while the new head learns (Keras's transfer-learning guide). training=False keeps its
    # batch normalisation in inference mode; its BatchNormalization layers also stay frozen during
    # fine-tuning, which is what keeps them in inference mode inside fit() in Keras 3.
    backbone.trainable = False
    x = backbone(x, training=False)
    return layers.GlobalAveragePooling2D(name="gap", dtype=precision)(x)


def find_backbone(model):
    """The nested `keras.applications` backbone of a model built with one, else None."""
    import keras

    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def unfreeze_top_layers(backbone, num_layers: int) -> list[str]:
    """Make the backbone's last `num_layers` layers trainable, batch normalisation excepted; return their names.

    Layers count as in Keras's transfer-learning guide (`backbone.layers[-num_layers:]`, weightless
    ones included). Batch normalisation stays frozen, so it keeps the statistics it learnt and
    runs in inference mode.
    """
    from keras import layers

    backbone.trainable = True
    top = backbone.layers[-num_layers:]
    chosen = {id(layer) for layer in top}
    for layer in backbone.layers:
        layer.trainable = id(layer) in chosen and not isinstance(layer, layers.BatchNormalization)
    return [layer.name for layer in top if layer.trainable and layer.weights]


def without_augmentation(model):
    """`model` without random augmentation layers, sharing its weights (the model itself when it has none).

    Models saved before augmentation moved out of the model have them right after the input.
    """
    import keras

    if not any(_is_augmentation(layer) for layer in model.layers):
        return model
    return keras.models.clone_model(
        model,
        clone_function=lambda layer: keras.layers.Identity(name=layer.name) if _is_augmentation(layer) else layer,
    )


def _is_augmentation(layer) -> bool:
    # Keras's random image layers: RandomFlip, RandomRotation, RandomZoom, RandomContrast, ...
    return type(layer).__name__.startswith("Random")


def _optimizer(name: str, learning_rate: float):
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.Adam(learning_rate)


def model_summary(model) -> list[dict[str, Any]]:
    """One row per layer: name, type, output shape and parameter count, for tables in the UI."""
    rows = []
    for layer in model.layers:
        shape = getattr(layer.output, "shape", None)
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": str(tuple(shape)).replace("None", "batch") if shape is not None else "",
                "params": int(layer.count_params()),
            }
        )
    return rows
