"""What a model costs before it is built: its weights, its training FLOPs and the memory a training needs."""

from __future__ import annotations

from itertools import pairwise

from cnnlab.model import backbones
from cnnlab.model.backbones import NO_BACKBONE
from cnnlab.model.config import ModelConfig

# Past this many weights a model no longer trains in reasonable time on a CPU, and its weights,
# gradients and optimizer moments would exhaust a small server's memory before the first batch.
MAX_PARAMS = 30_000_000
# Values each optimizer keeps per trainable weight beside its gradient (Adam's two moments, SGD's
# momentum, RMSprop's average of squares).
SLOTS = {"adam": 2, "sgd": 1, "rmsprop": 1}
# What a compiled training step holds per Keras operation (its graph, kernels and their scratch):
# measured at batch 1 on 32 px backbones, where activations are negligible, 0.46-0.58 MB per
# operation run in the forward pass and 0.65-1.05 MB more per operation differentiated
# (bench/bench_memory.py, bench/README.md).
FORWARD_OP_BYTES = 600 * 2**10
BACKWARD_OP_BYTES = 2**20


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


def _shapes(config: ModelConfig) -> list[tuple[int, int, int]]:
    """(height, width, channels) of the image entering the conv blocks, then of each block's pooled output."""
    height, width = config.image_size
    shapes = [(height, width, config.channels)]
    for filters in config.block_filters():
        height, width = height // 2, width // 2
        shapes.append((height, width, filters))
    return shapes


def _head_features(config: ModelConfig, shapes: list[tuple[int, int, int]]) -> int:
    """The number of features the conv blocks hand the head."""
    height, width, channels = shapes[-1]
    return channels if config.head == "global_average" else height * width * channels


def _conv_block_params(config: ModelConfig) -> tuple[int, int]:
    """Weights of the conv blocks, and the number of features they hand the head."""
    shapes = _shapes(config)
    total = sum(
        config.kernel_size**2 * channels * filters + (4 * filters if config.batch_norm else filters)
        for (_, _, channels), (_, _, filters) in pairwise(shapes)
    )
    return total, _head_features(config, shapes)


def training_flops(config: ModelConfig, num_classes: int) -> int:
    """Floating-point operations to train on one image: the conv and dense multiply-adds, x2, x3.

    Each multiply-add is 2 FLOPs; the backward pass costs about twice the forward (gradients for
    the inputs and for the weights), so a training step is about 3 forward passes. Pooling,
    activations and the optimizer are left out: they are a few percent here.
    """
    shapes = _shapes(config)
    macs = sum(
        height * width * config.kernel_size**2 * channels * filters
        for (height, width, channels), (_, _, filters) in pairwise(shapes)
    )
    features = _head_features(config, shapes)
    for units in ([config.dense_units] if config.dense_units else []) + [1 if num_classes == 2 else num_classes]:
        macs += features * units
        features = units
    return 2 * 3 * macs


def check_params(config: ModelConfig, num_classes: int) -> None:
    """Refuse a model with more than `MAX_PARAMS` weights."""
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
    """Values each conv block outputs per image: conv, (batch norm), relu, then pooled."""
    return sum(
        height * width * filters * (3 if config.batch_norm else 2) + pooled_height * pooled_width * filters
        for (height, width, _), (pooled_height, pooled_width, filters) in pairwise(_shapes(config))
    )


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
    check_params(config, num_classes)
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
