"""The network: a flat, validated `ModelConfig` built into a Keras Functional model, its cost in
memory and FLOPs, pretrained backbones, augmentation layers and the training precision."""

from cnnlab.model import augment, backbones, precision
from cnnlab.model.build import (
    build_model,
    compile_model,
    find_backbone,
    model_summary,
    unfreeze_top_layers,
    without_augmentation,
)
from cnnlab.model.config import FLIPS, HEADS, OPTIMIZERS, POLICIES, POOLINGS, ModelConfig
from cnnlab.model.cost import MAX_PARAMS, SLOTS, check_trainable, count_params, estimate_training_bytes, training_flops

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
