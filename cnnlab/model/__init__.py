"""The network: a flat, validated `ModelConfig` built into a Keras Functional model, its cost in
memory and FLOPs, pretrained backbones, augmentation layers and the training precision."""

from cnnlab.model import augment, backbones, precision
from cnnlab.model.build import (
    FLIPS,
    HEADS,
    MAX_PARAMS,
    OPTIMIZERS,
    POLICIES,
    POOLINGS,
    SLOTS,
    ModelConfig,
    build_model,
    check_trainable,
    compile_model,
    count_params,
    estimate_training_bytes,
    find_backbone,
    model_summary,
    training_flops,
    unfreeze_top_layers,
    without_augmentation,
)

__all__ = [
    "FLIPS",
    "HEADS",
    "MAX_PARAMS",
    "OPTIMIZERS",
    "POLICIES",
    "POOLINGS",
    "SLOTS",
    "ModelConfig",
    "augment",
    "backbones",
    "build_model",
    "check_trainable",
    "compile_model",
    "count_params",
    "estimate_training_bytes",
    "find_backbone",
    "model_summary",
    "precision",
    "training_flops",
    "unfreeze_top_layers",
    "without_augmentation",
]
