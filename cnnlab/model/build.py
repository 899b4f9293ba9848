"""The CNN builder: a flat, validated config and a Keras Functional model made from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cnnlab.common.checks import check_choice, check_image_size, check_range
from cnnlab.data.images import COLOR_MODES, RESIZE_MODES
from cnnlab.model import backbones
from cnnlab.model.backbones import BACKBONE_NAMES, NO_BACKBONE

POOLINGS = ("max", "average")
HEADS = ("global_average", "flatten")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
# Past this many weights a model no longer trains in reasonable time on a CPU, and its weights,
# gradients and optimizer moments would exhaust a small server's memory before the first batch.
MAX_PARAMS = 30_000_000
# Keras dtype policies a model can be built with (cnnlab.model.precision resolves "auto" to one of them).
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# Values each optimizer keeps per trainable weight beside its gradient (Adam's two moments, SGD's
# momentum, RMSprop's average of squares).
SLOTS = {"adam": 2, "sgd": 1, "rmsprop": 1}
# What a compiled training step holds per Keras operation (its graph, kernels and their scratch):
# measured at batch 1 on 32 px backbones, where activations are negligible, 0.46-0.58 MB per
# operation run in the forward pass and 0.65-1.05 MB more per operation differentiated
# (bench/bench_memory.py, bench/README.md).
FORWARD_OP_BYTES = 600 * 2**10
BACKWARD_OP_BYTES = 2**20


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the network and its input; saved with every run.

    Defaults: three conv blocks (32, 64, 128 filters), a flattened head with dense 128, measured by
    `bench/bench_sample.py` to beat 95% test accuracy on the built-in sample in ten epochs, and
    label-safe augmentation: small shifts, zoom and contrast, never a flip or a rotation, which
    turn arrows, letters or road signs into other classes (`bench/bench_augment.py`). The small
    changes lifted the sample's accuracy and cost nothing on the generated datasets; the presets
    in `cnnlab.model.augment` switch on flips and rotation where they are safe. Batch normalisation is off by default because with Keras's default
    momentum its moving statistics lag behind on small datasets and validation accuracy swings
    from epoch to epoch; the classic two-block recipe is `conv_blocks=2`.

    `backbone` other than "none" replaces the conv blocks with a pretrained `keras.applications`
    network (`backbone_weights`: "imagenet", "none" for random, or a weights file's path) under a
    new head (global average pooling, `dropout`, `dense_units`); the conv-block fields and `head`
    are then unused. Backbones take RGB images of at least 32 pixels (224 is what ImageNet
    weights were trained at).
    """

    image_size: tuple[int, int] = (64, 64)
    color_mode: str = "rgb"
    resize_mode: str = "stretch"
    backbone: str = NO_BACKBONE
    backbone_weights: str = backbones.IMAGENET
    conv_blocks: int = 3
    filters: int = 32
    filters_growth: float = 2.0
    kernel_size: int = 3
    pooling: str = "max"
    batch_norm: bool = False
    head: str = "flatten"
    dropout: float = 0.3
    dense_units: int = 128
    flip: str = "none"
    rotation: float = 0.0
    zoom: float = 0.1
    contrast: float = 0.1
    translation: float = 0.05
    optimizer: str = "adam"
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        for name, choices in (
            ("color_mode", COLOR_MODES),
            ("resize_mode", RESIZE_MODES),
            ("backbone", BACKBONE_NAMES),
            ("pooling", POOLINGS),
            ("head", HEADS),
            ("flip", FLIPS),
            ("optimizer", OPTIMIZERS),
        ):
            check_choice(name, getattr(self, name), choices)
        check_range("conv_blocks", self.conv_blocks, 1, 6, int)
        check_range("filters", self.filters, 1, 512, int)
        check_range("filters_growth", self.filters_growth, 1.0, 4.0, float)
        check_range("kernel_size", self.kernel_size, 1, 11, int)
        check_range("dense_units", self.dense_units, 0, 4096, int)
        check_range("dropout", self.dropout, 0.0, 0.9, float)
        for name in ("rotation", "zoom", "contrast", "translation"):
            check_range(name, getattr(self, name), 0.0, 0.5, float)
        check_range("learning_rate", self.learning_rate, 1e-6, 1.0, float)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False. Received: batch_norm={self.batch_norm!r}")
        backbones.check_weights(self.backbone_weights)
        if self.backbone != NO_BACKBONE:
            self._check_backbone_input()
        elif min(self.image_size) // 2**self.conv_blocks < 1:
            raise ValueError(
                f"{self.conv_blocks} pooling blocks shrink a {self.image_size[0]}x{self.image_size[1]} image "
                f"to nothing; use fewer conv blocks or a larger image size. Received: conv_blocks={self.conv_blocks}"
            )

    def _check_backbone_input(self) -> None:
        if self.color_mode != "rgb":
            raise ValueError(
                f"The {self.backbone} backbone was made for colour images; set color_mode to 'rgb' (grayscale "
                f"images are then loaded as RGB). Received: color_mode={self.color_mode!r}"
            )
        if min(self.image_size) < backbones.MIN_SIZE:
            raise ValueError(
                f"The {self.backbone} backbone needs images of at least {backbones.MIN_SIZE}x{backbones.MIN_SIZE} "
                f"pixels ({backbones.RECOMMENDED_SIZE} is what its ImageNet weights were trained at). "
                f"Received: image_size={self.image_size[0]}x{self.image_size[1]}"
            )

    @property
    def channels(self) -> int:
        """Input channels: 3 for RGB, 1 for grayscale."""
        return 3 if self.color_mode == "rgb" else 1

    def block_filters(self) -> list[int]:
        """Filters of each conv block: `filters` growing by `filters_growth` per block."""
        return [int(round(self.filters * self.filters_growth**i)) for i in range(self.conv_blocks)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict` output, ignoring unknown keys from other versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def build_model(config: ModelConfig, num_classes: int, precision: str = "float32"):
    """Build and compile the Functional model for `num_classes` classes.

    The model takes raw 0-255 pixels: rescaling (or a backbone's own preprocessing) is inside it,
    so a saved model predicts exactly as it did in the app. It holds no random augmentation:
    training applies `augmentation_model(config)` to its batches, so the saved and exported model
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
    _check_params(config, num_classes)
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


def count_params(config: ModelConfig, num_classes: int) -> int:
    """The built model's weight count (batch-norm statistics included).

    Worked out without building the model; a backbone's count comes from `backbones.profile`.
    """
    if config.backbone != NO_BACKBONE:
        profile = backbones.profile(config.backbone, config.image_size)
        total, features = profile.params, profile.features
    else:
        total, features = _conv_block_params(config)
    if config.dense_units:
        total += (features + 1) * config.dense_units
        features = config.dense_units
    outputs = 1 if num_classes == 2 else num_classes
    return total + (features + 1) * outputs


def _conv_block_params(config: ModelConfig) -> tuple[int, int]:
    """Weights of the conv blocks, and the number of features they hand the head."""
    height, width = config.image_size
    channels, total = config.channels, 0
    for filters in config.block_filters():
        total += config.kernel_size**2 * channels * filters + (4 * filters if config.batch_norm else filters)
        channels, height, width = filters, height // 2, width // 2
    return total, channels if config.head == "global_average" else height * width * channels


def training_flops(config: ModelConfig, num_classes: int) -> int:
    """Floating-point operations to train on one image: the conv and dense multiply-adds, x2, x3.

    Each multiply-add is 2 FLOPs; the backward pass costs about twice the forward (gradients for
    the inputs and for the weights), so a training step is about 3 forward passes. Pooling,
    activations and the optimizer are left out: they are a few percent here.
    """
    height, width = config.image_size
    channels, macs = config.channels, 0
    for filters in config.block_filters():
        macs += height * width * config.kernel_size**2 * channels * filters
        channels, height, width = filters, height // 2, width // 2
    features = channels if config.head == "global_average" else height * width * channels
    for units in ([config.dense_units] if config.dense_units else []) + [1 if num_classes == 2 else num_classes]:
        macs += features * units
        features = units
    return 2 * 3 * macs


def _check_params(config: ModelConfig, num_classes: int) -> None:
    params = count_params(config, num_classes)
    if params > MAX_PARAMS:
        raise ValueError(
            f"This model would have {params:,} weights, over the {MAX_PARAMS:,} that train in reasonable time "
            "and memory on a CPU; use fewer filters or dense units, a smaller image, more conv blocks or the "
            f"global_average head (or a smaller backbone). Received: params={params}"
        )


def estimate_training_bytes(config: ModelConfig, num_classes: int, batch_size: int, fine_tune_layers: int = 0) -> int:
    """An estimate of the memory a training needs beyond TensorFlow itself, on the safe side.

    The weights, plus a gradient and the optimizer's slots (Adam 2, SGD and RMSprop 1) for each
    trainable one, plus one batch's activations (float32). A conv-block CNN counts every layer's
    output and its gradient, the input three times (as read, augmented and rescaled): a real
    step grew the process by 0.57-0.78 of it (bench/bench_memory.py). Large images with many
    filters in the first block make it big: the first block's output is height x width x filters
    per image.

    A backbone counts what TensorFlow really holds (`backbones.phase_cost`): frozen, in the head
    phase (`fine_tune_layers` 0), it keeps nothing for backpropagation, so only the tensors alive
    at once in its forward pass count, and only the head's weights train; fine-tuning its top
    `fine_tune_layers` layers adds what their gradients keep, and gradients and optimizer slots
    for their weights only. The compiled training and evaluation steps cost memory per operation
    they run and differentiate. A float32 count: mixed precision needs less, a safe side too.
    Real trainings grew by 0.6-0.9 of it on three backbones at 224 px in both phases.
    """
    height, width = config.image_size
    pixels = height * width * config.channels
    params = count_params(config, num_classes)
    head = config.dense_units + num_classes
    if config.backbone == NO_BACKBONE:
        activations = 2 * (3 * pixels + _conv_block_activations(config) + head)
        return 4 * (params + (1 + SLOTS[config.optimizer]) * params + batch_size * activations)
    phase = backbones.phase_cost(config.backbone, config.image_size, fine_tune_layers)
    trainable = params - backbones.profile(config.backbone, config.image_size).params + phase.trainable
    # The batch the step reads, the next one prefetched, the one being augmented and its
    # transform's output (float32), and the uint8 batch they were gathered from.
    activations = 4 * pixels + pixels // 4 + phase.values + 2 * head
    # Fit compiles a training step and an evaluation step, both running every op forward. Fine-
    # tuning compiles new ones; the head phase's memory is not all reused (a training grew by
    # 85-235 MB more when fine-tuning the top 20 layers than in its head phase, far beyond what
    # those layers keep), so it counts one more forward step.
    forward_steps = 3 if fine_tune_layers else 2
    step_bytes = forward_steps * phase.forward_ops * FORWARD_OP_BYTES + phase.backward_ops * BACKWARD_OP_BYTES
    return 4 * (params + (1 + SLOTS[config.optimizer]) * trainable + batch_size * activations) + step_bytes


def _conv_block_activations(config: ModelConfig) -> int:
    height, width = config.image_size
    per_image = 0
    for filters in config.block_filters():
        per_image += height * width * filters * (3 if config.batch_norm else 2)  # conv, (batch norm), relu
        height, width = height // 2, width // 2
        per_image += height * width * filters  # pooled
    return per_image


def check_trainable(
    config: ModelConfig,
    num_classes: int,
    batch_size: int,
    max_training_mb: int | None = None,
    fine_tune_layers: int = 0,
) -> float:
    """Refuse, before anything is built, a model too big to train here (in weights or in memory).

    `fine_tune_layers` is how many of a backbone's top layers its fine-tuning phase unfreezes (0:
    no fine-tuning); that phase needs the most memory, so it is the one checked. Returns the
    estimated memory of a training step in MB, for display.
    """
    _check_params(config, num_classes)
    need_mb = estimate_training_bytes(config, num_classes, batch_size, fine_tune_layers) / 2**20
    if max_training_mb is not None and need_mb > max_training_mb:
        side = config.image_size[0]
        uses_backbone = config.backbone != NO_BACKBONE
        shrink = "a smaller backbone" if uses_backbone else "fewer filters in the first block"
        culprit = f"backbone={config.backbone!r}" if uses_backbone else f"filters={config.filters}"
        if uses_backbone and fine_tune_layers:
            shrink += " or fewer fine-tuned layers"
            culprit += f", fine_tune_layers={fine_tune_layers}"
        raise ValueError(
            f"Training this model needs about {need_mb:,.0f} MB per step at batch size {batch_size}, over the "
            f"{max_training_mb:,} MB this server allows; use a smaller image size or batch size, or {shrink}. "
            f"Received: image_size={side}, batch_size={batch_size}, {culprit}"
        )
    return need_mb


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
