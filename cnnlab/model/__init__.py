"""The network: a flat, validated `ModelConfig` built into a Keras Functional model, its cost in
memory and FLOPs, pretrained backbones, augmentation layers and the training precision."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
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
    "ModelConfig",
    "OPTIMIZERS",
    "POLICIES",
    "POOLINGS",
    "SLOTS",
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FLIPS": "build",
        "HEADS": "build",
        "MAX_PARAMS": "build",
        "OPTIMIZERS": "build",
        "POLICIES": "build",
        "POOLINGS": "build",
        "SLOTS": "build",
        "ModelConfig": "build",
        "build_model": "build",
        "check_trainable": "build",
        "compile_model": "build",
        "count_params": "build",
        "estimate_training_bytes": "build",
        "find_backbone": "build",
        "model_summary": "build",
        "training_flops": "build",
        "unfreeze_top_layers": "build",
        "without_augmentation": "build",
    },
)
