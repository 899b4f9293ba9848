"""The network: a flat, validated `ModelConfig` built into a Keras Functional model, its cost in
memory and FLOPs, pretrained backbones, augmentation layers and the training precision."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
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
    from cnnlab.model.cost import (
        MAX_PARAMS,
        SLOTS,
        check_trainable,
        count_params,
        estimate_training_bytes,
        training_flops,
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
        "build_model": "build",
        "compile_model": "build",
        "find_backbone": "build",
        "model_summary": "build",
        "unfreeze_top_layers": "build",
        "without_augmentation": "build",
        "FLIPS": "config",
        "HEADS": "config",
        "OPTIMIZERS": "config",
        "POLICIES": "config",
        "POOLINGS": "config",
        "ModelConfig": "config",
        "MAX_PARAMS": "cost",
        "SLOTS": "cost",
        "check_trainable": "cost",
        "count_params": "cost",
        "estimate_training_bytes": "cost",
        "training_flops": "cost",
    },
)
